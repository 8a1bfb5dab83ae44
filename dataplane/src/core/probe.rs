//! Bandwidth probes on the wire: when a subscriber's estimator asks for a
//! probe cluster, padding-only RTX packets (RFC 4588 §4: an RTX packet
//! with no OSN carries nothing for the decoder) go out paced at the
//! requested rate, each with a transport-wide sequence number so the
//! subscriber's feedback measures them.
//!
//! Only RTX padding is used: a duplicated media packet would reuse an SRTP
//! index, which the receiver's replay check drops before its transport-cc
//! code sees it, so it would measure nothing. Without RTX the request is
//! left to time out, as the estimator allows.
use std::time::{Duration, Instant};

use crate::bwe::{ProbeId, ProbeRequest};

/// Padding bytes per probe packet: the RTP padding count is one byte.
pub(super) const PADDING: usize = 255;
/// Fixed header, transport-wide sequence number extension, padding.
pub(super) const PACKET_LEN: usize = 12 + 8 + PADDING;

/// A probe cluster being sent to one subscriber.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProbeSend {
    pub(super) id: ProbeId,
    /// Bytes still to send.
    remaining: usize,
    /// Time between two packets at the requested rate.
    interval: Duration,
    /// When the next packet is due.
    pub(super) next: Instant,
}

impl ProbeSend {
    pub(super) fn new(request: &ProbeRequest, now: Instant) -> Self {
        let bps = request.bps.max(1);
        Self {
            id: request.id,
            remaining: request.bytes,
            interval: Duration::from_nanos(
                (PACKET_LEN as u64 * 8 * 1_000_000_000)
                    .checked_div(bps)
                    .unwrap_or(0),
            ),
            next: now,
        }
    }

    /// How many packets are due by `now`; advances the schedule.
    pub(super) fn due(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while self.remaining > 0 && self.next <= now {
            n += 1;
            self.remaining = self.remaining.saturating_sub(PACKET_LEN);
            self.next += self.interval.max(Duration::from_micros(100));
        }
        n
    }

    /// Whether the whole cluster went out.
    pub(super) fn done(&self) -> bool {
        self.remaining == 0
    }
}

/// Writes a padding-only RTX packet: `ssrc`/`pt`/`seq` of the RTX stream,
/// `timestamp` of the media it pads, the transport-wide sequence number
/// `twcc` under extension `ext_id`. Returns its length.
pub(super) fn write_padding(
    out: &mut [u8],
    ssrc: u32,
    pt: u8,
    seq: u16,
    timestamp: u32,
    ext_id: u8,
    twcc: u16,
) -> Option<usize> {
    let out = out.get_mut(..PACKET_LEN)?;
    // V=2, P=1, X=1.
    out[0] = 0xb0;
    out[1] = pt & 0x7f;
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
    out[12..16].copy_from_slice(&[0xbe, 0xde, 0, 1]);
    out[16] = (ext_id << 4) | 1;
    out[17..19].copy_from_slice(&twcc.to_be_bytes());
    out[19] = 0;
    out[20..].fill(0);
    out[PACKET_LEN - 1] = PADDING as u8;
    Some(PACKET_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_packet_parses_as_padding_only() {
        let mut buf = [0u8; PACKET_LEN];
        let n = write_padding(&mut buf, 7, 97, 3, 9000, 5, 42).unwrap();
        let h = weir_codecs::RtpHeader::parse(&buf[..n]).unwrap();
        assert_eq!(h.ssrc(), 7);
        assert_eq!(h.payload_type(), 97);
        assert!(h.payload().is_empty(), "nothing for the decoder");
        let exts =
            weir_codecs::Extensions::parse(h.extension_profile().unwrap(), h.extension_block())
                .unwrap();
        assert_eq!(exts.get(5), Some(&42u16.to_be_bytes()[..]));
        assert!(write_padding(&mut buf[..10], 7, 97, 3, 0, 5, 42).is_none());
    }

    #[test]
    fn a_cluster_is_paced_at_its_rate() {
        let t0 = Instant::now();
        let req = ProbeRequest {
            id: ProbeId(1),
            bps: PACKET_LEN as u64 * 8 * 1000, // one packet per millisecond
            bytes: PACKET_LEN * 10,
        };
        let mut p = ProbeSend::new(&req, t0);
        assert_eq!(p.due(t0), 1);
        assert_eq!(p.due(t0 + Duration::from_micros(500)), 0);
        assert_eq!(p.due(t0 + Duration::from_millis(4)), 4);
        assert_eq!(p.due(t0 + Duration::from_secs(1)), 5);
        assert!(p.done());
        assert_eq!(p.due(t0 + Duration::from_secs(2)), 0);
    }
}
