//! The delay-based controller (draft-ietf-rmcat-gcc-02 §5): packets are
//! grouped into bursts, the one-way delay variation between groups is
//! smoothed and its trend over a window of groups measured; a trend above an
//! adaptive threshold means the bottleneck queue is growing (overuse), below
//! its negative means it drains (underuse). An AIMD controller turns that
//! signal into a rate.
//!
//! Constants follow the draft and common practice: 5 ms groups, a window of
//! 20 groups, a threshold adapting between 6 and 600 ms with gains
//! 0.0087 (up) and 0.039 (down), a decrease to 0.85 × the acknowledged
//! bitrate, an increase of 8 %/s far from the last known capacity and about
//! one packet per response time near it.
use std::time::{Duration, Instant};

use super::history::PacketResult;

/// Packets sent within this long of a group's first packet join the group.
const GROUP_SPAN: Duration = Duration::from_millis(5);
/// A packet arriving within this long of the previous one, earlier than
/// its send spacing predicts, is part of the same burst.
const BURST_ARRIVAL_US: i64 = 5_000;
/// A burst never spans more than this on arrival.
const MAX_BURST_US: i64 = 100_000;
/// A jump in arrival minus send spacing past this resets the filters (a
/// clock jump or a long outage).
const RESET_OFFSET_US: i64 = 3_000_000;
/// Groups in the trendline window.
const TRENDLINE_WINDOW: usize = 20;
/// Exponential smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Gain applied to the slope before comparing it with the threshold.
const THRESHOLD_GAIN: f64 = 4.0;
/// The slope is multiplied by at most this many deltas.
const MAX_DELTAS: f64 = 60.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const INITIAL_THRESHOLD_MS: f64 = 12.5;
const MIN_THRESHOLD_MS: f64 = 6.0;
const MAX_THRESHOLD_MS: f64 = 600.0;
/// Overuse must persist this long (in send time) before it is signalled.
const OVERUSE_TIME_MS: f64 = 10.0;
/// Multiplicative decrease factor on overuse.
const BETA: f64 = 0.85;
/// Multiplicative increase per second far from convergence.
const MULTIPLICATIVE_INCREASE: f64 = 1.08;
/// Never increase beyond this multiple of the acknowledged bitrate.
const ACKED_HEADROOM: f64 = 1.5;
const ACKED_HEADROOM_BPS: f64 = 10_000.0;

/// What the overuse detector concludes about the bottleneck queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BandwidthUsage {
    /// The queue is stable.
    #[default]
    Normal,
    /// The queue grows: sending faster than the bottleneck drains.
    Overusing,
    /// The queue drains.
    Underusing,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send: Instant,
    last_send: Instant,
    first_arrival_us: i64,
    last_arrival_us: i64,
}

/// The spacing between two consecutive packet groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupDelta {
    /// Send-time spacing of the groups' last packets, ms.
    pub send_delta_ms: f64,
    /// Arrival-time spacing of the groups' last packets, ms.
    pub arrival_delta_ms: f64,
    /// The later group's last arrival, ms on the receiver's clock.
    pub arrival_ms: f64,
}

/// Groups packets into bursts and yields the spacing between groups.
#[derive(Debug, Default, Clone)]
pub struct InterArrival {
    current: Option<Group>,
    previous: Option<Group>,
}

