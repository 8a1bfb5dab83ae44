//! The send-side bandwidth estimator of one subscribe transport: the
//! delay-based and loss-based controllers combined, plus probing.
use std::time::{Duration, Instant};

use super::delay::{BandwidthUsage, DelayBasedBwe};
use super::history::{PacketResult, ProbeId, SendHistory, HISTORY_CAPACITY};
use super::loss::LossBasedBwe;
use super::BweError;
use crate::rtcp::twcc::{parse_feedback, PacketStatus};

/// Initial room in the per-feedback scratch lists (packets per feedback):
/// a 50 ms feedback at 2 Mbit/s reports about ten packets; busier
/// transports grow the lists a few times, then keep them (every subscriber
/// pays for the start, issue 4).
const FEEDBACK_SCRATCH: usize = 16;
/// A probe cluster lasts about this long at its rate.
const PROBE_DURATION: Duration = Duration::from_millis(30);
/// A probe cluster carries at least this many bytes (five MTU-sized
/// packets), so its rate can be measured.
const MIN_PROBE_BYTES: usize = 6_000;
/// A probe result needs at least this many packets received.
const MIN_PROBE_PACKETS: u32 = 5;
/// A probe cluster not fully reported after this long is judged on what
/// was reported.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The first probe goes to this multiple of the initial estimate.
const INITIAL_PROBE_FACTOR: u64 = 3;
/// Later probes go to this multiple of the estimate.
const PROBE_FACTOR: u64 = 2;
/// A stable estimate (no decrease, no probe) for this long is probed.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Tracks that start wanting this multiple of an estimate that covered
/// them until now are probed for at once ([`BandwidthEstimator::set_desired_bps`]).
const DESIRED_JUMP: f64 = 1.5;
/// A probe that got at least this fraction of its rate through, or that
/// did not saturate the link, is followed by one at twice its result.
const FURTHER_PROBE_RATIO: f64 = 0.7;
/// A receive rate below this fraction of the send rate means the probe
/// saturated the link: its receive rate is the capacity.
const SATURATED_RATIO: f64 = 0.9;
/// Of a saturated link's rate, aim at this fraction.
const SATURATED_UTILISATION: f64 = 0.95;
/// Probe only while the loss fraction is below this.
const LOW_LOSS: f64 = 0.02;
/// Probe results do not lift the loss-based estimate above this loss.
const HIGH_LOSS: f64 = 0.10;
/// A loss fraction measured longer ago than this no longer blocks probes:
/// while a paused video sends next to nothing, loss windows stop
/// completing and the last one (often the overshoot that paused it) would
/// otherwise block recovery for good.
const LOSS_STALE: Duration = Duration::from_secs(2);
/// A link capacity a saturated probe measured is trusted this long (a
/// little more than the probe interval, so periodic probes keep it fresh).
const CAPACITY_FRESH: Duration = Duration::from_secs(8);
/// While a measured capacity is fresh and loss is low, the delay-based
/// estimate is not lowered below this fraction of it. With media below the
/// link (the layer that fits runs under the cap) the acknowledged bitrate
/// is the media rate, not the link's, so the usual decrease to 0.85 × acked
/// — triggered by the queue the probe itself built — would throw away what
/// the probe just found and saw the estimate down to the media rate.
const CAPACITY_FLOOR: f64 = 0.9;
/// An estimate below this fraction of the last known capacity is in
/// recovery: probed every [`RECOVERY_PROBE_INTERVAL`] instead of every
/// [`PROBE_INTERVAL`].
const RECOVERY_RATIO: f64 = 0.5;
/// How often an estimate in recovery is probed.
const RECOVERY_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A request to send a probe cluster: `bytes` in at least five packets,
/// paced at `bps`, each recorded with [`BandwidthEstimator::on_probe_sent`]
/// under `id`.
///
/// The probe comes on top of media, which keeps flowing at the estimate:
/// together they test `estimate + bps`. The media packets sent meanwhile
/// count in the measurement.
///
/// Probe packets are padding-only RTX packets or duplicates of recent media
/// packets; the receiver's transport-cc feedback must cover them (they carry
/// transport-wide sequence numbers like any packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRequest {
    /// Names the cluster.
    pub id: ProbeId,
    /// The rate to send the cluster at, bit/s.
    pub bps: u64,
    /// How many bytes to send in the cluster.
    pub bytes: usize,
}

