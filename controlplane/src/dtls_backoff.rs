//! Exponential backoff for DTLS handshake retransmissions (RFC 6347
//! §4.2.4.1), applied below a handshake implementation that resends its
//! last flight at a fixed interval.
//!
//! The `dtls` crate resends an unanswered flight every second for as long
//! as the handshake lasts. On a loaded server nothing is lost: the peer is
//! only slow, and every resend is more work for it (records parsed, flights
//! answered again), so a join storm feeds itself. RFC 6347 asks for the
//! timer to double on each retransmission. [`FlightBackoff`] sits in the
//! datagram path (the `Conn` adapters of the server and of the load
//! generator), recognises a datagram it has already let through, and lets a
//! repeat out only when the doubled timer allows it: after 1, 3, 7, 15 … s.
//!
//! A datagram is identified by its first record, without the record
//! sequence number (which changes on every resend): content type, epoch,
//! datagram length and, for a plaintext handshake record, the handshake
//! message type, `message_seq` and fragment offset. Only handshake
//! (22) and change_cipher_spec (20) datagrams are held back; application
//! data and alerts always pass.

use std::time::{Duration, Instant};

/// The first retransmission is allowed this long after the first send.
const INITIAL: Duration = Duration::from_secs(1);
/// The timer doubles up to this (RFC 6347: at least 60 s).
const MAX: Duration = Duration::from_secs(60);
/// A resend this early is still on time: the handshake's own timer and
/// ours run on different clocks and tasks.
const SLACK: Duration = Duration::from_millis(100);
/// Distinct datagrams remembered; a flight is one to a few datagrams.
const REMEMBERED: usize = 8;

/// What identifies a datagram across resends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    content_type: u8,
    epoch: u16,
    len: usize,
    /// msg_type, message_seq and fragment_offset of a plaintext handshake.
    handshake: Option<[u8; 6]>,
}

impl Key {
    /// `None` for datagrams never held back (not handshake, or too short
    /// to carry a record header).
    fn of(datagram: &[u8]) -> Option<Key> {
        let content_type = *datagram.first()?;
        if content_type != 20 && content_type != 22 {
            return None;
        }
        let epoch = u16::from_be_bytes([*datagram.get(3)?, *datagram.get(4)?]);
        let handshake = if content_type == 22 && epoch == 0 {
            // Record header (13 bytes), then msg_type (1), length (3),
            // message_seq (2), fragment_offset (3).
            let h = datagram.get(13..22)?;
            Some([h[0], h[4], h[5], h[6], h[7], h[8]])
        } else {
            None
        };
        Some(Key {
            content_type,
            epoch,
            len: datagram.len(),
            handshake,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    key: Key,
    /// When the next resend may go out.
    next: Instant,
    /// The timer after that one.
    gap: Duration,
}

/// Decides, datagram by datagram, whether a handshake's resend goes on
/// the wire. One per DTLS connection; plain data, driven by the caller's
/// clock.
#[derive(Debug, Default)]
pub struct FlightBackoff {
    sent: Vec<Sent>,
    held: u64,
}

impl FlightBackoff {
    /// No datagram seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether to send `datagram` at `now`. `false` means: drop it (the
    /// handshake will resend it later, and the doubled timer decides then).
    pub fn admit(&mut self, now: Instant, datagram: &[u8]) -> bool {
        let Some(key) = Key::of(datagram) else {
            return true;
        };
        match self.sent.iter_mut().find(|s| s.key == key) {
            Some(s) if now + SLACK >= s.next => {
                s.next = now + s.gap;
                s.gap = (s.gap * 2).min(MAX);
                true
            }
            Some(_) => {
                self.held += 1;
                false
            }
            None => {
                if self.sent.len() == REMEMBERED {
                    self.sent.remove(0);
                }
                self.sent.push(Sent {
                    key,
                    next: now + INITIAL,
                    gap: INITIAL * 2,
                });
                true
            }
        }
    }

    /// Resends held back so far.
    pub fn held(&self) -> u64 {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A plaintext handshake record: header with `seq`, then a handshake
    /// header with `msg_type` and `message_seq`.
    fn record(seq: u8, msg_type: u8, message_seq: u8, body: usize) -> Vec<u8> {
        let mut d = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, seq, 0, 0];
        d.extend_from_slice(&[msg_type, 0, 0, 0, 0, message_seq, 0, 0, 0, 0, 0, 0]);
        d.resize(d.len() + body, 0xab);
        d
    }

    #[test]
    fn resends_double_their_spacing() {
        let t0 = Instant::now();
        let mut b = FlightBackoff::new();
        assert!(b.admit(t0, &record(0, 2, 1, 500)));
        // The handshake resends every second, with a new record sequence.
        let passed: Vec<u64> = (1..=16u8)
            .filter(|s| {
                b.admit(
                    t0 + Duration::from_secs(u64::from(*s)),
                    &record(*s, 2, 1, 500),
                )
            })
            .map(u64::from)
            .collect();
        assert_eq!(passed, vec![1, 3, 7, 15]);
        assert_eq!(b.held(), 12);
    }

    #[test]
    fn a_new_flight_passes_at_once() {
        let t0 = Instant::now();
        let mut b = FlightBackoff::new();
        assert!(b.admit(t0, &record(0, 1, 0, 100)));
        assert!(b.admit(t0 + Duration::from_millis(10), &record(1, 11, 1, 100)));
        assert!(b.admit(t0 + Duration::from_millis(20), &record(2, 16, 2, 100)));
        // Same message, different fragment length: another datagram.
        assert!(b.admit(t0 + Duration::from_millis(30), &record(3, 16, 2, 120)));
    }

    #[test]
    fn media_and_alerts_always_pass() {
        let t0 = Instant::now();
        let mut b = FlightBackoff::new();
        let app = [23u8, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4];
        let alert = [21u8, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 2, 0, 2, 1, 0];
        for _ in 0..5 {
            assert!(b.admit(t0, &app));
            assert!(b.admit(t0, &alert));
        }
        assert!(b.admit(t0, &[]));
    }

    #[test]
    fn encrypted_finished_is_held_by_epoch_and_length() {
        let t0 = Instant::now();
        let mut b = FlightBackoff::new();
        let mut fin = vec![20u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1, 1];
        fin.extend_from_slice(&[22, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 40]);
        fin.resize(fin.len() + 40, 7);
        assert!(b.admit(t0, &fin));
        assert!(!b.admit(t0 + Duration::from_millis(500), &fin));
        assert!(b.admit(t0 + Duration::from_millis(1000), &fin));
    }

    proptest! {
        /// Any bytes: no panic, and a datagram seen for the first time
        /// always passes.
        #[test]
        fn never_panics_and_first_sight_passes(
            datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..20),
        ) {
            let t0 = Instant::now();
            let mut b = FlightBackoff::new();
            let mut seen: Vec<Option<Key>> = Vec::new();
            for (i, d) in datagrams.iter().enumerate() {
                let key = Key::of(d);
                let first = key.is_none() || !seen.contains(&key);
                let ok = b.admit(t0 + Duration::from_millis(i as u64), d);
                if first {
                    prop_assert!(ok);
                }
                seen.push(key);
                if seen.len() > REMEMBERED {
                    // Older keys may have been forgotten: first sight again.
                    seen.clear();
                    b = FlightBackoff::new();
                }
            }
        }
    }
}
