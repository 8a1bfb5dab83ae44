//! The loss-based controller (draft-ietf-rmcat-gcc-02 §6): below 2 % loss
//! the rate grows 5 %, above 10 % it drops by half the loss fraction, in
//! between it holds.
//!
//! The draft applies this per feedback report. A transport-cc feedback every
//! 50 ms covers only a handful of packets at low rates, and such small
//! samples of a few percent random loss swing above 10 % often enough to
//! walk the rate down. So the loss fraction is measured over a window of
//! at least [`LOSS_WINDOW`] and [`MIN_PACKETS`] packets, and each window
//! makes one step. Decreases are also spaced by 300 ms + RTT, as in the
//! draft.
use std::time::{Duration, Instant};

/// Loss fractions are measured over at least this many packets.
pub const MIN_PACKETS: u32 = 20;
/// Loss fractions are measured over at least this long.
pub const LOSS_WINDOW: Duration = Duration::from_millis(500);
/// Below this loss fraction the rate increases.
const LOW_LOSS: f64 = 0.02;
/// Above this loss fraction the rate decreases.
const HIGH_LOSS: f64 = 0.10;
const INCREASE_FACTOR: f64 = 1.05;
const DECREASE_INTERVAL: Duration = Duration::from_millis(300);
/// A loss decrease never goes below this fraction of the acknowledged
/// bitrate. Tail drops at a full bottleneck queue are loss too, but the
/// receiver still gets the link's rate meanwhile; without this floor the
/// windows that keep reporting the drops of an overshoot (the sender needs
/// a keyframe or two to come down a layer) compound half-the-loss cuts
/// down to a fraction of the link, and the video pauses.
const ACKED_FLOOR: f64 = 0.85;

/// The loss-based estimate.
#[derive(Debug, Clone)]
pub struct LossBasedBwe {
    estimate_bps: f64,
    min_bps: f64,
    max_bps: f64,
    lost: u32,
    expected: u32,
    window_start: Option<Instant>,
    last_fraction: Option<f64>,
    last_decrease: Option<Instant>,
    last_window_end: Option<Instant>,
    rtt: Duration,
}