/// Rates measured on one probe cluster from its feedback: the probe
/// packets and the media packets sent among them, so a link shared with
/// media is measured whole.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    request: ProbeRequest,
    /// The total rate (media plus probe) the cluster tests.
    target_bps: u64,
    requested_at: Instant,
    sent_packets: u32,
    sent_bytes: usize,
    first_probe_send: Option<Instant>,
    last_probe_send: Option<Instant>,
    probes_reported: u32,
    received: u32,
    received_bytes: u64,
    first_send: Option<Instant>,
    last_send: Option<Instant>,
    last_send_bytes: u64,
    first_arrival: Option<i64>,
    first_arrival_bytes: u64,
    last_arrival: Option<i64>,
}

impl Cluster {
    fn new(request: ProbeRequest, target_bps: u64, now: Instant) -> Self {
        Self {
            request,
            target_bps,
            requested_at: now,
            sent_packets: 0,
            sent_bytes: 0,
            first_probe_send: None,
            last_probe_send: None,
            probes_reported: 0,
            received: 0,
            received_bytes: 0,
            first_send: None,
            last_send: None,
            last_send_bytes: 0,
            first_arrival: None,
            first_arrival_bytes: 0,
            last_arrival: None,
        }
    }

    fn on_probe_sent(&mut self, now: Instant, bytes: usize) {
        self.sent_packets += 1;
        self.sent_bytes += bytes;
        self.first_probe_send.get_or_insert(now);
        self.last_probe_send = Some(now);
    }

    fn on_result(&mut self, r: &PacketResult) {
        if r.probe == Some(self.request.id) {
            self.probes_reported += 1;
        } else {
            // Media sent while the cluster was being sent. Feedback comes
            // in send order, so the cluster's last send is known by the
            // time media sent after it is reported.
            let (Some(first), Some(last)) = (self.first_probe_send, self.last_probe_send) else {
                return;
            };
            if r.send_time < first || r.send_time > last {
                return;
            }
        }
        let Some(at) = r.arrival_us else {
            return;
        };
        let bytes = r.bytes as u64;
        self.received += 1;
        self.received_bytes += bytes;
        if self.first_send.is_none_or(|t| r.send_time < t) {
            self.first_send = Some(r.send_time);
        }
        if self.last_send.is_none_or(|t| r.send_time >= t) {
            self.last_send = Some(r.send_time);
            self.last_send_bytes = bytes;
        }
        if self.first_arrival.is_none_or(|t| at < t) {
            self.first_arrival = Some(at);
            self.first_arrival_bytes = bytes;
        }
        if self.last_arrival.is_none_or(|t| at > t) {
            self.last_arrival = Some(at);
        }
    }

    fn complete(&self) -> bool {
        self.sent_bytes >= self.request.bytes && self.probes_reported >= self.sent_packets
    }

