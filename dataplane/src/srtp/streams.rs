//! Per-SSRC state of one direction, found without hashing or allocating.

use super::SrtpError;

/// SSRCs one direction of a transport may carry. A subscriber in a large
/// room receives a few hundred; the cap stops an authenticated but hostile
/// peer from growing the table without bound.
pub(crate) const MAX_STREAMS: usize = 1024;

/// SSRCs and their state in two parallel vectors, so that a lookup scans
/// packed `u32`s. The last hit is tried first: packets of one stream come
/// in runs.
pub(crate) struct Streams<S> {
    ssrcs: Vec<u32>,
    states: Vec<S>,
    last: usize,
}

impl<S> Streams<S> {
    pub(crate) fn new() -> Self {
        // Empty until a stream comes: a subscriber's inbound RTP never gets
        // one, and a replay window is 136 B. A new stream may allocate
        // (once per SSRC, never per packet).
        Self {
            ssrcs: Vec::new(),
            states: Vec::new(),
            last: 0,
        }
    }

    /// The slot of `ssrc`, if it has state.
    #[inline]
    pub(crate) fn find(&mut self, ssrc: u32) -> Option<usize> {
        if self.ssrcs.get(self.last) == Some(&ssrc) {
            return Some(self.last);
        }
        let i = self.ssrcs.iter().position(|&s| s == ssrc)?;
        self.last = i;
        Some(i)
    }

    /// Fails when a new stream would pass [`MAX_STREAMS`].
    pub(crate) fn ensure_room(&self) -> Result<(), SrtpError> {
        if self.ssrcs.len() >= MAX_STREAMS {
            return Err(SrtpError::TooManyStreams);
        }
        Ok(())
    }

    /// Adds state for an SSRC that [`Self::find`] did not know.
    pub(crate) fn insert(&mut self, ssrc: u32, state: S) -> Result<usize, SrtpError> {
        self.ensure_room()?;
        self.ssrcs.push(ssrc);
        self.states.push(state);
        self.last = self.ssrcs.len() - 1;
        Ok(self.last)
    }

    #[inline]
    pub(crate) fn get(&self, slot: usize) -> &S {
        &self.states[slot]
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, slot: usize) -> &mut S {
        &mut self.states[slot]
    }
}