impl InterArrival {
    /// Adds a received packet (in send order); returns the delta between the
    /// two previous groups when this packet starts a new group.
    pub fn on_packet(&mut self, send: Instant, arrival_us: i64) -> Option<GroupDelta> {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Group {
                first_send: send,
                last_send: send,
                first_arrival_us: arrival_us,
                last_arrival_us: arrival_us,
            });
            return None;
        };
        if send < cur.first_send {
            // Older than the group being built: its group is complete.
            return None;
        }
        if Self::belongs(cur, send, arrival_us) {
            cur.last_send = cur.last_send.max(send);
            cur.last_arrival_us = cur.last_arrival_us.max(arrival_us);
            return None;
        }
        let done = *cur;
        let delta = self.previous.and_then(|prev| {
            let send_delta = done.last_send.duration_since(prev.last_send).as_micros() as i64;
            let arrival_delta = done.last_arrival_us - prev.last_arrival_us;
            (arrival_delta >= 0).then_some(GroupDelta {
                send_delta_ms: send_delta as f64 / 1000.0,
                arrival_delta_ms: arrival_delta as f64 / 1000.0,
                arrival_ms: done.last_arrival_us as f64 / 1000.0,
            })
        });
        let reset = delta.is_some_and(|d| {
            ((d.arrival_delta_ms - d.send_delta_ms) * 1000.0).abs() > RESET_OFFSET_US as f64
        });
        self.previous = if reset { None } else { Some(done) };
        self.current = Some(Group {
            first_send: send,
            last_send: send,
            first_arrival_us: arrival_us,
            last_arrival_us: arrival_us,
        });
        if reset {
            None
        } else {
            delta
        }
    }

    fn belongs(group: &Group, send: Instant, arrival_us: i64) -> bool {
        if send.duration_since(group.first_send) <= GROUP_SPAN {
            return true;
        }
        // A burst: arrived right after the group and faster than it was
        // sent, so it queued behind it.
        let send_delta = send.duration_since(group.last_send).as_micros() as i64;
        let arrival_delta = arrival_us - group.last_arrival_us;
        arrival_delta < BURST_ARRIVAL_US
            && arrival_delta - send_delta < 0
            && arrival_us - group.first_arrival_us < MAX_BURST_US
    }
}

/// The trendline filter and the overuse detector with its adaptive
/// threshold.
#[derive(Debug, Clone)]
pub struct TrendlineDetector {
    window: [(f64, f64); TRENDLINE_WINDOW],
    len: usize,
    head: usize,
    deltas: u32,
    first_arrival_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    trend: f64,
    previous_trend: f64,
    threshold_ms: f64,
    last_threshold_update_ms: Option<f64>,
    time_over_using_ms: Option<f64>,
    overuse_count: u32,
    usage: BandwidthUsage,
}

impl Default for TrendlineDetector {
    fn default() -> Self {
        Self {
            window: [(0.0, 0.0); TRENDLINE_WINDOW],
            len: 0,
            head: 0,
            deltas: 0,
            first_arrival_ms: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            trend: 0.0,
            previous_trend: 0.0,
            threshold_ms: INITIAL_THRESHOLD_MS,
            last_threshold_update_ms: None,
            time_over_using_ms: None,
            overuse_count: 0,
            usage: BandwidthUsage::Normal,
        }
    }
}

impl TrendlineDetector {
    /// Adds one group delta and returns the detector's state.
    pub fn update(&mut self, d: GroupDelta) -> BandwidthUsage {
        let variation = d.arrival_delta_ms - d.send_delta_ms;
        self.deltas = self.deltas.saturating_add(1);
        self.accumulated_ms += variation;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let first = *self.first_arrival_ms.get_or_insert(d.arrival_ms);
        self.window[self.head] = (d.arrival_ms - first, self.smoothed_ms);
        self.head = (self.head + 1) % TRENDLINE_WINDOW;
        self.len = (self.len + 1).min(TRENDLINE_WINDOW);
        if self.len == TRENDLINE_WINDOW {
            if let Some(slope) = self.slope() {
                self.trend = slope;
            }
        }
        self.detect(d.send_delta_ms, d.arrival_ms);
        self.usage
    }

    /// Least-squares slope of smoothed delay over arrival time.
    fn slope(&self) -> Option<f64> {
        let points = &self.window[..self.len];
        let n = points.len() as f64;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut num, mut den) = (0.0, 0.0);
        for (x, y) in points {
            num += (x - mean_x) * (y - mean_y);
            den += (x - mean_x) * (x - mean_x);
        }
        (den > 0.0).then(|| num / den)
    }

    fn detect(&mut self, send_delta_ms: f64, now_ms: f64) {
        if self.deltas < 2 {
            return;
        }
        let modified = f64::from(self.deltas).min(MAX_DELTAS) * self.trend * THRESHOLD_GAIN;
        if modified > self.threshold_ms {
            let over = match self.time_over_using_ms {
                // Assume half the first interval was overusing.
                None => send_delta_ms / 2.0,
                Some(t) => t + send_delta_ms,
            };
            self.time_over_using_ms = Some(over);
            self.overuse_count += 1;
            if over > OVERUSE_TIME_MS && self.overuse_count > 1 && self.trend >= self.previous_trend
            {
                self.time_over_using_ms = Some(0.0);
                self.overuse_count = 0;
                self.usage = BandwidthUsage::Overusing;
            }
        } else if modified < -self.threshold_ms {
            self.time_over_using_ms = None;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Underusing;
        } else {
            self.time_over_using_ms = None;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Normal;
        }
        self.previous_trend = self.trend;
        self.adapt_threshold(modified, now_ms);
    }

    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_threshold_update_ms.get_or_insert(now_ms);
        // A spike far above the threshold (a route change, a burst of cross
        // traffic) must not drag the threshold up with it.
        if modified.abs() > self.threshold_ms + 15.0 {
            self.last_threshold_update_ms = Some(now_ms);
            return;
        }
        let k = if modified.abs() < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold_ms += k * (modified.abs() - self.threshold_ms) * dt;
        self.threshold_ms = self.threshold_ms.clamp(MIN_THRESHOLD_MS, MAX_THRESHOLD_MS);
        self.last_threshold_update_ms = Some(now_ms);
    }

    /// The current state.
    pub fn usage(&self) -> BandwidthUsage {
        self.usage
    }

    /// The current slope of smoothed delay over time (ms per ms).
    pub fn trend(&self) -> f64 {
        self.trend
    }

    /// The current adaptive threshold, ms.
    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }
}

