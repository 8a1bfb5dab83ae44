//! Loss detection toward publishers: which sequence numbers to NACK
//! (RFC 4585 §6.2.1), when, and how often.
//!
//! A gap is NACKed at once; each missing packet is asked again every
//! `max(rtt, MIN_RETRY)` up to `MAX_RETRIES` times and forgotten after
//! `MAX_AGE` (the decoder has moved on by then). The list is bounded, so a
//! huge jump (a restart, a long outage) clears it instead of growing.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// At most this many sequence numbers are tracked as missing.
const MAX_MISSING: usize = 512;
/// A missing packet is asked for at most this many times.
const MAX_RETRIES: u8 = 10;
/// Never ask again sooner than this, whatever the RTT.
const MIN_RETRY: Duration = Duration::from_millis(20);
/// Give up on a packet this long after it went missing.
const MAX_AGE: Duration = Duration::from_millis(1500);

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
    rtt: Duration,
    /// Packets given up on.
    pub abandoned: u64,
}

impl Default for NackGenerator {
    fn default() -> Self {
        Self {
            highest: None,
            missing: BTreeMap::new(),
            rtt: Duration::from_millis(100),
            abandoned: 0,
        }
    }
}

impl NackGenerator {
    /// Records a packet by its extended sequence number.
    pub fn on_packet(&mut self, now: Instant, ext_seq: u64) {
        let Some(highest) = self.highest else {
            self.highest = Some(ext_seq);
            return;
        };
        if ext_seq <= highest {
            // A late or retransmitted packet fills its gap.
            self.missing.remove(&ext_seq);
            return;
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
    }

    /// Updates the round-trip time used to space retries.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// Whether anything is missing.
    pub fn has_missing(&self) -> bool {
        !self.missing.is_empty()
    }

    /// Writes the NACK FCI entries (PID + BLP, 4 bytes each) of every packet
    /// due now into `fci`; returns the bytes written. Entries that no
    /// longer fit are left for the next call.
    pub fn poll(&mut self, now: Instant, fci: &mut [u8]) -> usize {
        let retry = self.rtt.max(MIN_RETRY);
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
        for (seq, m) in self.missing.iter_mut() {
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
        let mut n = NackGenerator::default();
        n.set_rtt(Duration::from_millis(50));
        n.on_packet(t0, 10);
        n.on_packet(t0, 14);
        assert_eq!(poll_seqs(&mut n, t0), vec![11, 12, 13]);
        assert!(
            poll_seqs(&mut n, t0 + Duration::from_millis(10)).is_empty(),
            "not before an RTT"
        );
        n.on_packet(t0, 12);
        assert_eq!(
            poll_seqs(&mut n, t0 + Duration::from_millis(60)),
            vec![11, 13]
        );
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
