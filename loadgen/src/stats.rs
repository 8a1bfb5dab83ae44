//! Process-wide counters every peer updates without locks, and the clock
//! that media trailers carry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// The process-wide epoch of send timestamps. Publishers and subscribers
/// share it, so a subscriber's `now - sent` is the one-way latency.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub(crate) fn now_us() -> u64 {
    u64::try_from(epoch().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Why a peer did not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailCause {
    /// The WebSocket failed, the server replied with an error, or a reply
    /// did not come in time.
    Signaling,
    /// No ICE success response in time.
    IceTimeout,
    /// The DTLS handshake failed or timed out, or SRTP keys could not be set up.
    Dtls,
    /// Connected, but media did not flow in time (subscribers: no packet;
    /// publishers: no `published`).
    MediaTimeout,
}

impl FailCause {
    /// Every cause, in report order.
    pub const ALL: [FailCause; 4] = [
        FailCause::Signaling,
        FailCause::IceTimeout,
        FailCause::Dtls,
        FailCause::MediaTimeout,
    ];

    /// The JSON key.
    pub fn name(self) -> &'static str {
        match self {
            FailCause::Signaling => "signaling",
            FailCause::IceTimeout => "ice_timeout",
            FailCause::Dtls => "dtls",
            FailCause::MediaTimeout => "media_timeout",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The stages of a join, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// WebSocket connect to the server's description in hand (join,
    /// publish or subscribe, offer/answer).
    Signaling = 0,
    /// Socket bound to the first successful connectivity check.
    Ice = 1,
    /// ICE success to SRTP keys (the DTLS handshake).
    Dtls = 2,
    /// SRTP ready to joined (first media packet, or `published` for every
    /// track).
    Media = 3,
}

/// A log-linear histogram of microsecond values: 16 sub-buckets per power
/// of two, so any percentile is within about 6 % of the true value.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
    count: AtomicU64,
}

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = (SUB as usize) * (64 - SUB_BITS as usize + 1);

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
        (SUB + u64::from(exp - SUB_BITS) * SUB + sub) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let shift = (i - SUB) / SUB;
        let sub = (i - SUB) % SUB;
        let low = (SUB + sub) << shift;
        low + ((1u64 << shift) >> 1)
    }

    pub(crate) fn record(&self, v: u64) {
        if let Some(b) = self.buckets.get(Self::index(v)) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0..=1), or `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value(i).min(self.max()));
            }
        }
        Some(self.max())
    }
}

/// Counters of the whole run.
pub(crate) struct Stats {
    /// RTP packets handed to the socket by publishers (after `--loss`).
    pub(crate) tx_packets: AtomicU64,
    /// SRTP bytes publishers sent.
    pub(crate) tx_bytes: AtomicU64,
    /// Packets publishers dropped on purpose (`--loss`).
    pub(crate) tx_dropped: AtomicU64,
    /// SRTP media packets subscribers received and decrypted.
    pub(crate) rx_packets: AtomicU64,
    /// SRTP bytes subscribers received.
    pub(crate) rx_bytes: AtomicU64,
    /// Packets subscribers should have received (trailer counter span).
    pub(crate) rx_expected: AtomicU64,
    /// Packets that arrived after a later one of their stream.
    pub(crate) rx_reordered: AtomicU64,
    /// Media packets that came without a kernel receive stamp (their
    /// latency then includes the loadgen's own receive queueing).
    pub(crate) rx_unstamped: AtomicU64,
    /// Packets that failed SRTP or trailer checks.
    pub(crate) rx_invalid: AtomicU64,
    /// Keyframe requests (PLI/FIR) publishers received.
    pub(crate) keyframe_requests: AtomicU64,
    /// VP8 keyframes publishers sent.
    pub(crate) tx_keyframes: AtomicU64,
    /// One-way latency, microseconds.
    pub(crate) latency_us: Histogram,
    /// Each stream's interarrival jitter estimate after each packet, µs.
    pub(crate) jitter_us: Histogram,
    /// Media packets received per simulcast encoding (index 0 also counts
    /// audio and non-simulcast video).
    pub(crate) rx_layer_packets: [AtomicU64; 4],
    /// `layersChanged` messages subscribers received.
    pub(crate) layers_changed: AtomicU64,
    /// Peers that joined.
    pub(crate) joined: AtomicU64,
    /// Joined peers whose signaling ended before the run did.
    pub(crate) disconnected: AtomicU64,
    /// Where join time goes, per peer that got through each stage, µs:
    /// see [`Stage`].
    pub(crate) stage_us: [Histogram; 4],
    /// DTLS datagrams peers sent and received during handshakes (a
    /// handshake without retransmission sends 3 and receives 3 flights;
    /// the excess is retransmission).
    pub(crate) dtls_tx: AtomicU64,
    /// See `dtls_tx`.
    pub(crate) dtls_rx: AtomicU64,
    /// Handshake resends held back by the exponential backoff.
    pub(crate) dtls_held: AtomicU64,
    /// DTLS handshakes completed.
    pub(crate) dtls_handshakes: AtomicU64,
    /// NACK packets (RTPFB FMT 1) publishers received.
    pub(crate) nacks_received: AtomicU64,
    /// Packets publishers sent again on request.
    pub(crate) retransmitted: AtomicU64,
    /// Of those, sent as RTX (negotiated by the answer).
    pub(crate) retransmitted_rtx: AtomicU64,
    /// Media packets subscribers dropped on arrival (`--rx-loss`).
    pub(crate) rx_dropped: AtomicU64,
    /// NACK packets subscribers sent.
    pub(crate) nacks_sent: AtomicU64,
    /// Receiver reports subscribers sent.
    pub(crate) reports_sent: AtomicU64,
    /// Padding-only packets (the server's bandwidth probes) subscribers got.
    pub(crate) rx_padding: AtomicU64,
    /// Transport-wide congestion control feedback packets subscribers sent.
    pub(crate) twcc_feedback_sent: AtomicU64,
    /// Sender reports publishers sent (one per stream and second).
    pub(crate) sender_reports_sent: AtomicU64,
    /// RTX packets (RFC 4588) subscribers received.
    pub(crate) rx_rtx: AtomicU64,
    /// Missing packets (by RTP sequence number) that arrived after all.
    pub(crate) nack_recovered: AtomicU64,
    failed: [AtomicU64; 4],
    join_ms: Mutex<Vec<f64>>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            tx_packets: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
            rx_packets: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            rx_expected: AtomicU64::new(0),
            rx_reordered: AtomicU64::new(0),
            rx_unstamped: AtomicU64::new(0),
            rx_invalid: AtomicU64::new(0),
            keyframe_requests: AtomicU64::new(0),
            tx_keyframes: AtomicU64::new(0),
            latency_us: Histogram::new(),
            jitter_us: Histogram::new(),
            rx_layer_packets: Default::default(),
            layers_changed: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            stage_us: std::array::from_fn(|_| Histogram::new()),
            dtls_tx: AtomicU64::new(0),
            dtls_rx: AtomicU64::new(0),
            dtls_held: AtomicU64::new(0),
            dtls_handshakes: AtomicU64::new(0),
            nacks_received: AtomicU64::new(0),
            retransmitted: AtomicU64::new(0),
            retransmitted_rtx: AtomicU64::new(0),
            rx_dropped: AtomicU64::new(0),
            nacks_sent: AtomicU64::new(0),
            reports_sent: AtomicU64::new(0),
            twcc_feedback_sent: AtomicU64::new(0),
            rx_padding: AtomicU64::new(0),
            sender_reports_sent: AtomicU64::new(0),
            rx_rtx: AtomicU64::new(0),
            nack_recovered: AtomicU64::new(0),
            failed: Default::default(),
            join_ms: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn record_join(&self, ms: f64) {
        self.joined.fetch_add(1, Ordering::Relaxed);
        self.join_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ms);
    }

    /// Records how long a peer spent in `stage`.
    pub(crate) fn record_stage(&self, stage: Stage, took: std::time::Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.stage_us[stage as usize].record(us);
    }

    pub(crate) fn record_failure(&self, cause: FailCause) {
        self.failed[cause.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, cause: FailCause) -> u64 {
        self.failed[cause.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn failed_total(&self) -> u64 {
        FailCause::ALL.iter().map(|c| self.failed(*c)).sum()
    }

    /// Join times so far, sorted.
    pub(crate) fn join_ms(&self) -> Vec<f64> {
        let mut v = self
            .join_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// A copy of the packet counters.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            at: Instant::now(),
            tx_packets: l(&self.tx_packets),
            tx_bytes: l(&self.tx_bytes),
            rx_packets: l(&self.rx_packets),
            rx_bytes: l(&self.rx_bytes),
            rx_expected: l(&self.rx_expected),
        }
    }
}

/// Packet counters at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    pub(crate) tx_packets: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) rx_packets: u64,
    pub(crate) rx_bytes: u64,
    pub(crate) rx_expected: u64,
}

impl Snapshot {
    /// Per-second rates and the loss ratio between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &Snapshot) -> Rates {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let rx = self.rx_packets.saturating_sub(earlier.rx_packets);
        let expected = self.rx_expected.saturating_sub(earlier.rx_expected);
        Rates {
            secs,
            tx_packets_per_s: self.tx_packets.saturating_sub(earlier.tx_packets) as f64 / secs,
            rx_packets_per_s: rx as f64 / secs,
            tx_kbps: self.tx_bytes.saturating_sub(earlier.tx_bytes) as f64 * 8.0 / 1000.0 / secs,
            rx_kbps: self.rx_bytes.saturating_sub(earlier.rx_bytes) as f64 * 8.0 / 1000.0 / secs,
            loss_ratio: loss_ratio(expected, rx),
        }
    }
}

/// `1 - received / expected`, clamped to 0..=1 (0 when nothing was expected).
pub(crate) fn loss_ratio(expected: u64, received: u64) -> f64 {
    if expected == 0 {
        0.0
    } else {
        (1.0 - received as f64 / expected as f64).clamp(0.0, 1.0)
    }
}

/// Rates over an interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    pub(crate) secs: f64,
    pub(crate) tx_packets_per_s: f64,
    pub(crate) rx_packets_per_s: f64,
    pub(crate) tx_kbps: f64,
    pub(crate) rx_kbps: f64,
    pub(crate) loss_ratio: f64,
}

/// Loss and reordering of one received stream, from the trailer counters.
#[derive(Debug, Default)]
pub(crate) struct StreamTracker {
    highest: Option<u64>,
}

impl StreamTracker {
    /// Accounts packet `counter`: returns how many packets it adds to the
    /// expected count, and whether it arrived after a later one.
    pub(crate) fn on_packet(&mut self, counter: u64) -> (u64, bool) {
        match self.highest {
            None => {
                self.highest = Some(counter);
                (1, false)
            }
            Some(h) if counter > h => {
                self.highest = Some(counter);
                (counter - h, false)
            }
            // A late packet fills a gap that was already counted as expected.
            Some(_) => (0, true),
        }
    }
}

/// Interarrival jitter of one stream (RFC 3550 §6.4.1), with the trailer's
/// send time standing in for the RTP timestamp: the smoothed mean deviation
/// of the transit time (arrival − send) between consecutive packets.
#[derive(Debug, Default)]
pub(crate) struct Jitter {
    last_transit_us: Option<i64>,
    /// Jitter in µs, scaled by 16 to keep RFC 3550's integer smoothing exact.
    j16: i64,
}

impl Jitter {
    /// Accounts a packet sent at `sent_us` and received at `arrival_us`;
    /// returns the jitter estimate in µs.
    pub(crate) fn on_packet(&mut self, sent_us: u64, arrival_us: u64) -> u64 {
        let transit = arrival_us as i64 - sent_us as i64;
        if let Some(last) = self.last_transit_us {
            let d = (transit - last).abs();
            // J += (|D| − J) / 16, on J × 16.
            self.j16 += d - ((self.j16 + 8) >> 4);
        }
        self.last_transit_us = Some(transit);
        ((self.j16 + 8) >> 4).max(0) as u64
    }
}

/// The `p`-th percentile (0..=100) of sorted values, nearest rank.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.07, "{p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.07, "{p99}");
        assert_eq!(h.max(), 10_000);
        assert_eq!(h.count(), 10_000);
        assert_eq!(Histogram::new().quantile(0.5), None);
        for v in [0, 1, 15, 16, 17, 1 << 20, u64::MAX] {
            assert!(Histogram::index(v) < BUCKETS);
            let mid = Histogram::value(Histogram::index(v));
            assert!(v == 0 || (mid as f64 / v as f64 - 1.0).abs() < 0.07);
        }
    }

    #[test]
    fn jitter_follows_rfc3550_smoothing() {
        let mut j = Jitter::default();
        // Constant transit: no jitter.
        for i in 0..10u64 {
            assert_eq!(j.on_packet(i * 20_000, i * 20_000 + 500), 0);
        }
        // Transit alternating by 1 ms converges towards 1 ms.
        let mut last = 0;
        for i in 10..400u64 {
            let extra = if i % 2 == 0 { 1000 } else { 0 };
            last = j.on_packet(i * 20_000, i * 20_000 + 500 + extra);
        }
        assert!((990..=1000).contains(&last), "{last}");
        // One step of 1.6 ms from zero moves J by 1/16 of it.
        let mut k = Jitter::default();
        k.on_packet(0, 0);
        assert_eq!(k.on_packet(0, 1600), 100);
    }

    #[test]
    fn tracker_counts_gaps_and_reordering() {
        let mut t = StreamTracker::default();
        let mut expected = 0;
        let mut received = 0;
        let mut reordered = 0;
        for c in [10, 11, 13, 12, 14, 17] {
            let (e, late) = t.on_packet(c);
            expected += e;
            received += 1;
            reordered += u64::from(late);
        }
        assert_eq!(expected, 8);
        assert_eq!(received, 6);
        assert_eq!(reordered, 1);
        assert!((loss_ratio(expected, received) - 0.25).abs() < 1e-9);
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