/// The AIMD rate controller's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateControlState {
    /// Keep the rate.
    Hold,
    /// Raise the rate.
    Increase,
    /// Lower the rate.
    Decrease,
}

/// What the link carried when overuse was last seen: an average of the
/// acknowledged bitrate at those moments and its normalised variance.
#[derive(Debug, Clone, Copy)]
struct LinkCapacity {
    estimate_kbps: Option<f64>,
    deviation: f64,
}

impl LinkCapacity {
    const ALPHA: f64 = 0.05;

    fn on_overuse(&mut self, acked_bps: f64) {
        let sample = acked_bps / 1000.0;
        let estimate = match self.estimate_kbps {
            None => sample,
            Some(e) => (1.0 - Self::ALPHA) * e + Self::ALPHA * sample,
        };
        let error = estimate - sample;
        self.deviation = ((1.0 - Self::ALPHA) * self.deviation
            + Self::ALPHA * error * error / estimate.max(1.0))
        .clamp(0.4, 2.5);
        self.estimate_kbps = Some(estimate);
    }

    fn spread_kbps(&self, e: f64) -> f64 {
        3.0 * (self.deviation * e).sqrt()
    }

    fn upper_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e + self.spread_kbps(e)) * 1000.0)
    }

    fn lower_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e - self.spread_kbps(e)) * 1000.0)
    }
}

/// Additive-increase, multiplicative-decrease rate control driven by the
/// overuse detector.
#[derive(Debug, Clone)]
pub struct AimdRateControl {
    estimate_bps: f64,
    min_bps: f64,
    max_bps: f64,
    state: RateControlState,
    capacity: LinkCapacity,
    rtt: Duration,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
}

