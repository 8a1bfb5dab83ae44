//! Transport-wide congestion control feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01): Weir records when
//! each packet of a publisher arrived and reports it back, so the browser's
//! send-side estimator can ramp up (and turn on its simulcast layers).
//!
//! Feedback uses two-bit status-vector chunks only: simple, and at most one
//! byte per seven packets more than the optimal run-length mix.
use std::time::{Duration, Instant};

/// Feedback is sent this often while packets arrive.
pub const FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
/// At most this many packets per feedback packet (keeps it under the MTU).
const MAX_PACKETS_PER_FEEDBACK: u64 = 400;
/// Arrivals older than this many sequence numbers behind the newest are
/// dropped unreported (bounds memory). A power of two: the ring's size.
const MAX_PENDING: usize = 2048;
/// A ring slot with no arrival recorded.
const ABSENT: i64 = i64::MIN;

/// Records arrivals of one transport and writes feedback packets.
///
/// Arrivals live in a fixed ring indexed by extended sequence number, so
/// recording and reporting never allocate. Every slot outside
/// `next_base..=highest` holds [`ABSENT`].
#[derive(Debug)]
pub struct TwccRecorder {
    epoch: Instant,
    highest: Option<u64>,
    /// Arrival (µs since epoch) by extended transport sequence number
    /// modulo [`MAX_PENDING`].
    arrivals: Box<[i64]>,
    /// Arrivals recorded and not yet reported.
    pending: usize,
    /// First sequence number the next feedback starts at.
    next_base: Option<u64>,
    feedback_count: u8,
    last_feedback: Option<Instant>,
}

impl TwccRecorder {
    /// A recorder whose clock starts at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            highest: None,
            arrivals: vec![ABSENT; MAX_PENDING].into_boxed_slice(),
            pending: 0,
            next_base: None,
            feedback_count: 0,
            last_feedback: None,
        }
    }

    fn slot(ext: u64) -> usize {
        (ext as usize) & (MAX_PENDING - 1)
    }

    /// Forgets the arrivals of `from..to` (each slot at most once).
    fn clear(&mut self, from: u64, to: u64) {
        let to = to.min(from + MAX_PENDING as u64);
        for ext in from..to {
            let slot = &mut self.arrivals[Self::slot(ext)];
            if *slot != ABSENT {
                *slot = ABSENT;
                self.pending -= 1;
            }
        }
    }

    /// Records the arrival of a packet carrying transport sequence `seq`.
    pub fn on_packet(&mut self, now: Instant, seq: u16) {
        let ext = match self.highest {
            None => u64::from(seq) + (1 << 16),
            Some(h) => {
                let diff = i64::from(seq.wrapping_sub(h as u16) as i16);
                (h as i64 + diff).max(0) as u64
            }
        };
        if self.next_base.is_some_and(|b| ext < b) {
            // Already reported as lost; a late arrival is not reported again.
            return;
        }
        let base = *self.next_base.get_or_insert(ext);
        // Keep the window within the ring: older arrivals go unreported.
        let oldest = (ext + 1).saturating_sub(MAX_PENDING as u64);
        if base < oldest {
            self.clear(base, oldest);
            self.next_base = Some(oldest);
        }
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        let at = now.saturating_duration_since(self.epoch).as_micros() as i64;
        let slot = &mut self.arrivals[Self::slot(ext)];
        if *slot == ABSENT {
            *slot = at;
            self.pending += 1;
        }
    }

    /// Whether a feedback packet is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.pending > 0
            && self
                .last_feedback
                .is_none_or(|t| now.duration_since(t) >= FEEDBACK_INTERVAL)
    }

    fn arrival(&self, ext: u64) -> Option<i64> {
        let at = self.arrivals[Self::slot(ext)];
        (at != ABSENT).then_some(at)
    }

    /// Writes one feedback packet into `out` if anything is pending and the
    /// interval has passed. Returns its length.
    pub fn poll_feedback(
        &mut self,
        now: Instant,
        sender_ssrc: u32,
        media_ssrc: u32,
        out: &mut [u8],
    ) -> Option<usize> {
        if !self.due(now) {
            return None;
        }
        let highest = self.highest?;
        let mut base = self.next_base?;
        let first = (base..=highest).find(|e| self.arrival(*e).is_some())?;
        if first >= base + MAX_PACKETS_PER_FEEDBACK {
            // A whole feedback of losses says nothing the next arrival does
            // not: start at it.
            base = first;
        }
        let last = highest.min(base + MAX_PACKETS_PER_FEEDBACK - 1);
        let first_arrival = self.arrival(first)?;
        // Reference time: a multiple of 64 ms at or before the first arrival.
        let reference = first_arrival.div_euclid(64_000);
        let mut prev = reference * 64_000;
        // Symbols: 0 not received, 1 small delta, 2 large delta.
        let mut symbols = [0u8; MAX_PACKETS_PER_FEEDBACK as usize];
        let mut deltas = [0i16; MAX_PACKETS_PER_FEEDBACK as usize];
        let (mut n_symbols, mut n_deltas) = (0, 0);
        let mut end = last;
        for seq in base..=last {
            match self.arrival(seq) {
                None => n_symbols += 1,
                Some(at) => {
                    let delta = (at - prev).div_euclid(250);
                    if !(i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(&delta) {
                        // Cannot be expressed: stop here, the rest goes in
                        // the next feedback.
                        end = seq - 1;
                        break;
                    }
                    symbols[n_symbols] = if (0..=255).contains(&delta) { 1 } else { 2 };
                    n_symbols += 1;
                    deltas[n_deltas] = delta as i16;
                    n_deltas += 1;
                    prev += delta * 250;
                }
            }
        }
        if end < base {
            return None;
        }
        let (symbols, deltas) = (&symbols[..n_symbols], &deltas[..n_deltas]);
        let status_count = u16::try_from(end - base + 1).ok()?;
        let chunks = symbols.len().div_ceil(7);
        let delta_bytes: usize = deltas
            .iter()
            .map(|d| if (0..=255).contains(d) { 1 } else { 2 })
            .sum();
        let body = 8 + 2 * chunks + delta_bytes;
        let len = (12 + body).div_ceil(4) * 4;
        let out = out.get_mut(..len)?;
        out.fill(0);
        let padded = len != 12 + body;
        out[0] = 0x80 | (u8::from(padded) << 5) | 15;
        out[1] = 205;
        out[2..4].copy_from_slice(&u16::try_from(len / 4 - 1).ok()?.to_be_bytes());
        out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
        out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
        out[12..14].copy_from_slice(&(base as u16).to_be_bytes());
        out[14..16].copy_from_slice(&status_count.to_be_bytes());
        let reference = (reference as u32) & 0x00ff_ffff;
        out[16..19].copy_from_slice(&reference.to_be_bytes()[1..]);
        out[19] = self.feedback_count;
        let mut at = 20;
        for chunk in symbols.chunks(7) {
            let mut word: u16 = 0b11 << 14;
            for (i, s) in chunk.iter().enumerate() {
                word |= u16::from(*s) << (12 - 2 * i);
            }
            out[at..at + 2].copy_from_slice(&word.to_be_bytes());
            at += 2;
        }
        for d in deltas {
            if (0..=255).contains(d) {
                out[at] = *d as u8;
                at += 1;
            } else {
                out[at..at + 2].copy_from_slice(&d.to_be_bytes());
                at += 2;
            }
        }
        if padded {
            out[len - 1] = (len - 12 - body) as u8;
        }
        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.last_feedback = Some(now);
        self.clear(base, end + 1);
        self.next_base = Some(end + 1);
        Some(len)
    }
}