    /// The rate the cluster shows the path can carry, bit/s, and whether
    /// it saturated the path (so the rate is the path's capacity).
    fn result_bps(&self) -> Option<(u64, bool)> {
        if self.received < MIN_PROBE_PACKETS {
            return None;
        }
        let send_us = self
            .last_send?
            .saturating_duration_since(self.first_send?)
            .as_micros() as u64;
        let arrival_us = u64::try_from(self.last_arrival? - self.first_arrival?).ok()?;
        if send_us == 0 || arrival_us == 0 {
            return None;
        }
        // n packets span n - 1 intervals: leave out the last sent and the
        // first received.
        let send_bps = (self.received_bytes - self.last_send_bytes) * 8_000_000 / send_us;
        let recv_bps = (self.received_bytes - self.first_arrival_bytes) * 8_000_000 / arrival_us;
        if (recv_bps as f64) < SATURATED_RATIO * send_bps as f64 {
            Some(((SATURATED_UTILISATION * recv_bps as f64) as u64, true))
        } else {
            Some((send_bps.min(recv_bps), false))
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Prober {
    next_id: u32,
    active: Option<Cluster>,
    further_bps: Option<u64>,
    initial_done: bool,
    last_probe: Option<Instant>,
    last_result_bps: Option<u64>,
    /// The link rate the last saturated probe measured, and when.
    capacity: Option<(u64, Instant)>,
    /// The link rate the last saturated probe measured. Never expires; it
    /// only says how far below the link a collapsed estimate is. Not taken
    /// from the acknowledged rate: during an overshoot it reads above the
    /// link, and frequent probes of many small padding packets would then
    /// crowd a packet-counted bottleneck queue for nothing.
    known_capacity_bps: Option<u64>,
}

/// Send-side bandwidth estimate of one transport from transport-cc
/// feedback: `min(delay-based, loss-based)`, with probing for headroom.
///
/// # Calling order
///
/// All methods take the current time; nothing here reads a clock.
///
/// 1. [`on_sent`](Self::on_sent) for every packet sent with a transport-wide
///    sequence number (media, RTX, padding), in send order, as it leaves;
///    [`on_probe_sent`](Self::on_probe_sent) instead for packets of a probe
///    cluster.
/// 2. [`on_feedback`](Self::on_feedback) (the FCI of a transport-cc
///    feedback, after the 12-byte RTCP header) or
///    [`on_feedback_statuses`](Self::on_feedback_statuses) (already parsed)
///    for each feedback received.
/// 3. [`on_rtt`](Self::on_rtt) whenever the RTT is measured (receiver
///    reports).
/// 4. After each feedback, read [`estimate_bps`](Self::estimate_bps) (and
///    hand it to the [`Allocator`](super::Allocator), whose
///    [`desired_bps`](super::Allocator::desired_bps) goes back through
///    [`set_desired_bps`](Self::set_desired_bps)), and call
///    [`poll_probe`](Self::poll_probe). The driver also calls `poll_probe`
///    on its regular tick: a probe can become due without feedback, and an
///    unanswered cluster times out there. At most one cluster is
///    outstanding.
///
/// Probing needs the caller to send the requested cluster. A caller that
/// cannot may ignore requests: the cluster times out after a second and
/// the estimate still follows the delay and loss controllers.
#[derive(Debug)]
pub struct BandwidthEstimator {
    history: SendHistory,
    delay: DelayBasedBwe,
    loss: LossBasedBwe,
    statuses: Vec<PacketStatus>,
    results: Vec<PacketResult>,
    estimate_bps: u64,
    min_bps: u64,
    max_bps: u64,
    desired_bps: u64,
    started: Option<Instant>,
    last_decrease: Option<Instant>,
    prober: Prober,
}

impl BandwidthEstimator {
    /// An estimator starting at `initial_bps`, never below `min_bps` nor
    /// above `max_bps`. Allocates its buffers now, at their usual size.
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        let max_bps = max_bps.max(min_bps);
        let initial = initial_bps.clamp(min_bps, max_bps);
        Self {
            history: SendHistory::new(),
            delay: DelayBasedBwe::new(initial, min_bps, max_bps),
            loss: LossBasedBwe::new(initial, min_bps, max_bps),
            // A feedback covers at most a few hundred packets: the lists
            // start there and keep whatever a larger one made them grow to,
            // so steady state does not reallocate. (Preallocating the whole
            // history cost every subscriber 320 KiB.)
            statuses: Vec::with_capacity(FEEDBACK_SCRATCH),
            results: Vec::with_capacity(FEEDBACK_SCRATCH),
            estimate_bps: initial,
            min_bps,
            max_bps,
            desired_bps: u64::MAX,
            started: None,
            last_decrease: None,
            prober: Prober::default(),
        }
    }

    /// Records a packet sent at `now` with transport-wide sequence `seq`
    /// and `bytes` on the wire (RTP header, payload and SRTP tag).
    pub fn on_sent(&mut self, now: Instant, seq: u16, bytes: usize) {
        self.started.get_or_insert(now);
        self.history.on_sent(now, seq, bytes);
    }

    /// Records a packet of probe cluster `probe` (see [`ProbeRequest`]).
    pub fn on_probe_sent(&mut self, now: Instant, seq: u16, bytes: usize, probe: ProbeId) {
        self.started.get_or_insert(now);
        self.history.on_sent_probe(now, seq, bytes, probe);
        if let Some(c) = self
            .prober
            .active
            .as_mut()
            .filter(|c| c.request.id == probe)
        {
            c.on_probe_sent(now, bytes);
        }
    }

    /// Handles the FCI of a transport-cc feedback (the bytes after the
    /// 12-byte RTCP header).
    pub fn on_feedback(&mut self, now: Instant, fci: &[u8]) -> Result<(), BweError> {
        let mut statuses = std::mem::take(&mut self.statuses);
        let parsed = parse_feedback(fci, &mut statuses);
        if parsed.is_some() {
            self.on_feedback_statuses(now, &statuses);
        }
        if statuses.capacity() > HISTORY_CAPACITY {
            // A hostile feedback can claim 65,535 statuses in a few bytes;
            // do not keep the memory it made us take.
            statuses.clear();
            statuses.shrink_to(HISTORY_CAPACITY);
        }
        self.statuses = statuses;
        parsed.ok_or(BweError::MalformedFeedback)
    }

    /// Handles an already parsed transport-cc feedback.
    pub fn on_feedback_statuses(&mut self, now: Instant, statuses: &[PacketStatus]) {
        self.started.get_or_insert(now);
        self.history.on_feedback(statuses, &mut self.results);
        if self.results.is_empty() {
            return;
        }
        let (mut received, mut lost) = (0u32, 0u32);
        for r in &self.results {
            if r.arrival_us.is_some() {
                received += 1;
            } else {
                lost += 1;
            }
            self.delay.on_packet(r);
            if let Some(c) = self.prober.active.as_mut() {
                c.on_result(r);
            }
        }
        self.loss.on_packets(now, received, lost);
        let acked = self.history.acked_bps();
        let mut delay_bps = self.delay.update(now, acked);
        if let Some((capacity, at)) = self.prober.capacity {
            let fresh = now.saturating_duration_since(at) <= CAPACITY_FRESH;
            let low_loss = self
                .loss
                .recent_loss_fraction(now, LOSS_STALE)
                .is_none_or(|f| f < LOW_LOSS);
            let floor = (CAPACITY_FLOOR * capacity as f64) as u64;
            if !fresh || !low_loss {
                // Loss says the link changed; an old measure says nothing.
                self.prober.capacity = None;
            } else if delay_bps < floor {
                self.delay.rate_control_mut().set_estimate(now, floor);
                delay_bps = self.delay.estimate_bps();
            }
        }
        self.loss.update(now, delay_bps, acked);
        self.finish_probe(now);
        let estimate = self
            .delay
            .estimate_bps()
            .min(self.loss.estimate_bps())
            .clamp(self.min_bps, self.max_bps);
        if estimate < self.estimate_bps {
            self.last_decrease = Some(now);
        }
        self.estimate_bps = estimate;
    }

    /// Sets the round-trip time to the receiver.
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.delay.rate_control_mut().set_rtt(rtt);
        self.loss.set_rtt(rtt);
    }

    /// The rate the transport may send at, bit/s.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate_bps
    }