impl AimdRateControl {
    /// Starts at `initial_bps`, kept within `min_bps..=max_bps`.
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        let max = max_bps.max(min_bps) as f64;
        Self {
            estimate_bps: (initial_bps as f64).clamp(min_bps as f64, max),
            min_bps: min_bps as f64,
            max_bps: max,
            state: RateControlState::Increase,
            capacity: LinkCapacity {
                estimate_kbps: None,
                deviation: 0.4,
            },
            rtt: Duration::from_millis(100),
            last_update: None,
            last_decrease: None,
        }
    }

    /// Sets the round-trip time used for the additive increase and the
    /// decrease interval.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// Overrides the estimate, e.g. with a probe's result.
    pub fn set_estimate(&mut self, now: Instant, bps: u64) {
        self.estimate_bps = (bps as f64).clamp(self.min_bps, self.max_bps);
        self.last_update = Some(now);
    }

    /// The current estimate in bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate_bps as u64
    }

    /// The current state.
    pub fn state(&self) -> RateControlState {
        self.state
    }

    /// Whether the last known capacity is close (the increase is additive).
    pub fn near_capacity(&self) -> bool {
        self.capacity.estimate_kbps.is_some()
    }

    /// Applies one detector output at `now`; `acked_bps` is what the
    /// receiver has been getting. Returns the new estimate.
    pub fn update(&mut self, now: Instant, usage: BandwidthUsage, acked_bps: Option<u64>) -> u64 {
        let acked = acked_bps.map(|b| b as f64);
        self.state = match (usage, self.state) {
            (BandwidthUsage::Overusing, _) => RateControlState::Decrease,
            (BandwidthUsage::Underusing, _) => RateControlState::Hold,
            (BandwidthUsage::Normal, RateControlState::Hold) => RateControlState::Increase,
            (BandwidthUsage::Normal, s) => s,
        };
        let dt = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        match self.state {
            RateControlState::Hold => {}
            RateControlState::Increase => {
                if let (Some(upper), Some(a)) = (self.capacity.upper_bps(), acked) {
                    if a > upper {
                        // More gets through than when overuse was last seen:
                        // the capacity is unknown again.
                        self.capacity.estimate_kbps = None;
                    }
                }
                let increase = if self.near_capacity() {
                    self.additive_increase(dt)
                } else {
                    self.multiplicative_increase(dt)
                };
                let mut next = self.estimate_bps + increase;
                if let Some(a) = acked {
                    let limit = ACKED_HEADROOM * a + ACKED_HEADROOM_BPS;
                    if next > limit {
                        next = self.estimate_bps.max(limit);
                    }
                }
                self.estimate_bps = next;
            }
            RateControlState::Decrease => {
                let interval = self
                    .rtt
                    .clamp(Duration::from_millis(10), Duration::from_millis(200));
                if self
                    .last_decrease
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval)
                {
                    let base = acked.unwrap_or(self.estimate_bps);
                    if let (Some(lower), Some(a)) = (self.capacity.lower_bps(), acked) {
                        if a < lower {
                            // Far less than before: the capacity changed.
                            self.capacity.estimate_kbps = None;
                        }
                    }
                    let next = BETA * base;
                    if next < self.estimate_bps {
                        self.estimate_bps = next;
                    }
                    if let Some(a) = acked {
                        self.capacity.on_overuse(a);
                    }
                    self.last_decrease = Some(now);
                }
                self.state = RateControlState::Hold;
            }
        }
        self.estimate_bps = self.estimate_bps.clamp(self.min_bps, self.max_bps);
        self.estimate_bps()
    }

    fn multiplicative_increase(&self, dt: Duration) -> f64 {
        let alpha = MULTIPLICATIVE_INCREASE.powf(dt.as_secs_f64());
        (self.estimate_bps * (alpha - 1.0)).max(1000.0 * dt.as_secs_f64())
    }

    /// About one average packet per response time (RTT + 100 ms), assuming
    /// 30 frames per second split into MTU-sized packets.
    fn additive_increase(&self, dt: Duration) -> f64 {
        let bits_per_frame = self.estimate_bps / 30.0;
        let packets_per_frame = (bits_per_frame / (1200.0 * 8.0)).ceil().max(1.0);
        let packet_bits = bits_per_frame / packets_per_frame;
        let response = self.rtt.as_secs_f64() + 0.1;
        (packet_bits / response).max(4000.0) * dt.as_secs_f64()
    }
}

/// The delay-based estimate: inter-arrival grouping, trendline detector
/// and AIMD control in one.
#[derive(Debug, Clone)]
pub struct DelayBasedBwe {
    inter_arrival: InterArrival,
    detector: TrendlineDetector,
    rate: AimdRateControl,
}

