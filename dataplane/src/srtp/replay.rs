//! Packet index estimation (RFC 3711 §3.3.1) and the replay list (§3.3.2).

use super::SrtpError;

/// Packets older than the highest authenticated one by this many indices
/// or more are rejected without looking at them.
pub(crate) const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Largest SRTP packet index: the 32-bit ROC and the 16-bit sequence number.
const MAX_INDEX: u64 = (1 << 48) - 1;

/// Guesses the 48-bit index of a packet from its sequence number and the
/// highest index seen so far in this direction (RFC 3711 §3.3.1): of
/// ROC-1, ROC and ROC+1, the one that puts the packet nearest to `highest`.
pub(crate) fn estimate_index(highest: u64, seq: u16) -> Result<u64, SrtpError> {
    let roc = highest >> 16;
    let s_l = highest as u16;
    let v = if s_l < 0x8000 {
        // Before the first rollover there is no ROC-1: such a packet would
        // precede the stream, and authentication decides about it at ROC 0.
        if seq > s_l && seq - s_l > 0x8000 && roc > 0 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    let index = (v << 16) | u64::from(seq);
    if index > MAX_INDEX {
        return Err(SrtpError::IndexExhausted);
    }
    Ok(index)
}

/// A sliding bitmap over the last [`WINDOW`] indices of one SSRC, and the
/// highest index authenticated. Bit `i % WINDOW` stands for index `i`.
#[derive(Clone)]
pub(crate) struct ReplayWindow {
    top: u64,
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// A window whose first authenticated packet has `index`.
    pub(crate) fn new(index: u64) -> Self {
        let mut w = Self {
            top: index,
            bits: [0; WORDS],
        };
        w.set(index);
        w
    }

    /// The highest index authenticated so far.
    pub(crate) fn top(&self) -> u64 {
        self.top
    }

    /// Says whether `index` may be accepted, before authentication.
    pub(crate) fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.top {
            return Ok(());
        }
        if self.top - index >= WINDOW {
            return Err(SrtpError::TooOld);
        }
        if self.get(index) {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Records an authenticated `index`; call only after [`Self::check`].
    pub(crate) fn accept(&mut self, index: u64) {
        if index > self.top {
            let delta = index - self.top;
            if delta >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                // Forget the slots that now stand for indices never seen.
                for i in self.top + 1..index {
                    self.clear(i);
                }
            }
            self.top = index;
        }
        self.set(index);
    }

    fn get(&self, i: u64) -> bool {
        let slot = i % WINDOW;
        self.bits[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    fn set(&mut self, i: u64) {
        let slot = i % WINDOW;
        self.bits[(slot / 64) as usize] |= 1 << (slot % 64);
    }

    fn clear(&mut self, i: u64) {
        let slot = i % WINDOW;
        self.bits[(slot / 64) as usize] &= !(1 << (slot % 64));
    }
}
