//! Reception statistics of one inbound RTP stream (RFC 3550 §6.4.1 and
//! appendix A.1, A.3, A.8) and the report block Weir sends about it.
use std::time::Instant;

/// Sequence numbers farther than this ahead are a restart, not a jump.
const MAX_DROPOUT: u16 = 3000;
/// Sequence numbers this far behind are a restart too.
const MAX_MISORDER: u16 = 100;

/// One RR report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// The reported SSRC.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// Wire size.
    pub const LEN: usize = 24;

    /// Writes the block into `out` (at least 24 bytes).
    pub fn write(&self, out: &mut [u8]) -> Option<()> {
        let out = out.get_mut(..Self::LEN)?;
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        out[4..8].copy_from_slice(&(u32::from(self.fraction_lost) << 24 | lost).to_be_bytes());
        out[8..12].copy_from_slice(&self.extended_highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        out[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
        Some(())
    }
}

/// Statistics of one inbound stream. Feed every authenticated packet.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    clock_rate: u32,
    epoch: Instant,
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Jitter × 16, as appendix A.8 keeps it.
    jitter_q4: u32,
    last_transit: Option<i64>,
    last_sr: Option<(u32, Instant)>,
}

impl ReceiveStats {
    /// Stats for a stream with this RTP clock rate.
    pub fn new(clock_rate: u32, now: Instant) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            epoch: now,
            started: false,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            last_transit: None,
            last_sr: None,
        }
    }

    /// Records one packet. Returns its extended sequence number.
    pub fn update(&mut self, now: Instant, seq: u16, rtp_timestamp: u32) -> u64 {
        if !self.started {
            self.started = true;
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            } else if delta != 0 && delta <= u16::MAX - MAX_MISORDER {
                // A big jump: the sender restarted. Start over from here.
                self.base_seq = u32::from(seq);
                self.max_seq = seq;
                self.cycles = 0;
                self.received = 0;
                self.expected_prior = 0;
                self.received_prior = 0;
            }
        }
        self.received += 1;
        let arrival =
            (now.duration_since(self.epoch).as_secs_f64() * f64::from(self.clock_rate)) as i64;
        let transit = arrival - i64::from(rtp_timestamp);
        if let Some(last) = self.last_transit {
            // Appendix A.8: J += (|D| - J) / 16, kept scaled by 16.
            let d = (transit - last)
                .unsigned_abs()
                .min(u64::from(u32::MAX >> 4)) as u32;
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
        self.extend(seq)
    }

    /// The extended form of `seq` relative to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let max_ext = u64::from(self.cycles) + u64::from(self.max_seq);
        let diff = i64::from(seq.wrapping_sub(self.max_seq) as i16);
        (max_ext as i64 + diff).max(0) as u64
    }

    /// Records a sender report's NTP time (for LSR/DLSR).
    pub fn on_sender_report(&mut self, now: Instant, ntp_middle_32: u32) {
        self.last_sr = Some((ntp_middle_32, now));
    }

    /// Packets received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets lost so far (expected minus received; may be negative with
    /// duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        (u64::from(self.cycles) + u64::from(self.max_seq)) - u64::from(self.base_seq) + 1
    }

    /// Jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter_q4 >> 4
    }

    /// The report block for the interval since the previous one.
    pub fn report(&mut self, now: Instant, ssrc: u32) -> Option<ReportBlock> {
        if !self.started {
            return None;
        }
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((ntp, at)) => (ntp, (now.duration_since(at).as_secs_f64() * 65536.0) as u32),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self
                .cumulative_lost()
                .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                as i32,
            extended_highest_seq: (u64::from(self.cycles) + u64::from(self.max_seq)) as u32,
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_loss_and_wraps() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(90000, t0);
        for seq in [65533u16, 65534, 65535, 0, 2, 3] {
            s.update(t0, seq, 0);
        }
        let r = s.report(t0, 7).unwrap();
        assert_eq!(r.extended_highest_seq, (1 << 16) + 3);
        assert_eq!(r.cumulative_lost, 1);
        assert_eq!(r.fraction_lost, (256 / 7) as u8);
        // Next interval: nothing lost.
        s.update(t0, 4, 0);
        assert_eq!(s.report(t0, 7).unwrap().fraction_lost, 0);
    }

    #[test]
    fn reordered_packets_are_not_lost() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(48000, t0);
        for seq in [10u16, 12, 11, 13] {
            s.update(t0, seq, 0);
        }
        assert_eq!(s.cumulative_lost(), 0);
        assert_eq!(s.extend(11), 11);
    }

    #[test]
    fn jitter_grows_with_irregular_arrival_and_lsr_is_echoed() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(8000, t0);
        for i in 0..50u32 {
            // Sent every 20 ms (160 ticks), arriving with ±5 ms wobble.
            let wobble = if i % 2 == 0 { 5 } else { 0 };
            s.update(
                t0 + Duration::from_millis(u64::from(i) * 20 + wobble),
                i as u16,
                i * 160,
            );
        }
        assert!(s.jitter() > 10 && s.jitter() < 40, "jitter {}", s.jitter());
        s.on_sender_report(t0, 0xabcd);
        let r = s.report(t0 + Duration::from_millis(500), 1).unwrap();
        assert_eq!(r.last_sr, 0xabcd);
        assert_eq!(r.delay_since_last_sr, 32768);
    }

    #[test]
    fn restart_resets() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(90000, t0);
        s.update(t0, 100, 0);
        s.update(t0, 30000, 0);
        assert_eq!(s.cumulative_lost(), 0);
    }
}