impl LossBasedBwe {
    /// Starts at `initial_bps`, kept within `min_bps..=max_bps`.
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        let max = max_bps.max(min_bps) as f64;
        Self {
            estimate_bps: (initial_bps as f64).clamp(min_bps as f64, max),
            min_bps: min_bps as f64,
            max_bps: max,
            lost: 0,
            expected: 0,
            window_start: None,
            last_fraction: None,
            last_decrease: None,
            last_window_end: None,
            rtt: Duration::from_millis(100),
        }
    }

    /// Counts the packets one feedback, handled at `now`, reported.
    pub fn on_packets(&mut self, now: Instant, received: u32, lost: u32) {
        self.window_start.get_or_insert(now);
        self.lost = self.lost.saturating_add(lost);
        self.expected = self.expected.saturating_add(received + lost);
    }

    /// Sets the round-trip time (it spaces decreases).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// Overrides the estimate, e.g. with a probe's result.
    pub fn set_estimate(&mut self, bps: u64) {
        self.estimate_bps = (bps as f64).clamp(self.min_bps, self.max_bps);
    }

    /// Applies the loss measured since the last step, once the window is
    /// full. An increase starts from the lower of this and `delay_based_bps`,
    /// so while loss is low this estimate stays just above the delay-based
    /// one instead of running away. A decrease stops at 0.85 × `acked_bps`
    /// (what the receiver is getting): loss from a full queue says the
    /// link is full, not that it carries less than it delivers. Returns the
    /// estimate.
    pub fn update(&mut self, now: Instant, delay_based_bps: u64, acked_bps: Option<u64>) -> u64 {
        let Some(start) = self.window_start else {
            return self.estimate_bps();
        };
        if self.expected < MIN_PACKETS || now.saturating_duration_since(start) < LOSS_WINDOW {
            return self.estimate_bps();
        }
        let fraction = f64::from(self.lost) / f64::from(self.expected);
        self.lost = 0;
        self.expected = 0;
        self.window_start = None;
        self.last_fraction = Some(fraction);
        self.last_window_end = Some(now);
        let base = self.estimate_bps.min(delay_based_bps as f64);
        if fraction < LOW_LOSS {
            self.estimate_bps = base * INCREASE_FACTOR + 1000.0;
        } else if fraction > HIGH_LOSS
            && self
                .last_decrease
                .is_none_or(|t| now.saturating_duration_since(t) >= DECREASE_INTERVAL + self.rtt)
        {
            let floor = acked_bps.map_or(0.0, |a| ACKED_FLOOR * a as f64);
            let next = (base * (1.0 - 0.5 * fraction)).max(floor);
            // Never an increase on loss.
            self.estimate_bps = next.min(self.estimate_bps);
            self.last_decrease = Some(now);
        }
        self.estimate_bps = self.estimate_bps.clamp(self.min_bps, self.max_bps);
        self.estimate_bps()
    }

    /// The current estimate, bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate_bps as u64
    }

    /// The loss fraction of the last complete window.
    pub fn loss_fraction(&self) -> Option<f64> {
        self.last_fraction
    }

    /// The loss fraction of the last complete window if it ended within
    /// `max_age` of `now`. While little is sent (a paused video) windows
    /// stop completing, and the loss of an overshoot long gone must not
    /// keep blocking the probes that would find the link again.
    pub fn recent_loss_fraction(&self, now: Instant, max_age: Duration) -> Option<f64> {
        self.last_window_end
            .filter(|t| now.saturating_duration_since(*t) <= max_age)
            .and(self.last_fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_loss_increases_high_loss_decreases_between_holds() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut l = LossBasedBwe::new(1_000_000, 10_000, 10_000_000);
        l.on_packets(ms(0), 100, 1);
        assert_eq!(
            l.update(ms(100), u64::MAX, None),
            1_000_000,
            "window not full"
        );
        assert_eq!(l.update(ms(500), u64::MAX, None), 1_051_000, "1 %: +5 %");
        l.on_packets(ms(600), 95, 5);
        assert_eq!(l.update(ms(1100), u64::MAX, None), 1_051_000, "5 %: hold");
        l.on_packets(ms(1200), 80, 20);
        assert_eq!(l.update(ms(1700), u64::MAX, None), 945_900, "20 %: × 0.9");
        l.on_packets(ms(1800), 5, 5);
        assert_eq!(
            l.update(ms(2300), u64::MAX, None),
            945_900,
            "too few packets"
        );
        assert_eq!(l.loss_fraction(), Some(0.2));
        l.on_packets(ms(2400), 60, 30);
        assert_eq!(
            l.update(ms(2900), u64::MAX, None),
            780_367,
            "35 of 100 (the 10 carried over): × 0.825"
        );
    }

    #[test]
    fn increase_starts_from_the_delay_based_estimate() {
        let t0 = Instant::now();
        let mut l = LossBasedBwe::new(1_000_000, 10_000, 10_000_000);
        l.on_packets(t0, 100, 0);
        assert_eq!(l.update(t0 + LOSS_WINDOW, 500_000, None), 526_000);
    }

    #[test]
    fn tail_drops_do_not_cut_below_what_gets_through() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // An overshoot to 1.5 Mbit/s into a 500 kbit/s link: two thirds
        // dropped, window after window, while 500 kbit/s arrive.
        let mut l = LossBasedBwe::new(1_500_000, 10_000, 10_000_000);
        let mut at = 0;
        for _ in 0..6 {
            l.on_packets(ms(at), 40, 80);
            at += 600;
            l.update(ms(at), u64::MAX, Some(500_000));
        }
        assert_eq!(l.estimate_bps(), 425_000, "held at 0.85 × acked");
        assert!(l
            .recent_loss_fraction(ms(at), Duration::from_secs(2))
            .is_some());
        assert_eq!(
            l.recent_loss_fraction(ms(at + 2_001), Duration::from_secs(2)),
            None,
            "stale"
        );
    }
}
