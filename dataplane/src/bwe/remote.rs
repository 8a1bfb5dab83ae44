//! Receive-side bandwidth estimate of a publisher's stream, for REMB
//! toward publishers without transport-cc.
//!
//! Without send times from the sender, a video stream's RTP timestamps
//! stand in for them (packets of one frame share one, so the inter-arrival
//! grouping sees frames, as the single-stream estimators of the REMB era
//! did). The same delay-based detector and AIMD control as the send side
//! then run on them; the incoming rate bounds the increase.
//!
//! # Calling order
//! [`RemoteEstimator::on_packet`] for every video packet of the publisher
//! (all streams count toward the incoming rate; the first SSRC seen is the
//! one timed), then [`RemoteEstimator::poll_remb`] on the session's tick.
use std::time::{Duration, Instant};

use super::delay::DelayBasedBwe;
use super::PacketResult;

/// A REMB goes out this often, and sooner when the estimate drops by more
/// than [`DROP_TO_REPORT`].
const REMB_INTERVAL: Duration = Duration::from_secs(1);
/// An estimate this much lower than the last one sent is sent at once.
const DROP_TO_REPORT: f64 = 0.03;
/// The incoming rate is measured over this window.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// The estimate for one publishing transport.
#[derive(Debug, Clone)]
pub struct RemoteEstimator {
    bwe: DelayBasedBwe,
    epoch: Instant,
    /// The timed stream: SSRC, clock rate, and its timestamps unwrapped
    /// (last raw value, extended value).
    timed: Option<(u32, u32, u32, i64)>,
    seq: u64,
    window_start: Instant,
    window_bytes: u64,
    incoming_bps: Option<u64>,
    last_sent: Option<(Instant, u64)>,
}

impl RemoteEstimator {
    /// Starts at `initial_bps`, kept within `min_bps..=max_bps`.
    pub fn new(now: Instant, initial_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        Self {
            bwe: DelayBasedBwe::new(initial_bps, min_bps, max_bps),
            epoch: now,
            timed: None,
            seq: 0,
            window_start: now,
            window_bytes: 0,
            incoming_bps: None,
            last_sent: None,
        }
    }

    /// Records one received packet of `bytes` with its SSRC, RTP timestamp
    /// and the stream's clock rate.
    pub fn on_packet(
        &mut self,
        now: Instant,
        ssrc: u32,
        rtp_timestamp: u32,
        clock_rate: u32,
        bytes: usize,
    ) {
        self.window_bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            self.incoming_bps =
                Some((self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64);
            self.window_start = now;
            self.window_bytes = 0;
        }
        let (timed_ssrc, rate, last, ext) =
            *self
                .timed
                .get_or_insert((ssrc, clock_rate.max(1), rtp_timestamp, 0));
        if timed_ssrc != ssrc {
            return;
        }
        let ext = ext + i64::from(rtp_timestamp.wrapping_sub(last) as i32);
        self.timed = Some((timed_ssrc, rate, rtp_timestamp, ext));
        // Timestamps before the first one (reordering) count as the first.
        let send_time = self.epoch + Duration::from_secs_f64(ext.max(0) as f64 / f64::from(rate));
        let arrival_us = now.saturating_duration_since(self.epoch).as_micros() as i64;
        self.seq += 1;
        self.bwe.on_packet(&PacketResult {
            seq: self.seq,
            send_time,
            bytes,
            arrival_us: Some(arrival_us),
            probe: None,
        });
    }

    /// The estimate to send in a REMB now, if one is due.
    #[must_use]
    pub fn poll_remb(&mut self, now: Instant) -> Option<u64> {
        self.timed?;
        let estimate = self.bwe.update(now, self.incoming_bps);
        let due = match self.last_sent {
            None => true,
            Some((at, sent)) => {
                now.saturating_duration_since(at) >= REMB_INTERVAL
                    || (estimate as f64) < sent as f64 * (1.0 - DROP_TO_REPORT)
            }
        };
        if !due {
            return None;
        }
        self.last_sent = Some((now, estimate));
        Some(estimate)
    }

    /// The current estimate, bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.bwe.estimate_bps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 30 frames/s of `packets` packets each, arriving `extra(frame)`
    /// later than sent.
    fn feed(
        e: &mut RemoteEstimator,
        t0: Instant,
        first: u32,
        frames: u32,
        packets: u32,
        extra: impl Fn(u32) -> Duration,
    ) -> Vec<u64> {
        let mut rembs = Vec::new();
        for f in first..first + frames {
            let at = t0 + Duration::from_millis(u64::from(f) * 33) + extra(f - first);
            for _ in 0..packets {
                e.on_packet(at, 1, f * 3000, 90_000, 1200);
            }
            rembs.extend(e.poll_remb(at));
        }
        rembs
    }

    #[test]
    fn steady_arrivals_keep_the_estimate_growing_and_reported_each_second() {
        let t0 = Instant::now();
        let mut e = RemoteEstimator::new(t0, 300_000, 50_000, 10_000_000);
        let rembs = feed(&mut e, t0, 0, 300, 10, |_| Duration::ZERO);
        assert!(rembs.len() >= 9 && rembs.len() <= 11, "{rembs:?}");
        assert!(rembs.last() > rembs.first(), "{rembs:?}");
    }

    #[test]
    fn growing_queueing_delay_brings_it_down_at_once() {
        let t0 = Instant::now();
        let mut e = RemoteEstimator::new(t0, 2_000_000, 50_000, 10_000_000);
        feed(&mut e, t0, 0, 60, 10, |_| Duration::ZERO);
        let before = e.estimate_bps();
        // Each frame arrives 5 ms later than the one before: a queue builds.
        let rembs = feed(&mut e, t0, 60, 60, 10, |f| {
            Duration::from_millis(u64::from(f) * 5)
        });
        assert!(
            e.estimate_bps() < before,
            "{} vs {before}",
            e.estimate_bps()
        );
        assert!(
            rembs.iter().any(|r| *r < before),
            "a lower REMB went out: {rembs:?}"
        );
    }

    #[test]
    fn other_ssrcs_count_toward_the_rate_only_and_nothing_is_sent_before_media() {
        let t0 = Instant::now();
        let mut e = RemoteEstimator::new(t0, 300_000, 50_000, 10_000_000);
        assert_eq!(e.poll_remb(t0), None);
        e.on_packet(t0, 1, 0, 90_000, 100);
        e.on_packet(t0, 2, 999_999, 90_000, 100);
        assert_eq!(e.timed.map(|t| t.0), Some(1));
        assert!(e.poll_remb(t0).is_some());
    }
}
