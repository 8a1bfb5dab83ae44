//! What Weir sent on one transport, by transport-wide sequence number, and
//! the matching of transport-cc feedback against it.
//!
//! Storage is bounded: a ring of 16-byte send records indexed by the
//! widened sequence number, which starts at [`INITIAL_CAPACITY`] records
//! and doubles (up to [`HISTORY_CAPACITY`]) only when a record would be
//! overwritten before its feedback came, so a transport pays for the send
//! rate it has; and a ring of recent arrivals for the acknowledged bitrate
//! that grows to its bound while traffic warms up. A packet older than the
//! ring when its feedback comes is simply not matched.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtcp::twcc::PacketStatus;

/// Send records kept at most (a power of two). At 1,200-byte packets this
/// covers about 0.4 s at 50 Mbit/s (2 s at 10 Mbit/s), several feedback
/// intervals.
pub const HISTORY_CAPACITY: usize = 2048;
/// Send records a new history starts with (a power of two): 2 KiB, about
/// 0.6 s at 2 Mbit/s of 1,200-byte packets, which covers most subscribers'
/// feedback interval many times over; busier ones grow the ring.
pub const INITIAL_CAPACITY: usize = 128;
/// Arrivals kept for the acknowledged bitrate at most. The ring starts
/// small and grows to this while traffic warms up, then stays.
const ARRIVALS_CAPACITY: usize = HISTORY_CAPACITY;
/// The acknowledged bitrate is measured over this much arrival time.
pub const ACKED_WINDOW: Duration = Duration::from_millis(500);
/// No acknowledged bitrate until arrivals span at least this long.
const MIN_ACKED_SPAN_US: i64 = 20_000;
/// The transport-cc reference time is 24 bits of 64 ms.
const ARRIVAL_WRAP_US: i64 = (1 << 24) * 64_000;

/// Names the probe cluster a packet was sent for (see
/// [`ProbeRequest`](super::ProbeRequest)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeId(pub u32);

/// What feedback said about one packet Weir sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    /// The widened transport-wide sequence number.
    pub seq: u64,
    /// When the packet was sent.
    pub send_time: Instant,
    /// Its size on the wire, in bytes.
    pub bytes: usize,
    /// Arrival at the receiver in µs on the receiver's clock (unwrapped, so
    /// differences between feedback packets are meaningful); `None` if
    /// reported lost.
    pub arrival_us: Option<i64>,
    /// The probe cluster the packet belonged to, if any.
    pub probe: Option<ProbeId>,
}

/// One send record, packed into 16 bytes: every subscriber with
/// transport-cc keeps a ring of them.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The widened sequence number's low 32 bits (the ring is far shorter
    /// than 2^32 packets, so they tell records apart).
    seq: u32,
    /// Send time in µs since the history's epoch, low 32 bits (wraps every
    /// 71 minutes; a record lives seconds, see [`SendHistory::send_time`]).
    sent_us: u32,
    /// The probe cluster, when [`PROBE`] is set.
    probe: u32,
    /// Size on the wire (a UDP datagram's payload fits).
    bytes: u16,
    /// [`OCCUPIED`], [`PROBE`], [`REPORTED`].
    flags: u8,
}

/// The slot holds a record.
const OCCUPIED: u8 = 1;
/// The record belongs to a probe cluster.
const PROBE: u8 = 2;
/// Feedback reported the packet (received or lost): it is reported once.
const REPORTED: u8 = 4;

impl Slot {
    fn holds(&self, seq: u64) -> bool {
        self.flags & OCCUPIED != 0 && self.seq == seq as u32
    }

    fn awaits_feedback(&self) -> bool {
        self.flags & (OCCUPIED | REPORTED) == OCCUPIED
    }
}

/// The send history of one transport.
///
/// Call [`on_sent`](Self::on_sent) (or [`on_sent_probe`](Self::on_sent_probe))
/// for every packet carrying a transport-wide sequence number, in send order,
/// and [`on_feedback`](Self::on_feedback) with each parsed feedback.
#[derive(Debug)]
pub struct SendHistory {
    /// A power of two long, [`INITIAL_CAPACITY`] to [`HISTORY_CAPACITY`].
    slots: Vec<Slot>,
    /// Send times are kept relative to this (the first send).
    epoch: Option<Instant>,
    /// The latest send time, µs since `epoch`, in full.
    latest_sent_us: u64,
    highest_sent: Option<u64>,
    arrival_offset: i64,
    last_arrival: Option<i64>,
    /// (arrival µs, bytes) of received packets, oldest first.
    arrivals: VecDeque<(i64, u32)>,
    arrival_bytes: u64,
    first_arrival: Option<i64>,
    latest_arrival: Option<i64>,
    unmatched: u64,
}

