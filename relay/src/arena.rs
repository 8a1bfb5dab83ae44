//! Buffers for outgoing datagrams without an allocation per datagram.
//!
//! quinn takes each datagram as a `Bytes` and drops it once the datagram
//! is in a QUIC packet. [`SendArena`] writes datagrams back to back into a
//! few large chunks and hands each out as a `Bytes` slice of its chunk;
//! when the current chunk is full it moves to the next one, which by then
//! quinn has normally finished with, so `BytesMut::reserve` takes the whole
//! chunk back in place. Only a chunk still referenced (quinn holding a
//! datagram from it: a backlog longer than the other chunks) costs a fresh
//! allocation, counted in [`SendArena::allocations`].
use bytes::{Bytes, BytesMut};

/// Bytes per chunk: about 50 datagrams of 1,200-byte RTP.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Chunks per arena: while one is written, quinn may still hold datagrams
/// of the others.
pub(crate) const CHUNKS: usize = 4;

/// See the module docs. One per sending task.
#[derive(Debug)]
pub(crate) struct SendArena {
    chunks: Vec<BytesMut>,
    /// Where each chunk's allocation starts, to tell a reclaimed chunk
    /// from a fresh one.
    bases: Vec<usize>,
    current: usize,
    allocations: u64,
}

impl SendArena {
    pub(crate) fn new() -> Self {
        let chunks: Vec<BytesMut> = (0..CHUNKS)
            .map(|_| BytesMut::with_capacity(CHUNK))
            .collect();
        Self {
            bases: chunks.iter().map(|c| c.as_ptr() as usize).collect(),
            chunks,
            current: 0,
            allocations: CHUNKS as u64,
        }
    }

    /// Builds one datagram from `parts`, back to back (at most [`CHUNK`]
    /// bytes in all), and returns it as a `Bytes` sharing its chunk.
    pub(crate) fn datagram(&mut self, parts: &[&[u8]]) -> Bytes {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut chunk = &mut self.chunks[self.current];
        if chunk.capacity() < len {
            self.current = (self.current + 1) % CHUNKS;
            chunk = &mut self.chunks[self.current];
            // Reclaims the chunk in place (back to its start) when no
            // datagram of it is still held; allocates a new one otherwise.
            chunk.reserve(CHUNK.max(len));
            let base = chunk.as_ptr() as usize;
            if base != self.bases[self.current] {
                self.bases[self.current] = base;
                self.allocations += 1;
            }
        }
        for p in parts {
            chunk.extend_from_slice(p);
        }
        chunk.split().freeze()
    }

    /// Chunks allocated so far (the first [`CHUNKS`] included).
    pub(crate) fn allocations(&self) -> u64 {
        self.allocations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_are_what_was_written() {
        let mut arena = SendArena::new();
        let mut held = Vec::new();
        for i in 0..500u32 {
            let len = 20 + (i as usize * 37) % 1300;
            let bytes: Vec<u8> = (0..len).map(|k| (k as u32 + i) as u8).collect();
            let d = arena.datagram(&[&bytes[..3], &bytes[3..]]);
            held.push((i, d));
        }
        for (i, d) in &held {
            assert_eq!(d.len(), 20 + (*i as usize * 37) % 1300);
            assert!(d
                .iter()
                .enumerate()
                .all(|(k, x)| *x == (k as u32 + i) as u8));
        }
    }

    #[test]
    fn released_chunks_are_reused_and_held_ones_are_not_overwritten() {
        let mut arena = SendArena::new();
        // Released at once: the chunks come back, nothing more allocated.
        for _ in 0..10_000 {
            drop(arena.datagram(&[&[1; 20], &[1; 1200]]));
        }
        assert_eq!(arena.allocations(), CHUNKS as u64);
        // One datagram held for a whole round of chunks: its chunk is not
        // taken back (a new one is allocated), and its bytes stay.
        let held = arena.datagram(&[&[7; 1220]]);
        for _ in 0..(CHUNKS * CHUNK / 1220 + 10) {
            drop(arena.datagram(&[&[9; 1220]]));
        }
        assert!(held.iter().all(|x| *x == 7));
        assert_eq!(arena.allocations(), CHUNKS as u64 + 1);
    }
}