    /// Tells the estimator how much the transport's tracks could use (e.g.
    /// the sum of every track's preferred layer); no probe is sent while the
    /// estimate covers it. Unlimited by default.
    ///
    /// When the tracks go from wanting no more than the estimate to wanting
    /// well above it (a subscriber raised its preferred layer, a track was
    /// added), the next probe goes to the new rate at once, as libwebrtc
    /// probes a raised allocation, instead of waiting for the periodic
    /// probe of a stable estimate: an estimate that idled at a low layer
    /// would otherwise hold the subscriber there for seconds.
    pub fn set_desired_bps(&mut self, bps: u64) {
        let was_covered = self.desired_bps <= self.estimate_bps;
        if was_covered && bps as f64 > self.estimate_bps as f64 * DESIRED_JUMP {
            self.prober.further_bps.get_or_insert(bps);
        }
        self.desired_bps = bps;
    }

    /// What the receiver has been getting lately, bit/s.
    pub fn acked_bps(&self) -> Option<u64> {
        self.history.acked_bps()
    }

    /// The delay-based estimate, bit/s.
    pub fn delay_based_bps(&self) -> u64 {
        self.delay.estimate_bps()
    }

    /// The loss-based estimate, bit/s.
    pub fn loss_based_bps(&self) -> u64 {
        self.loss.estimate_bps()
    }

    /// The overuse detector's current state.
    pub fn delay_usage(&self) -> BandwidthUsage {
        self.delay.usage()
    }

    /// The last measured loss fraction.
    pub fn loss_fraction(&self) -> Option<f64> {
        self.loss.loss_fraction()
    }

    /// Whether the estimate is still the initial guess: no probe result
    /// and no decrease has measured the link yet. The allocator then lowers
    /// no track (see [`Allocator::held_bps`](super::Allocator::held_bps)):
    /// the tracks' rates outgrowing a guess (a single layer a little above
    /// it, a simulcast top encoding ramping up after join) is what sets off
    /// the first probe, and dropping a layer, or pausing a single one until
    /// a keyframe, before the probe answers would cost the subscriber a
    /// switch for nothing on a link that carries it. A link that does not
    /// shows it within a few feedbacks: delay grows or packets are lost,
    /// the estimate decreases, and from then on it is measured.
    pub fn is_initial_guess(&self) -> bool {
        self.prober.last_result_bps.is_none() && self.last_decrease.is_none()
    }