impl Default for SendHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl SendHistory {
    /// An empty history with room for [`INITIAL_CAPACITY`] records.
    pub fn new() -> Self {
        Self {
            slots: vec![Slot::default(); INITIAL_CAPACITY],
            epoch: None,
            latest_sent_us: 0,
            highest_sent: None,
            arrival_offset: 0,
            last_arrival: None,
            arrivals: VecDeque::with_capacity(16),
            arrival_bytes: 0,
            first_arrival: None,
            latest_arrival: None,
            unmatched: 0,
        }
    }

    /// Records a media packet sent at `now` with transport sequence `seq`.
    pub fn on_sent(&mut self, now: Instant, seq: u16, bytes: usize) {
        self.record(now, seq, bytes, None);
    }

    /// Records a packet sent for probe cluster `probe`.
    pub fn on_sent_probe(&mut self, now: Instant, seq: u16, bytes: usize, probe: ProbeId) {
        self.record(now, seq, bytes, Some(probe));
    }

    fn record(&mut self, now: Instant, seq: u16, bytes: usize, probe: Option<ProbeId>) {
        let ext = match self.highest_sent {
            // Start one cycle up so that a slightly older number still widens.
            None => u64::from(seq) + (1 << 16),
            Some(h) => {
                let diff = i64::from(seq.wrapping_sub(h as u16) as i16);
                (h as i64 + diff).max(0) as u64
            }
        };
        if self.highest_sent.is_none_or(|h| ext > h) {
            self.highest_sent = Some(ext);
        }
        let epoch = *self.epoch.get_or_insert(now);
        let sent_us = now.saturating_duration_since(epoch).as_micros() as u64;
        self.latest_sent_us = self.latest_sent_us.max(sent_us);
        if self.slots[self.index(ext)].awaits_feedback() && self.slots.len() < HISTORY_CAPACITY {
            // Feedback is slower than this ring is short: a record would
            // go before it is matched.
            self.grow();
        }
        let index = self.index(ext);
        self.slots[index] = Slot {
            seq: ext as u32,
            sent_us: sent_us as u32,
            probe: probe.map_or(0, |p| p.0),
            bytes: u16::try_from(bytes).unwrap_or(u16::MAX),
            flags: OCCUPIED | if probe.is_some() { PROBE } else { 0 },
        };
    }

    /// Doubles the ring, keeping every record.
    fn grow(&mut self) {
        let mut slots = vec![Slot::default(); self.slots.len() * 2];
        let mask = slots.len() - 1;
        for s in self.slots.iter().filter(|s| s.flags & OCCUPIED != 0) {
            slots[s.seq as usize & mask] = *s;
        }
        self.slots = slots;
    }