/// One packet's status in a parsed feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketStatus {
    /// Transport-wide sequence number.
    pub seq: u16,
    /// Arrival relative to the reference time, in µs; `None` if lost.
    pub arrival_us: Option<i64>,
}

/// Parses the FCI of a transport-cc feedback (after the 12-byte common
/// header) into `out`; returns how many statuses were written. Used by the
/// send-side estimator and by tests.
pub fn parse_feedback(fci: &[u8], out: &mut Vec<PacketStatus>) -> Option<()> {
    out.clear();
    let base = u16::from_be_bytes([*fci.first()?, *fci.get(1)?]);
    let count = usize::from(u16::from_be_bytes([*fci.get(2)?, *fci.get(3)?]));
    let reference = i64::from(u32::from_be_bytes([
        0,
        *fci.get(4)?,
        *fci.get(5)?,
        *fci.get(6)?,
    ]));
    // Sign-extend the 24-bit reference.
    let reference = if reference & 0x80_0000 != 0 {
        reference - (1 << 24)
    } else {
        reference
    };
    let mut symbols = Vec::with_capacity(count);
    let mut at = 8;
    while symbols.len() < count {
        let word = u16::from_be_bytes([*fci.get(at)?, *fci.get(at + 1)?]);
        at += 2;
        if word & 0x8000 == 0 {
            // Run length: symbol in bits 13-14, length in the low 13 bits.
            let symbol = ((word >> 13) & 0b11) as u8;
            let run = usize::from(word & 0x1fff);
            symbols.extend(std::iter::repeat_n(symbol, run.min(count - symbols.len())));
        } else if word & 0x4000 == 0 {
            for i in 0..14 {
                symbols.push(((word >> (13 - i)) & 1) as u8);
            }
        } else {
            for i in 0..7 {
                symbols.push(((word >> (12 - 2 * i)) & 0b11) as u8);
            }
        }
    }
    symbols.truncate(count);
    let mut time = reference * 64_000;
    for (i, s) in symbols.iter().enumerate() {
        let seq = base.wrapping_add(i as u16);
        let arrival_us = match s {
            1 => {
                time += i64::from(*fci.get(at)?) * 250;
                at += 1;
                Some(time)
            }
            2 => {
                time += i64::from(i16::from_be_bytes([*fci.get(at)?, *fci.get(at + 1)?])) * 250;
                at += 2;
                Some(time)
            }
            _ => None,
        };
        out.push(PacketStatus { seq, arrival_us });
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feedback(rec: &mut TwccRecorder, now: Instant) -> Vec<PacketStatus> {
        let mut buf = [0u8; 1500];
        let n = rec
            .poll_feedback(now, 1, 2, &mut buf)
            .expect("feedback due");
        assert_eq!(n % 4, 0);
        assert_eq!(buf[1], 205);
        assert_eq!(buf[0] & 0x1f, 15);
        let mut out = Vec::new();
        parse_feedback(&buf[12..n], &mut out).expect("parses");
        out
    }

    #[test]
    fn reports_arrivals_and_losses_with_deltas() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new(t0);
        rec.on_packet(t0 + Duration::from_millis(100), 10);
        rec.on_packet(t0 + Duration::from_millis(101), 11);
        rec.on_packet(t0 + Duration::from_millis(180), 13);
        let fb = feedback(&mut rec, t0 + Duration::from_millis(200));
        assert_eq!(fb.len(), 4);
        assert_eq!(fb[0].seq, 10);
        assert_eq!(fb[2].arrival_us, None, "12 was lost");
        let a = fb[0].arrival_us.unwrap();
        assert_eq!(fb[1].arrival_us.unwrap() - a, 1000);
        assert_eq!(fb[3].arrival_us.unwrap() - a, 80_000, "a large delta");
        // Nothing more until new packets arrive.
        assert!(!rec.due(t0 + Duration::from_millis(400)));
        rec.on_packet(t0 + Duration::from_millis(401), 14);
        let fb = feedback(&mut rec, t0 + Duration::from_millis(401));
        assert_eq!(fb.iter().map(|s| s.seq).collect::<Vec<_>>(), vec![14]);
    }

    #[test]
    fn a_jump_past_the_ring_reports_only_its_window() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new(t0);
        rec.on_packet(t0, 10);
        rec.on_packet(t0 + Duration::from_millis(1), 10 + MAX_PENDING as u16 + 5);
        let fb = feedback(&mut rec, t0 + Duration::from_millis(100));
        // 10 fell out of the ring; a feedback's worth of losses is skipped.
        assert_eq!(fb.len(), 1);
        assert_eq!(fb[0].seq, 10 + MAX_PENDING as u16 + 5);
        assert!(fb[0].arrival_us.is_some());
        assert!(
            !rec.due(t0 + Duration::from_secs(60)),
            "everything reported"
        );
    }

    #[test]
    fn sequence_wraps() {
        let t0 = Instant::now();
        let mut rec = TwccRecorder::new(t0);
        for (i, seq) in [65534u16, 65535, 0, 1].into_iter().enumerate() {
            rec.on_packet(t0 + Duration::from_millis(i as u64), seq);
        }
        let fb = feedback(&mut rec, t0 + Duration::from_millis(10));
        assert_eq!(
            fb.iter().map(|s| s.seq).collect::<Vec<_>>(),
            vec![65534, 65535, 0, 1]
        );
        assert!(fb.iter().all(|s| s.arrival_us.is_some()));
    }

    proptest! {
        /// Whatever arrives, feedback parses back to exactly the arrivals,
        /// at 250 µs resolution.
        #[test]
        fn feedback_round_trips(gaps in proptest::collection::vec((1u16..4, 0u64..90_000), 1..120)) {
            let t0 = Instant::now();
            let mut rec = TwccRecorder::new(t0);
            let mut seq = 100u16;
            let mut at = 5_000u64;
            let mut sent = Vec::new();
            for (step, micros) in gaps {
                seq = seq.wrapping_add(step);
                at += micros;
                rec.on_packet(t0 + Duration::from_micros(at), seq);
                sent.push((seq, at as i64));
            }
            let fb = feedback(&mut rec, t0 + Duration::from_secs(60));
            let received: Vec<_> = fb.iter().filter_map(|s| s.arrival_us.map(|a| (s.seq, a))).collect();
            prop_assert_eq!(received.len(), sent.len());
            let base = received[0].1 - sent[0].1;
            for ((s1, a1), (s2, a2)) in received.iter().zip(&sent) {
                prop_assert_eq!(s1, s2);
                prop_assert!((a1 - a2 - base).abs() < 250 * 2, "{} vs {}", a1 - base, a2);
            }
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            let _ = parse_feedback(&data, &mut out);
        }
    }
}
