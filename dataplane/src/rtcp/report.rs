//! Sender and receiver report writers (RFC 3550 §6.4) with the SDES CNAME
//! every compound packet carries (§6.1), and the NTP clock they use.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::receiver::ReportBlock;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Maps the monotonic clock to 64-bit NTP time. Reads the wall clock once,
/// when created, so the state machines that use it stay clock-free.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    anchor: Instant,
    anchor_ntp: u64,
}

impl NtpClock {
    /// Anchors NTP time to `now`.
    pub fn new(now: Instant) -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Self {
            anchor: now,
            anchor_ntp: to_ntp(unix + Duration::from_secs(NTP_UNIX_OFFSET)),
        }
    }

    /// NTP time (32.32 fixed point) at `now`.
    pub fn ntp(&self, now: Instant) -> u64 {
        self.anchor_ntp
            .wrapping_add(to_ntp(now.saturating_duration_since(self.anchor)))
    }

    /// The middle 32 bits of [`NtpClock::ntp`], as LSR/DLSR use them.
    pub fn ntp_middle(&self, now: Instant) -> u32 {
        (self.ntp(now) >> 16) as u32
    }
}

fn to_ntp(d: Duration) -> u64 {
    (d.as_secs() << 32) | ((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
}

/// What a sender report says about a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// The sender's SSRC.
    pub ssrc: u32,
    /// NTP timestamp.
    pub ntp: u64,
    /// RTP timestamp of the same instant.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

/// The RTP time at `now` of a stream whose packet stamped `timestamp` was
/// sent at `sent_at`, at `clock_rate` Hz: what a sender report says.
pub fn rtp_time_at(timestamp: u32, sent_at: Instant, now: Instant, clock_rate: u32) -> u32 {
    let elapsed = now.saturating_duration_since(sent_at).as_secs_f64();
    timestamp.wrapping_add((elapsed * f64::from(clock_rate)) as u32)
}

/// Writes a sender report with no report blocks. Returns its length.
pub fn write_sr(out: &mut [u8], info: &SenderInfo) -> Option<usize> {
    let out = out.get_mut(..28)?;
    out[0] = 0x80;
    out[1] = 200;
    out[2..4].copy_from_slice(&6u16.to_be_bytes());
    out[4..8].copy_from_slice(&info.ssrc.to_be_bytes());
    out[8..16].copy_from_slice(&info.ntp.to_be_bytes());
    out[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
    out[20..24].copy_from_slice(&info.packets.to_be_bytes());
    out[24..28].copy_from_slice(&info.octets.to_be_bytes());
    Some(28)
}

/// Writes a receiver report with up to 31 blocks. Returns its length.
pub fn write_rr(out: &mut [u8], sender_ssrc: u32, blocks: &[ReportBlock]) -> Option<usize> {
    let count = blocks.len().min(31);
    let len = 8 + count * ReportBlock::LEN;
    let out = out.get_mut(..len)?;
    out[0] = 0x80 | count as u8;
    out[1] = 201;
    out[2..4].copy_from_slice(&u16::try_from(len / 4 - 1).ok()?.to_be_bytes());
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    for (i, b) in blocks.iter().take(count).enumerate() {
        b.write(&mut out[8 + i * ReportBlock::LEN..])?;
    }
    Some(len)
}

/// Writes an SDES packet with one CNAME chunk. Returns its length.
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &str) -> Option<usize> {
    let name = cname.as_bytes();
    let name_len = u8::try_from(name.len()).ok()?;
    // SSRC, type, length, text, then at least one zero byte, padded to 4.
    let chunk = 4 + 2 + name.len() + 1;
    let chunk = chunk.div_ceil(4) * 4;
    let len = 4 + chunk;
    let out = out.get_mut(..len)?;
    out.fill(0);
    out[0] = 0x81;
    out[1] = 202;
    out[2..4].copy_from_slice(&u16::try_from(len / 4 - 1).ok()?.to_be_bytes());
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8] = 1;
    out[9] = name_len;
    out[10..10 + name.len()].copy_from_slice(name);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::super::{walk, RtcpItem};
    use super::*;

    #[test]
    fn compound_sr_and_sdes_walk() {
        let mut buf = [0u8; 128];
        let info = SenderInfo {
            ssrc: 5,
            ntp: 0x1122_3344_5566_7788,
            rtp_timestamp: 9,
            packets: 3,
            octets: 4,
        };
        let n = write_sr(&mut buf, &info).unwrap();
        let m = write_sdes_cname(&mut buf[n..], 5, "weir").unwrap();
        assert_eq!(m % 4, 0);
        let items: Vec<_> = walk(&buf[..n + m]).map(Result::unwrap).collect();
        assert_eq!(items.len(), 2);
        assert!(matches!(
            items[0],
            RtcpItem::SenderReport {
                ssrc: 5,
                ntp: 0x1122_3344_5566_7788,
                ..
            }
        ));
    }

    #[test]
    fn rr_blocks_round_trip() {
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 12,
            cumulative_lost: -3,
            extended_highest_seq: 70000,
            jitter: 44,
            last_sr: 0xdead,
            delay_since_last_sr: 0xbeef,
        };
        let mut buf = [0u8; 64];
        let n = write_rr(&mut buf, 1, &[block]).unwrap();
        match walk(&buf[..n]).next() {
            Some(Ok(RtcpItem::ReceiverReport { blocks, .. })) => {
                let parsed: Vec<_> = super::super::report_blocks(blocks).collect();
                assert_eq!(parsed, vec![block]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ntp_clock_advances_with_instants() {
        let t0 = Instant::now();
        let c = NtpClock::new(t0);
        let a = c.ntp(t0);
        let b = c.ntp(t0 + Duration::from_millis(1500));
        assert_eq!(b - a, (1 << 32) + (1 << 31));
        assert_eq!(c.ntp_middle(t0), (a >> 16) as u32);
    }
}