    /// The ring holds this many records now.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, seq: u64) -> usize {
        (seq as usize) & (self.slots.len() - 1)
    }

    /// A record's send time in full: its 32 bits of µs are within 71
    /// minutes before the latest send. `None` before any send.
    fn send_time(&self, slot: &Slot) -> Option<Instant> {
        let back = (self.latest_sent_us as u32).wrapping_sub(slot.sent_us);
        let us = self.latest_sent_us.saturating_sub(u64::from(back));
        Some(self.epoch? + Duration::from_micros(us))
    }

    /// Widens a sequence number from feedback: it names a packet already
    /// sent, so it is at or below the highest sent.
    fn widen_reported(&self, seq: u16) -> Option<u64> {
        let h = self.highest_sent?;
        let back = (h as u16).wrapping_sub(seq);
        if back > i16::MAX as u16 {
            // Ahead of anything sent: bogus.
            return None;
        }
        h.checked_sub(u64::from(back))
    }

    fn unwrap_arrival(&mut self, raw: i64) -> i64 {
        let mut at = raw + self.arrival_offset;
        if let Some(last) = self.last_arrival {
            if at - last < -ARRIVAL_WRAP_US / 2 {
                self.arrival_offset += ARRIVAL_WRAP_US;
                at += ARRIVAL_WRAP_US;
            } else if at - last > ARRIVAL_WRAP_US / 2 {
                self.arrival_offset -= ARRIVAL_WRAP_US;
                at -= ARRIVAL_WRAP_US;
            }
        }
        self.last_arrival = Some(at);
        at
    }

    /// Matches one feedback against the history and appends a result per
    /// packet to `out` (cleared first), in sequence (send) order.
    ///
    /// A packet is reported at most once: the first feedback that says it
    /// arrived, or the first that says it was lost. A later arrival of a
    /// packet already reported lost is ignored (it was late enough to count
    /// as lost). Numbers not in the history are counted in
    /// [`unmatched`](Self::unmatched) and skipped.
    pub fn on_feedback(&mut self, statuses: &[PacketStatus], out: &mut Vec<PacketResult>) {
        out.clear();
        for status in statuses {
            let Some(seq) = self.widen_reported(status.seq) else {
                self.unmatched += 1;
                continue;
            };
            let index = self.index(seq);
            let slot = self.slots[index];
            if !slot.holds(seq) {
                self.unmatched += 1;
                continue;
            }
            let Some(send_time) = self.send_time(&slot) else {
                continue;
            };
            if slot.flags & REPORTED != 0 {
                continue;
            }
            let arrival_us = status.arrival_us.map(|raw| self.unwrap_arrival(raw));
            self.slots[index].flags |= REPORTED;
            if let Some(at) = arrival_us {
                self.add_arrival(at, u32::from(slot.bytes));
            }
            out.push(PacketResult {
                seq,
                send_time,
                bytes: usize::from(slot.bytes),
                arrival_us,
                probe: (slot.flags & PROBE != 0).then_some(ProbeId(slot.probe)),
            });
        }
    }

    fn add_arrival(&mut self, at: i64, bytes: u32) {
        if self.arrivals.len() >= ARRIVALS_CAPACITY {
            if let Some((_, b)) = self.arrivals.pop_front() {
                self.arrival_bytes -= u64::from(b);
            }
        }
        self.arrivals.push_back((at, bytes));
        self.arrival_bytes += u64::from(bytes);
        self.first_arrival = Some(self.first_arrival.map_or(at, |f| f.min(at)));
        let latest = self.latest_arrival.map_or(at, |l| l.max(at));
        self.latest_arrival = Some(latest);
        let horizon = latest - ACKED_WINDOW.as_micros() as i64;
        while let Some(&(t, b)) = self.arrivals.front() {
            if t > horizon {
                break;
            }
            self.arrivals.pop_front();
            self.arrival_bytes -= u64::from(b);
        }
    }

    /// The rate at which the receiver got packets over the last
    /// [`ACKED_WINDOW`] of arrival time (less at the start), in bit/s; `None`
    /// until arrivals span 20 ms.
    pub fn acked_bps(&self) -> Option<u64> {
        let latest = self.latest_arrival?;
        let span = (latest - self.first_arrival?).min(ACKED_WINDOW.as_micros() as i64);
        if span < MIN_ACKED_SPAN_US {
            return None;
        }
        // At the start the window begins at the first arrival, whose bytes
        // came before the span measured.
        let mut bytes = self.arrival_bytes;
        if span < ACKED_WINDOW.as_micros() as i64 {
            if let Some(&(_, b)) = self.arrivals.front() {
                bytes -= u64::from(b);
            }
        }
        Some(bytes * 8 * 1_000_000 / span as u64)
    }

    /// The highest widened sequence number sent so far.
    pub fn highest_sent(&self) -> Option<u64> {
        self.highest_sent
    }

    /// Feedback entries that matched nothing sent (too old, or bogus).
    pub fn unmatched(&self) -> u64 {
        self.unmatched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(seq: u16, arrival_us: Option<i64>) -> PacketStatus {
        PacketStatus { seq, arrival_us }
    }

    #[test]
    fn matches_feedback_to_sends_across_the_wrap() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        for (i, seq) in [65534u16, 65535, 0, 1].into_iter().enumerate() {
            h.on_sent(t0 + Duration::from_millis(i as u64), seq, 1000 + i);
        }
        let mut out = Vec::new();
        h.on_feedback(
            &[
                status(65535, Some(10_000)),
                status(0, None),
                status(1, Some(12_000)),
            ],
            &mut out,
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].seq + 1, out[1].seq);
        assert_eq!(out[0].bytes, 1001);
        assert_eq!(out[0].send_time, t0 + Duration::from_millis(1));
        assert_eq!(out[1].arrival_us, None);
        assert_eq!(out[2].arrival_us, Some(12_000));
        // Reported once only; a late arrival of a lost packet is ignored.
        h.on_feedback(
            &[status(1, Some(12_000)), status(0, Some(13_000))],
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn unknown_and_too_old_numbers_are_skipped() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        let mut out = Vec::new();
        h.on_feedback(&[status(5, Some(0))], &mut out);
        assert!(out.is_empty(), "nothing sent yet");
        for seq in 0..(HISTORY_CAPACITY as u16 + 10) {
            h.on_sent(t0, seq, 100);
        }
        h.on_feedback(
            &[
                status(3, Some(0)),
                status(60_000, Some(0)),
                status(9, Some(1)),
            ],
            &mut out,
        );
        assert!(out.is_empty(), "3 and 9 were overwritten, 60000 never sent");
        assert_eq!(h.unmatched(), 4);
        h.on_feedback(&[status(HISTORY_CAPACITY as u16 + 9, Some(1))], &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn records_are_small_and_the_ring_starts_small() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        let mut out = Vec::new();
        // Feedback every 20 packets: the first ring is plenty.
        for i in 0..5_000u16 {
            h.on_sent(t0 + Duration::from_millis(u64::from(i)), i, 1200);
            if i % 20 == 19 {
                let statuses: Vec<_> = (i - 19..=i)
                    .map(|s| status(s, Some(i64::from(s) * 1000)))
                    .collect();
                h.on_feedback(&statuses, &mut out);
                assert_eq!(out.len(), 20);
            }
        }
        assert_eq!(h.capacity(), INITIAL_CAPACITY);
        assert_eq!(h.unmatched(), 0);
    }

    #[test]
    fn the_ring_grows_when_feedback_lags_and_keeps_its_records() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        let mut out = Vec::new();
        let n = INITIAL_CAPACITY as u16 * 3;
        for i in 0..n {
            let probe = (i % 2 == 0).then_some(ProbeId(u32::from(i)));
            match probe {
                Some(p) => h.on_sent_probe(
                    t0 + Duration::from_micros(u64::from(i) * 700),
                    i,
                    100 + usize::from(i),
                    p,
                ),
                None => h.on_sent(
                    t0 + Duration::from_micros(u64::from(i) * 700),
                    i,
                    100 + usize::from(i),
                ),
            }
        }
        assert_eq!(h.capacity(), INITIAL_CAPACITY * 4);
        let statuses: Vec<_> = (0..n).map(|s| status(s, Some(i64::from(s)))).collect();
        h.on_feedback(&statuses, &mut out);
        assert_eq!(
            out.len(),
            usize::from(n),
            "every record survived the growth"
        );
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.bytes, 100 + i);
            assert_eq!(r.send_time, t0 + Duration::from_micros(i as u64 * 700));
            assert_eq!(r.probe, (i % 2 == 0).then_some(ProbeId(i as u32)));
        }
        // Bounded whatever happens.
        for i in 0..(HISTORY_CAPACITY as u16 * 4) {
            h.on_sent(t0, n.wrapping_add(i), 100);
        }
        assert_eq!(h.capacity(), HISTORY_CAPACITY);
    }

    #[test]
    fn send_times_survive_the_32_bit_microsecond_wrap() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        let mut out = Vec::new();
        h.on_sent(t0, 1, 100);
        let late = t0 + Duration::from_secs(80 * 60) + Duration::from_micros(3);
        h.on_sent(late, 2, 100);
        h.on_sent(late + Duration::from_millis(5), 3, 100);
        h.on_feedback(&[status(2, Some(0)), status(3, Some(5_000))], &mut out);
        assert_eq!(out[0].send_time, late);
        assert_eq!(out[1].send_time, late + Duration::from_millis(5));
    }

    #[test]
    fn acked_bitrate_over_arrival_time() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        let mut out = Vec::new();
        assert_eq!(h.acked_bps(), None);
        // 1,250 bytes every 10 ms is 1 Mbit/s.
        for i in 0..200u16 {
            h.on_sent(t0 + Duration::from_millis(u64::from(i) * 10), i, 1250);
            h.on_feedback(&[status(i, Some(i64::from(i) * 10_000))], &mut out);
        }
        let bps = h.acked_bps().unwrap();
        assert!((990_000..=1_010_000).contains(&bps), "{bps}");
    }

    #[test]
    fn arrival_times_unwrap_across_the_reference_wrap() {
        let t0 = Instant::now();
        let mut h = SendHistory::new();
        let mut out = Vec::new();
        h.on_sent(t0, 1, 100);
        h.on_sent(t0, 2, 100);
        let near_top = ARRIVAL_WRAP_US / 2 - 1_000;
        h.on_feedback(&[status(1, Some(near_top))], &mut out);
        let a = out[0].arrival_us.unwrap();
        // The next reference wrapped to the negative end (sign-extended).
        h.on_feedback(&[status(2, Some(-ARRIVAL_WRAP_US / 2 + 1_000))], &mut out);
        assert_eq!(out[0].arrival_us.unwrap() - a, 2_000);
    }
}
