//! Loss detection toward publishers: which sequence numbers to NACK
//! (RFC 4585 §6.2.1), when, and how often.
//!
//! A gap is NACKed at once. The next `EARLY_REQUESTS - 1` requests follow
//! a quarter of a round trip apart: a lost request or a lost repair is then
//! covered before the first repair could even have come back, which is
//! what repairs 99 % of losses within two round trips at 5 % loss each
//! way (a retry only after a full RTT lands past that budget). Later
//! requests wait a full RTT, up to `MAX_RETRIES` in all, and a packet is
//! forgotten after `MAX_AGE` (the decoder has moved on by then). The list
//! is bounded, so a huge jump (a restart, a long outage) clears it instead
//! of growing.
//!
//! Reordering is learned too: a missing packet that shows up before any
//! repair could have (within half an RTT of going missing) was only late,
//! and how far behind the newest it came sets a reorder window. A gap is
//! first requested once the newest packet is more than that window ahead
//! of it, so jitter that reorders costs a few milliseconds of waiting
//! instead of a retransmission per reordered packet.
//!
//! The round trip is learned from the repairs themselves (the time from a
//! packet's only request to its arrival, Karn's rule: a packet asked for
//! more than once gives no sample), so it works toward publishers that
//! never report on Weir's RTCP; [`NackGenerator::set_rtt`] overrides it
//! when a report gives a better one.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// At most this many sequence numbers are tracked as missing.
const MAX_MISSING: usize = 512;
/// A missing packet is asked for at most this many times.
const MAX_RETRIES: u8 = 10;
/// Never ask again sooner than this, whatever the RTT.
const MIN_RETRY: Duration = Duration::from_millis(10);
/// Give up on a packet this long after it went missing.
const MAX_AGE: Duration = Duration::from_millis(1500);
/// Requests sent a fraction of an RTT apart before backing off to one per
/// RTT.
const EARLY_REQUESTS: u8 = 3;
/// Largest reorder window (packets) ever waited for.
const MAX_REORDER: u64 = 16;
/// The reorder window forgets samples older than about this long.
const REORDER_EPOCH: Duration = Duration::from_secs(2);
/// The round trip assumed until one is measured or set.
const INITIAL_RTT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
struct Missing {
    since: Instant,
    last_sent: Option<Instant>,
    retries: u8,
}

/// Tracks missing packets of one inbound stream.
#[derive(Debug, Clone)]
pub struct NackGenerator {
    highest: Option<u64>,
    missing: BTreeMap<u64, Missing>,
    /// Smoothed round trip (RFC 6298's SRTT, gain 1/8).
    rtt: Duration,
    /// Whether `rtt` comes from a sample or `set_rtt` rather than the guess.
    rtt_known: bool,
    /// Reorder window (packets): the largest lateness seen this epoch and
    /// the previous one, so it shrinks back when reordering stops.
    reorder: [u64; 2],
    reorder_epoch: Option<Instant>,
    /// Packets given up on.
    pub abandoned: u64,
    /// Missing packets that arrived after all (repaired or late).
    pub recovered: u64,
}

impl Default for NackGenerator {
    fn default() -> Self {
        Self {
            highest: None,
            missing: BTreeMap::new(),
            rtt: INITIAL_RTT,
            rtt_known: false,
            reorder: [0; 2],
            reorder_epoch: None,
            abandoned: 0,
            recovered: 0,
        }
    }
}