impl DelayBasedBwe {
    /// Starts at `initial_bps`, kept within `min_bps..=max_bps`.
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        Self {
            inter_arrival: InterArrival::default(),
            detector: TrendlineDetector::default(),
            rate: AimdRateControl::new(initial_bps, min_bps, max_bps),
        }
    }

    /// Feeds one packet result (in send order); lost packets are ignored.
    pub fn on_packet(&mut self, result: &PacketResult) {
        let Some(arrival) = result.arrival_us else {
            return;
        };
        if let Some(delta) = self.inter_arrival.on_packet(result.send_time, arrival) {
            self.detector.update(delta);
        }
    }

    /// Updates the rate after a feedback's packets went through
    /// [`on_packet`](Self::on_packet). Returns the estimate.
    pub fn update(&mut self, now: Instant, acked_bps: Option<u64>) -> u64 {
        self.rate.update(now, self.detector.usage(), acked_bps)
    }

    /// The overuse detector's current state.
    pub fn usage(&self) -> BandwidthUsage {
        self.detector.usage()
    }

    /// The rate controller.
    pub fn rate_control(&self) -> &AimdRateControl {
        &self.rate
    }

    /// The rate controller, to set the RTT or override the estimate.
    pub fn rate_control_mut(&mut self) -> &mut AimdRateControl {
        &mut self.rate
    }

    /// The detector, for inspection.
    pub fn detector(&self) -> &TrendlineDetector {
        &self.detector
    }

    /// The current estimate, bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.rate.estimate_bps()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(send: f64, arrival: f64, at: f64) -> GroupDelta {
        GroupDelta {
            send_delta_ms: send,
            arrival_delta_ms: arrival,
            arrival_ms: at,
        }
    }

    #[test]
    fn groups_packets_sent_within_five_ms() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut ia = InterArrival::default();
        assert_eq!(ia.on_packet(ms(0), 50_000), None);
        assert_eq!(ia.on_packet(ms(3), 53_000), None, "same group");
        assert_eq!(
            ia.on_packet(ms(10), 60_000),
            None,
            "first delta needs two groups"
        );
        let d = ia.on_packet(ms(20), 75_000).expect("a delta");
        assert_eq!(d.send_delta_ms, 7.0);
        assert_eq!(d.arrival_delta_ms, 7.0);
        // A burst: sent 10 ms later but arriving 1 ms after, queued behind.
        assert_eq!(ia.on_packet(ms(30), 76_000), None);
        let d = ia.on_packet(ms(40), 90_000).expect("a delta");
        assert_eq!(d.send_delta_ms, 20.0, "the burst joined the group of 20 ms");
        assert_eq!(d.arrival_delta_ms, 16.0);
    }

    #[test]
    fn steady_delay_is_normal_growing_delay_is_overuse() {
        let mut det = TrendlineDetector::default();
        for i in 0..100 {
            assert_eq!(
                det.update(delta(10.0, 10.0, f64::from(i) * 10.0)),
                BandwidthUsage::Normal
            );
        }
        // The queue grows 2 ms per 10 ms group.
        let mut usage = BandwidthUsage::Normal;
        for i in 100..130 {
            usage = det.update(delta(10.0, 12.0, f64::from(i) * 12.0));
        }
        assert_eq!(usage, BandwidthUsage::Overusing);
        // Draining: underuse.
        for i in 130..160 {
            usage = det.update(delta(10.0, 6.0, 1560.0 + f64::from(i - 130) * 6.0));
        }
        assert_eq!(usage, BandwidthUsage::Underusing);
    }

    #[test]
    fn jitter_without_trend_stays_normal() {
        let mut det = TrendlineDetector::default();
        let mut at = 0.0;
        for i in 0..500 {
            // ±3 ms alternating jitter.
            let arrival = if i % 2 == 0 { 13.0 } else { 7.0 };
            at += arrival;
            assert_ne!(
                det.update(delta(10.0, arrival, at)),
                BandwidthUsage::Overusing
            );
        }
    }

    #[test]
    fn aimd_decreases_to_beta_times_acked_and_then_increases() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut rc = AimdRateControl::new(1_000_000, 10_000, 10_000_000);
        rc.update(ms(0), BandwidthUsage::Normal, None);
        let after = rc.update(ms(1000), BandwidthUsage::Normal, None);
        assert!((1_075_000..1_085_000).contains(&after), "8 %/s: {after}");
        let after = rc.update(ms(1100), BandwidthUsage::Overusing, Some(900_000));
        assert_eq!(after, 765_000);
        assert_eq!(rc.state(), RateControlState::Hold);
        assert!(rc.near_capacity());
        // A second overuse within the RTT does not decrease again.
        assert_eq!(
            rc.update(ms(1150), BandwidthUsage::Overusing, Some(700_000)),
            765_000
        );
        // Near capacity: additive, a few tens of kbit/s per second.
        rc.update(ms(1200), BandwidthUsage::Normal, Some(765_000));
        let after = rc.update(ms(2200), BandwidthUsage::Normal, Some(765_000));
        assert!((780_000..830_000).contains(&after), "additive: {after}");
    }

    #[test]
    fn aimd_does_not_run_away_from_the_acked_rate() {
        let t0 = Instant::now();
        let mut rc = AimdRateControl::new(1_000_000, 10_000, 100_000_000);
        for s in 0..60 {
            rc.update(
                t0 + Duration::from_secs(s),
                BandwidthUsage::Normal,
                Some(500_000),
            );
        }
        assert_eq!(rc.estimate_bps(), 1_000_000, "above 1.5 × acked: held");
    }
}