    /// The rate the last probe cluster showed, bit/s.
    pub fn last_probe_bps(&self) -> Option<u64> {
        self.prober.last_result_bps
    }

    /// Returns a probe cluster to send now, if one is due: at the start (to
    /// three times the initial estimate), right after a probe that got most
    /// of its rate through (to twice its result), and when the estimate has
    /// been stable (no decrease, no probe) for five seconds below the
    /// maximum and the desired rate (to twice the estimate) — one second
    /// when it has fallen below half the last known link capacity, so a
    /// collapsed estimate (a paused video sends too little to grow it)
    /// finds the link again. Probes need low recent loss and no overuse.
    /// One cluster is in flight at a time.
    #[must_use]
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeRequest> {
        self.started.get_or_insert(now);
        self.finish_probe(now);
        if self.prober.active.is_some()
            || self.estimate_bps >= self.max_bps
            || self.estimate_bps >= self.desired_bps
        {
            return None;
        }
        // Loss other than from congestion makes probe results unreliable and
        // probing pointless.
        let quiet = self.delay.usage() == BandwidthUsage::Normal
            && self
                .loss
                .recent_loss_fraction(now, LOSS_STALE)
                .is_none_or(|f| f < LOW_LOSS);
        let recovering = self
            .prober
            .known_capacity_bps
            .is_some_and(|c| (self.estimate_bps as f64) < RECOVERY_RATIO * c as f64);
        let interval = if recovering {
            RECOVERY_PROBE_INTERVAL
        } else {
            PROBE_INTERVAL
        };
        let further = self.prober.further_bps.take();
        let target = if !self.prober.initial_done {
            self.prober.initial_done = true;
            self.estimate_bps.saturating_mul(INITIAL_PROBE_FACTOR)
        } else if let Some(bps) = further.filter(|_| quiet) {
            bps
        } else if quiet && self.stable_since(now) >= interval {
            self.estimate_bps.saturating_mul(PROBE_FACTOR)
        } else {
            return None;
        };
        let target = target.min(self.max_bps);
        if target <= self.estimate_bps {
            return None;
        }
        // Media keeps flowing at the estimate; the probe adds the rest.
        let bps = target - self.estimate_bps;
        let bytes =
            ((bps as u128 * PROBE_DURATION.as_micros() / 8_000_000) as usize).max(MIN_PROBE_BYTES);
        let request = ProbeRequest {
            id: ProbeId(self.prober.next_id),
            bps,
            bytes,
        };
        self.prober.next_id = self.prober.next_id.wrapping_add(1);
        self.prober.active = Some(Cluster::new(request, target, now));
        self.prober.last_probe = Some(now);
        Some(request)
    }