impl NackGenerator {
    /// Records a packet by its extended sequence number. Returns whether
    /// it is news: the highest so far or one that was missing, not a copy
    /// of a packet already received (publishers probe their bandwidth with
    /// such copies, sent as RTX).
    pub fn on_packet(&mut self, now: Instant, ext_seq: u64) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(ext_seq);
            return true;
        };
        if ext_seq <= highest {
            // A late or retransmitted packet fills its gap.
            if let Some(m) = self.missing.remove(&ext_seq) {
                self.recovered += 1;
                // Never asked for, or back sooner than any repair could be
                // (once the round trip is known): it was only late.
                let early = self.rtt_known && now.saturating_duration_since(m.since) < self.rtt / 2;
                if m.retries == 0 || early {
                    self.on_reorder(now, highest - ext_seq);
                    return true;
                }
                if let (1, Some(asked)) = (m.retries, m.last_sent) {
                    self.on_rtt_sample(now.saturating_duration_since(asked));
                }
                return true;
            }
            return false;
        }
        let gap = ext_seq - highest - 1;
        if gap as usize >= MAX_MISSING {
            // Too far to repair packet by packet: a keyframe is the cure.
            self.abandoned += self.missing.len() as u64 + gap;
            self.missing.clear();
        } else {
            for seq in highest + 1..ext_seq {
                self.missing.insert(
                    seq,
                    Missing {
                        since: now,
                        last_sent: None,
                        retries: 0,
                    },
                );
            }
            while self.missing.len() > MAX_MISSING {
                self.missing.pop_first();
                self.abandoned += 1;
            }
        }
        self.highest = Some(ext_seq);
        true
    }

    /// Updates the round-trip time used to space retries.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
        self.rtt_known = true;
    }

    /// The round trip retries are spaced by: measured, set, or the initial
    /// guess.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// The round trip measured from repairs or set, if any.
    pub fn measured_rtt(&self) -> Option<Duration> {
        self.rtt_known.then_some(self.rtt)
    }

    fn on_reorder(&mut self, now: Instant, distance: u64) {
        let epoch = *self.reorder_epoch.get_or_insert(now);
        if now.saturating_duration_since(epoch) >= REORDER_EPOCH {
            self.reorder = [0, self.reorder[0]];
            self.reorder_epoch = Some(now);
        }
        self.reorder[0] = self.reorder[0].max(distance.min(MAX_REORDER));
    }

    /// Packets a gap may trail the newest one by before it is requested.
    pub fn reorder_window(&self) -> u64 {
        self.reorder[0].max(self.reorder[1])
    }

    fn on_rtt_sample(&mut self, sample: Duration) {
        // A repair slower than the give-up age is a late original, not a
        // round trip.
        if sample >= MAX_AGE {
            return;
        }
        if self.rtt_known {
            self.rtt = (self.rtt * 7 + sample) / 8;
        } else {
            self.rtt = sample;
            self.rtt_known = true;
        }
    }

    /// How long after request number `retries` (1-based) the next one is
    /// due.
    fn spacing(&self, retries: u8) -> Duration {
        let rtt = self.rtt.max(MIN_RETRY);
        if retries < EARLY_REQUESTS {
            (rtt / 4).max(MIN_RETRY)
        } else {
            rtt
        }
    }

    /// Whether anything is missing.
    pub fn has_missing(&self) -> bool {
        !self.missing.is_empty()
    }

    /// Writes the NACK FCI entries (PID + BLP, 4 bytes each) of every packet
    /// due now into `fci`; returns the bytes written. Entries that no
    /// longer fit are left for the next call.
    pub fn poll(&mut self, now: Instant, fci: &mut [u8]) -> usize {
        let early = self.spacing(1);
        let late = self.spacing(EARLY_REQUESTS);
        let abandoned = &mut self.abandoned;
        self.missing.retain(|_, m| {
            let keep = m.retries < MAX_RETRIES && now.duration_since(m.since) < MAX_AGE;
            if !keep {
                *abandoned += 1;
            }
            keep
        });
        let mut written = 0;
        let mut current: Option<(u16, u16)> = None;
        let newest_due = self
            .highest
            .unwrap_or(0)
            .saturating_sub(self.reorder_window());
        for (seq, m) in self.missing.range_mut(..newest_due) {
            let retry = if m.retries < EARLY_REQUESTS {
                early
            } else {
                late
            };
            if m.last_sent.is_some_and(|t| now.duration_since(t) < retry) {
                continue;
            }
            let seq16 = *seq as u16;
            if let Some((pid, blp)) = current.as_mut() {
                let d = seq16.wrapping_sub(*pid);
                if (1..=16).contains(&d) {
                    *blp |= 1 << (d - 1);
                    m.last_sent = Some(now);
                    m.retries += 1;
                    continue;
                }
            }
            // A new entry: room for it, and for the one it closes.
            let need = written + if current.is_some() { 8 } else { 4 };
            if fci.len() < need {
                break;
            }
            if let Some(entry) = current {
                write_entry(&mut fci[written..written + 4], entry);
                written += 4;
            }
            current = Some((seq16, 0));
            m.last_sent = Some(now);
            m.retries += 1;
        }
        if let Some(entry) = current {
            // Room was reserved when the entry was opened.
            write_entry(&mut fci[written..written + 4], entry);
            written += 4;
        }
        written
    }
}

