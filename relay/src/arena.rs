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
        if self.chunks[self.current].capacity() < len {
            self.next_chunk(len);
        }
        let chunk = &mut self.chunks[self.current];
        for p in parts {
            chunk.extend_from_slice(p);
        }
        chunk.split().freeze()
    }

    /// Starts a datagram of at most `max` bytes (at most [`CHUNK`]) in
    /// the current chunk, moving to the next chunk if it has less room:
    /// then [`SendArena::append`] parts and [`SendArena::finish`] it.
    pub(crate) fn begin(&mut self, max: usize) {
        let max = max.min(CHUNK);
        if self.chunks[self.current].capacity() - self.chunks[self.current].len() < max {
            self.next_chunk(max);
        }
    }

    /// Appends to the datagram begun (within the `max` given to
    /// [`SendArena::begin`]; more still works but may reallocate).
    pub(crate) fn append(&mut self, part: &[u8]) {
        self.chunks[self.current].extend_from_slice(part);
    }

    /// Overwrites bytes of the datagram begun, from `at`.
    pub(crate) fn patch(&mut self, at: usize, bytes: &[u8]) {
        self.chunks[self.current][at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Ends the datagram begun and returns it, without its first `skip`
    /// bytes, as a `Bytes` sharing its chunk.
    pub(crate) fn finish(&mut self, skip: usize) -> Bytes {
        let mut d = self.chunks[self.current].split().freeze();
        let skip = skip.min(d.len());
        bytes::Buf::advance(&mut d, skip);
        d
    }

    /// Moves to the next chunk, reclaiming it in place when quinn no
    /// longer holds any datagram of it.
    fn next_chunk(&mut self, len: usize) {
        self.current = (self.current + 1) % CHUNKS;
        let chunk = &mut self.chunks[self.current];
        chunk.reserve(CHUNK.max(len));
        let base = chunk.as_ptr() as usize;
        if base != self.bases[self.current] {
            self.bases[self.current] = base;
            self.allocations += 1;
        }
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
    fn datagrams_built_in_parts_are_what_was_written() {
        let mut arena = SendArena::new();
        let mut held = Vec::new();
        for i in 0..200u8 {
            arena.begin(9000);
            arena.append(&[0, 0, 0]);
            for _ in 0..(i % 7 + 1) {
                arena.append(&[i; 1200]);
            }
            arena.patch(0, &[i, i, i]);
            let skip = if i % 2 == 0 { 3 } else { 0 };
            held.push((i, skip, arena.finish(skip)));
        }
        for (i, skip, d) in &held {
            assert_eq!(d.len(), 3 - skip + 1200 * usize::from(i % 7 + 1));
            assert!(d.iter().all(|x| x == i));
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