    fn stable_since(&self, now: Instant) -> Duration {
        let since = [self.started, self.last_decrease, self.prober.last_probe]
            .into_iter()
            .flatten()
            .max();
        since.map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Judges the active cluster once it is fully reported or timed out.
    fn finish_probe(&mut self, now: Instant) {
        let Some(cluster) = self.prober.active else {
            return;
        };
        let timed_out = now.saturating_duration_since(cluster.requested_at) >= PROBE_TIMEOUT;
        if !cluster.complete() && !timed_out {
            return;
        }
        self.prober.active = None;
        let Some((result, saturated)) = cluster.result_bps() else {
            // Once per cluster, not per packet.
            tracing::debug!(
                target_bps = cluster.target_bps,
                timed_out,
                "probe cluster without a result"
            );
            return;
        };
        tracing::debug!(
            target_bps = cluster.target_bps,
            result,
            saturated,
            estimate = self.estimate_bps,
            "probe cluster result"
        );
        self.prober.last_result_bps = Some(result);
        if saturated {
            self.prober.capacity = Some((result, now));
            self.prober.known_capacity_bps = Some(result);
        }
        let result = result.min(self.max_bps);
        if result > self.estimate_bps {
            self.delay.rate_control_mut().set_estimate(now, result);
            // Loss says more than a probe: under heavy loss the loss-based
            // estimate stays where it is.
            if self.loss.loss_fraction().is_none_or(|f| f <= HIGH_LOSS) {
                self.loss.set_estimate(self.loss.estimate_bps().max(result));
            }
            self.estimate_bps = result.min(self.loss.estimate_bps());
        }
        // Not saturated: the link carried all that was sent. With media
        // below the estimate (application-limited, or a layer paused) the
        // cluster sent less than its target, so the ratio alone would stop
        // probing after one step and leave the estimate to 5-second probes.
        if !saturated || result as f64 >= FURTHER_PROBE_RATIO * cluster.target_bps as f64 {
            self.prober.further_bps = Some(result.saturating_mul(PROBE_FACTOR));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_poll_asks_for_an_initial_probe_and_only_one_at_a_time() {
        let t0 = Instant::now();
        let mut e = BandwidthEstimator::new(300_000, 30_000, 10_000_000);
        let p = e.poll_probe(t0).expect("initial probe");
        assert_eq!(p.bps, 600_000, "to 900 kbit/s with the media");
        assert_eq!(p.bytes, 6_000, "at least five packets");
        assert_eq!(e.poll_probe(t0), None, "one cluster in flight");
        // Unanswered: it times out and nothing more is due for a while.
        assert_eq!(e.poll_probe(t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn a_successful_probe_raises_the_estimate_and_probes_further() {
        let t0 = Instant::now();
        let mut e = BandwidthEstimator::new(300_000, 30_000, 10_000_000);
        let p = e.poll_probe(t0).unwrap();
        // Ten 1,000-byte packets every 8 ms: 1 Mbit/s, arriving the same way.
        let mut statuses = Vec::new();
        for i in 0..10u16 {
            let at = Duration::from_millis(u64::from(i) * 8);
            e.on_probe_sent(t0 + at, i, 1000, p.id);
            statuses.push(PacketStatus {
                seq: i,
                arrival_us: Some(40_000 + at.as_micros() as i64),
            });
        }
        e.on_feedback_statuses(t0 + Duration::from_millis(150), &statuses);
        assert_eq!(e.last_probe_bps(), Some(1_000_000));
        assert_eq!(e.estimate_bps(), 1_000_000);
        let next = e.poll_probe(t0 + Duration::from_millis(150)).unwrap();
        assert_eq!(next.bps, 1_000_000, "to 2 Mbit/s with the media");
    }

    #[test]
    fn a_saturated_probe_reports_the_receive_rate() {
        let t0 = Instant::now();
        let mut e = BandwidthEstimator::new(500_000, 30_000, 10_000_000);
        let p = e.poll_probe(t0).unwrap();
        let mut statuses = Vec::new();
        for i in 0..10u16 {
            // Sent at 1.5 Mbit/s, received at 750 kbit/s.
            e.on_probe_sent(
                t0 + Duration::from_micros(u64::from(i) * 5_333),
                i,
                1000,
                p.id,
            );
            statuses.push(PacketStatus {
                seq: i,
                arrival_us: Some(40_000 + i64::from(i) * 10_667),
            });
        }
        e.on_feedback_statuses(t0 + Duration::from_millis(200), &statuses);
        let r = e.last_probe_bps().unwrap();
        assert!((700_000..=720_000).contains(&r), "{r}");
        assert_eq!(
            e.poll_probe(t0 + Duration::from_millis(200)),
            None,
            "not further"
        );
    }

    #[test]
    fn a_huge_status_count_is_handled_and_not_retained() {
        let mut e = BandwidthEstimator::new(300_000, 30_000, 10_000_000);
        e.on_sent(Instant::now(), 7, 1000);
        // Base 0, 65,535 statuses: nine run-length chunks of "not received".
        let mut fci = vec![0, 0, 0xff, 0xff, 0, 0, 0, 0];
        for _ in 0..9 {
            fci.extend_from_slice(&0x1fffu16.to_be_bytes());
        }
        assert_eq!(e.on_feedback(Instant::now(), &fci), Ok(()));
        assert!(e.statuses.capacity() <= HISTORY_CAPACITY);
        assert_eq!(e.estimate_bps(), 300_000);
    }

    #[test]
    fn malformed_feedback_is_an_error() {
        let mut e = BandwidthEstimator::new(300_000, 30_000, 10_000_000);
        assert_eq!(
            e.on_feedback(Instant::now(), &[0, 1]),
            Err(BweError::MalformedFeedback)
        );
    }
}