fn write_entry(slot: &mut [u8], (pid, blp): (u16, u16)) {
    slot[..2].copy_from_slice(&pid.to_be_bytes());
    slot[2..4].copy_from_slice(&blp.to_be_bytes());
}

/// Iterates the sequence numbers a NACK's FCI asks for.
pub fn nacked_seqs(fci: &[u8]) -> impl Iterator<Item = u16> + '_ {
    fci.chunks_exact(4).flat_map(|c| {
        let pid = u16::from_be_bytes([c[0], c[1]]);
        let blp = u16::from_be_bytes([c[2], c[3]]);
        std::iter::once(pid).chain(
            (0..16)
                .filter(move |i| blp & (1 << i) != 0)
                .map(move |i| pid.wrapping_add(i + 1)),
        )
    })
}

/// Writes a generic NACK packet (RTPFB FMT 1) with `fci` into `out`.
pub fn write_nack(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32, fci: &[u8]) -> Option<usize> {
    let len = 12 + fci.len();
    let out = out.get_mut(..len)?;
    out[0] = 0x80 | 1;
    out[1] = 205;
    out[2..4].copy_from_slice(&u16::try_from(len / 4 - 1).ok()?.to_be_bytes());
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    out[12..].copy_from_slice(fci);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_seqs(n: &mut NackGenerator, now: Instant) -> Vec<u16> {
        let mut fci = [0u8; 64];
        let len = n.poll(now, &mut fci);
        nacked_seqs(&fci[..len]).collect()
    }

    #[test]
    fn gap_is_nacked_then_retried_then_recovered() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut n = NackGenerator::default();
        n.set_rtt(ms(80));
        n.on_packet(t0, 10);
        n.on_packet(t0, 14);
        assert_eq!(poll_seqs(&mut n, t0), vec![11, 12, 13]);
        assert!(
            poll_seqs(&mut n, t0 + ms(10)).is_empty(),
            "not before a quarter of an RTT"
        );
        // 12's repair arrives (after half an RTT: a repair, not a late packet).
        n.on_packet(t0 + ms(50), 12);
        assert_eq!(n.recovered, 1);
        assert_eq!(n.reorder_window(), 0);
        assert_eq!(poll_seqs(&mut n, t0 + ms(60)), vec![11, 13]);
    }

    #[test]
    fn copies_of_received_packets_are_not_news() {
        let t0 = Instant::now();
        let mut n = NackGenerator::default();
        assert!(n.on_packet(t0, 10), "the first");
        assert!(n.on_packet(t0, 13), "a new highest");
        assert!(!n.on_packet(t0, 13), "the highest again");
        assert!(!n.on_packet(t0, 10), "an older one received before");
        assert!(n.on_packet(t0, 11), "a missing one");
        assert!(!n.on_packet(t0, 11), "that one again");
        assert_eq!(n.recovered, 1);
    }

    #[test]
    fn early_requests_then_one_per_round_trip() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut n = NackGenerator::default();
        n.set_rtt(ms(80));
        n.on_packet(t0, 1);
        n.on_packet(t0, 3);
        let asked: Vec<u64> = (0..=200)
            .filter(|i| !poll_seqs(&mut n, t0 + ms(*i)).is_empty())
            .collect();
        // At once, twice a quarter RTT apart, then every RTT.
        assert_eq!(asked, vec![0, 20, 40, 120, 200]);
    }

    #[test]
    fn round_trip_is_learned_from_repairs_asked_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut n = NackGenerator::default();
        assert_eq!(n.rtt(), INITIAL_RTT);
        n.on_packet(t0, 1);
        n.on_packet(t0, 3);
        assert_eq!(poll_seqs(&mut n, t0), vec![2]);
        n.on_packet(t0 + ms(40), 2);
        assert_eq!(n.rtt(), ms(40), "the first sample is taken whole");
        // Asked twice: ambiguous, no sample (Karn).
        n.on_packet(t0 + ms(40), 5);
        poll_seqs(&mut n, t0 + ms(40));
        poll_seqs(&mut n, t0 + ms(60));
        n.on_packet(t0 + ms(300), 4);
        assert_eq!(n.rtt(), ms(40));
    }

    #[test]
    fn reordering_widens_the_wait_and_then_forgets() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut n = NackGenerator::default();
        n.set_rtt(ms(100));
        n.on_packet(t0, 1);
        n.on_packet(t0, 3);
        n.on_packet(t0, 4);
        // 2 shows up 5 ms later, two packets behind: only late.
        n.on_packet(t0 + ms(5), 2);
        assert_eq!(n.reorder_window(), 2);
        // A new gap is not asked for until the newest is 3 ahead of it.
        n.on_packet(t0 + ms(10), 6);
        assert!(poll_seqs(&mut n, t0 + ms(10)).is_empty());
        n.on_packet(t0 + ms(15), 7);
        assert!(poll_seqs(&mut n, t0 + ms(15)).is_empty());
        n.on_packet(t0 + ms(20), 8);
        assert_eq!(poll_seqs(&mut n, t0 + ms(20)), vec![5]);
        // Two epochs without reordering: back to asking at once.
        let later = t0 + REORDER_EPOCH * 2 + ms(30);
        n.on_packet(later, 9);
        n.on_packet(later, 11);
        n.on_packet(later + ms(1), 10);
        let later = later + REORDER_EPOCH + ms(1);
        n.on_packet(later, 12);
        n.on_packet(later, 14);
        n.on_packet(later + ms(1), 13);
        assert!(n.reorder_window() <= 1, "{}", n.reorder_window());
    }

    #[test]
    fn far_apart_losses_get_separate_entries() {
        let t0 = Instant::now();
        let mut n = NackGenerator::default();
        n.on_packet(t0, 1);
        n.on_packet(t0, 3);
        n.on_packet(t0, 40);
        let seqs = poll_seqs(&mut n, t0);
        assert_eq!(seqs.len(), 1 + 36);
        assert_eq!(seqs[0], 2);
    }

    #[test]
    fn gives_up_after_retries_or_age() {
        let t0 = Instant::now();
        let mut n = NackGenerator::default();
        n.set_rtt(Duration::from_millis(20));
        n.on_packet(t0, 0);
        n.on_packet(t0, 2);
        let mut asked = 0;
        for i in 0..20 {
            asked += poll_seqs(&mut n, t0 + Duration::from_millis(25 * i)).len();
        }
        assert_eq!(asked, usize::from(MAX_RETRIES));
        assert!(!n.has_missing());
        assert_eq!(n.abandoned, 1);
    }

    #[test]
    fn huge_jump_clears_instead_of_growing() {
        let t0 = Instant::now();
        let mut n = NackGenerator::default();
        n.on_packet(t0, 0);
        n.on_packet(t0, 100_000);
        assert!(!n.has_missing());
    }

    #[test]
    fn small_buffer_leaves_the_rest_for_later() {
        let t0 = Instant::now();
        let mut n = NackGenerator::default();
        n.on_packet(t0, 0);
        n.on_packet(t0, 100);
        let mut fci = [0u8; 8];
        assert_eq!(n.poll(t0, &mut fci), 8);
        let first: Vec<u16> = nacked_seqs(&fci).collect();
        assert_eq!(first.len(), 34);
        let mut rest = [0u8; 64];
        let len = n.poll(t0, &mut rest);
        assert_eq!(nacked_seqs(&rest[..len]).count(), 99 - 34);
    }

    #[test]
    fn nack_packet_round_trips_through_the_walker() {
        let mut fci = [0u8; 4];
        fci[..2].copy_from_slice(&7u16.to_be_bytes());
        fci[2..].copy_from_slice(&0b101u16.to_be_bytes());
        let mut out = [0u8; 32];
        let len = write_nack(&mut out, 1, 2, &fci).unwrap();
        match super::super::walk(&out[..len]).next() {
            Some(Ok(super::super::RtcpItem::Nack { media_ssrc: 2, fci })) => {
                assert_eq!(nacked_seqs(fci).collect::<Vec<_>>(), vec![7, 8, 10]);
            }
            other => panic!("{other:?}"),
        }
    }
}
