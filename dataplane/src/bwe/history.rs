//! What Weir sent on one transport, by transport-wide sequence number, and
//! the matching of transport-cc feedback against it.
//!
//! Storage is bounded: a ring of [`HISTORY_CAPACITY`] send records indexed
//! by the widened sequence number, allocated at creation, and a ring of
//! recent arrivals for the acknowledged bitrate that grows to its bound
//! while traffic warms up. A packet older than the ring when its feedback
//! comes is simply not matched.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtcp::twcc::PacketStatus;

/// Send records kept (a power of two). At 1,200-byte packets this covers
/// about 0.4 s at 50 Mbit/s (2 s at 10 Mbit/s), several feedback intervals;
/// every subscriber with transport-cc pays for it, so no more.
pub const HISTORY_CAPACITY: usize = 2048;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    Not,
    Lost,
    Received,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    sent: Instant,
    bytes: u32,
    probe: Option<ProbeId>,
    reported: Reported,
}

/// The send history of one transport.
///
/// Call [`on_sent`](Self::on_sent) (or [`on_sent_probe`](Self::on_sent_probe))
/// for every packet carrying a transport-wide sequence number, in send order,
/// and [`on_feedback`](Self::on_feedback) with each parsed feedback.
#[derive(Debug)]
pub struct SendHistory {
    slots: Box<[Option<Slot>]>,
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
    /// An empty history; allocates all its storage now.
    pub fn new() -> Self {
        Self {
            slots: vec![None; HISTORY_CAPACITY].into_boxed_slice(),
            highest_sent: None,
            arrival_offset: 0,
            last_arrival: None,
            arrivals: VecDeque::with_capacity(64),
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
        self.slots[slot_index(ext)] = Some(Slot {
            seq: ext,
            sent: now,
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
            probe,
            reported: Reported::Not,
        });
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
            let index = slot_index(seq);
            let Some(slot) = self.slots[index].as_mut().filter(|s| s.seq == seq) else {
                self.unmatched += 1;
                continue;
            };
            if slot.reported != Reported::Not {
                continue;
            }
            let slot = *slot;
            let arrival_us = status.arrival_us.map(|raw| self.unwrap_arrival(raw));
            let reported = if arrival_us.is_some() {
                Reported::Received
            } else {
                Reported::Lost
            };
            if let Some(s) = self.slots[index].as_mut() {
                s.reported = reported;
            }
            if let Some(at) = arrival_us {
                self.add_arrival(at, slot.bytes);
            }
            out.push(PacketResult {
                seq,
                send_time: slot.sent,
                bytes: slot.bytes as usize,
                arrival_us,
                probe: slot.probe,
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

fn slot_index(seq: u64) -> usize {
    (seq as usize) & (HISTORY_CAPACITY - 1)
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
