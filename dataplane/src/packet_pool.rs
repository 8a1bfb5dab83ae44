//! A fixed pool of published packets, shared by reference count, so that a
//! published packet costs no allocation once the pool is warm.
//!
//! The publisher's core owns the [`PacketPool`]: it takes a free slot
//! ([`PacketPool::take`]), decrypts the datagram into it in place, fills the
//! parsed facts and shares it ([`PacketMut::share`]). The resulting
//! [`PacketRef`]s go to subscribers on any core and into retransmission
//! caches; when the last one is dropped, wherever that happens, the slot goes
//! back on the pool's free list. Slot buffers are reserved on a slot's first
//! use and kept, so the pool's memory is bounded by its slot count (fixed at
//! start) and reaches its peak after warm-up.
//!
//! When every slot is in use the pool falls back to a heap packet and counts
//! a miss: forwarding never stops for want of a slot.
//!
//! The free list is a Treiber stack with many pushers (any thread that drops
//! the last reference) and a single popper (the owner, through `&mut self`).
//! With one popper no slot can be popped and pushed again between a pop's
//! read of the head and its compare-exchange, so the stack has no ABA
//! problem and needs no tag.
use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;

use crate::packet::{LayerFacts, MediaPacket};

/// End of the free list.
const NIL: u32 = u32::MAX;

/// Bytes reserved for a slot's buffer on its first use: the largest datagram
/// the IO backends deliver, so a slot's buffer never grows again.
const SLOT_BYTES: usize = crate::io::MAX_DATAGRAM;

struct Slot {
    /// Live [`PacketRef`]s; 0 while free or held by a [`PacketMut`].
    refs: AtomicU32,
    /// Next free slot while on the free list.
    next: AtomicU32,
    packet: UnsafeCell<MediaPacket>,
}

struct Shared {
    slots: Box<[Slot]>,
    /// Top of the free list.
    head: AtomicU32,
}

// SAFETY: a slot's packet is written only through a `PacketMut`, which
// exists only for a slot popped from the free list by the single owner and
// not yet shared (no `PacketRef` points at it), and read only through
// `PacketRef`s, which exist only after the `PacketMut` is consumed. The
// release/acquire pair on the last reference drop and on the free list
// orders every read before the next write.
unsafe impl Sync for Shared {}
// SAFETY: as above; `MediaPacket` itself is `Send`.
unsafe impl Send for Shared {}

impl Shared {
    fn push(&self, idx: u32) {
        let slot = &self.slots[idx as usize];
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            slot.next.store(head, Ordering::Relaxed);
            match self
                .head
                .compare_exchange_weak(head, idx, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Only the owner pops (see the module docs).
    fn pop(&self) -> Option<u32> {
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            if head == NIL {
                return None;
            }
            let next = self.slots[head as usize].next.load(Ordering::Relaxed);
            match self
                .head
                .compare_exchange_weak(head, next, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return Some(head),
                Err(h) => head = h,
            }
        }
    }
}

/// The owner's side of a packet pool; not `Clone`, so only one thread takes
/// slots from it.
pub struct PacketPool {
    shared: Arc<Shared>,
    misses: u64,
}

impl fmt::Debug for PacketPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketPool")
            .field("slots", &self.shared.slots.len())
            .field("misses", &self.misses)
            .finish()
    }
}

impl PacketPool {
    /// A pool of `slots` packets (at most `u32::MAX - 1`); 0 makes every
    /// packet a heap packet.
    pub fn new(slots: usize) -> Self {
        let n = slots.min(NIL as usize - 1);
        let slots: Box<[Slot]> = (0..n)
            .map(|i| Slot {
                refs: AtomicU32::new(0),
                next: AtomicU32::new(if i + 1 < n { (i + 1) as u32 } else { NIL }),
                packet: UnsafeCell::new(MediaPacket::empty()),
            })
            .collect();
        let head = if n == 0 { NIL } else { 0 };
        Self {
            shared: Arc::new(Shared {
                slots,
                head: AtomicU32::new(head),
            }),
            misses: 0,
        }
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.slots.len()
    }

    /// Times [`PacketPool::take`] found no free slot and allocated.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// A packet to fill, exclusively the caller's: a free slot, or a heap
    /// packet when the pool is exhausted. Its previous contents are
    /// unspecified; its buffer has room for any datagram.
    pub fn take(&mut self) -> PacketMut {
        match self.shared.pop() {
            Some(idx) => {
                let shared = self.shared.clone();
                // SAFETY: the slot was just popped by the only popper and has
                // no `PacketRef`, so this is the only access to its packet.
                let p = unsafe { &mut *shared.slots[idx as usize].packet.get() };
                if p.data.capacity() < SLOT_BYTES {
                    p.data.reserve_exact(SLOT_BYTES - p.data.len());
                }
                PacketMut(Inner::Pooled { shared, idx })
            }
            None => {
                self.misses += 1;
                let mut p = MediaPacket::empty();
                p.data.reserve_exact(SLOT_BYTES);
                PacketMut(Inner::Heap(Arc::new(p)))
            }
        }
    }
}

enum Inner {
    Pooled { shared: Arc<Shared>, idx: u32 },
    Heap(Arc<MediaPacket>),
}

/// A packet being filled: exclusive, mutable. Dropping it unshared returns
/// its slot to the pool.
pub struct PacketMut(Inner);

impl PacketMut {
    /// Shares the filled packet.
    pub fn share(self) -> PacketRef {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never used or dropped again, so its inner value is
        // moved out exactly once.
        let inner = unsafe { std::ptr::read(&me.0) };
        if let Inner::Pooled { shared, idx } = &inner {
            // Relaxed: the packet reaches other threads only through a
            // channel or ring that orders its bytes before their reads.
            shared.slots[*idx as usize].refs.store(1, Ordering::Relaxed);
        }
        PacketRef(inner)
    }
}

impl Deref for PacketMut {
    type Target = MediaPacket;

    fn deref(&self) -> &MediaPacket {
        match &self.0 {
            // SAFETY: exclusive, as in `PacketPool::take`.
            Inner::Pooled { shared, idx } => unsafe { &*shared.slots[*idx as usize].packet.get() },
            Inner::Heap(p) => p,
        }
    }
}

impl DerefMut for PacketMut {
    fn deref_mut(&mut self) -> &mut MediaPacket {
        match &mut self.0 {
            // SAFETY: exclusive, as in `PacketPool::take`.
            Inner::Pooled { shared, idx } => unsafe {
                &mut *shared.slots[*idx as usize].packet.get()
            },
            // Never shared before `share` consumes the `PacketMut`, so the
            // Arc is unique here.
            Inner::Heap(p) => Arc::get_mut(p).expect("an unshared heap packet is unique"),
        }
    }
}

impl Drop for PacketMut {
    fn drop(&mut self) {
        if let Inner::Pooled { shared, idx } = &self.0 {
            shared.push(*idx);
        }
    }
}

/// A shared, read-only published packet. Cloning costs an atomic increment;
/// dropping the last clone returns its slot to the pool it came from.
pub struct PacketRef(Inner);

impl PacketRef {
    /// Whether this packet lives in a pool slot (not a heap fallback).
    pub fn is_pooled(&self) -> bool {
        matches!(self.0, Inner::Pooled { .. })
    }
}

impl From<MediaPacket> for PacketRef {
    /// A heap packet outside any pool, for callers (tests, relays) that
    /// build packets themselves.
    fn from(p: MediaPacket) -> Self {
        PacketRef(Inner::Heap(Arc::new(p)))
    }
}

impl Clone for PacketRef {
    fn clone(&self) -> Self {
        match &self.0 {
            Inner::Pooled { shared, idx } => {
                // Relaxed, as for `Arc`: a new reference comes from an
                // existing one, which keeps the slot alive meanwhile.
                shared.slots[*idx as usize]
                    .refs
                    .fetch_add(1, Ordering::Relaxed);
                PacketRef(Inner::Pooled {
                    shared: shared.clone(),
                    idx: *idx,
                })
            }
            Inner::Heap(p) => PacketRef(Inner::Heap(p.clone())),
        }
    }
}

impl Drop for PacketRef {
    fn drop(&mut self) {
        if let Inner::Pooled { shared, idx } = &self.0 {
            let slot = &shared.slots[*idx as usize];
            if slot.refs.fetch_sub(1, Ordering::Release) == 1 {
                // Every other holder's reads happen before the slot's reuse.
                fence(Ordering::Acquire);
                shared.push(*idx);
            }
        }
    }
}

impl Deref for PacketRef {
    type Target = MediaPacket;

    fn deref(&self) -> &MediaPacket {
        match &self.0 {
            // SAFETY: shared slots are only read until their last reference
            // is dropped (see `Shared`'s Sync).
            Inner::Pooled { shared, idx } => unsafe { &*shared.slots[*idx as usize].packet.get() },
            Inner::Heap(p) => p,
        }
    }
}

impl fmt::Debug for PacketRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl MediaPacket {
    /// An empty packet, the state of a pool slot before its first use.
    pub fn empty() -> Self {
        MediaPacket {
            data: Vec::new(),
            payload_offset: 0,
            payload_len: 0,
            seq: 0,
            timestamp: 0,
            ssrc: 0,
            marker: false,
            keyframe: false,
            layers: LayerFacts::default(),
            sender_report: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(pool: &mut PacketPool, seq: u16) -> PacketRef {
        let mut p = pool.take();
        p.data.clear();
        p.data.extend_from_slice(&seq.to_be_bytes());
        p.seq = seq;
        p.share()
    }

    #[test]
    fn slots_come_back_when_the_last_reference_drops() {
        let mut pool = PacketPool::new(2);
        let a = fill(&mut pool, 1);
        let a2 = a.clone();
        let b = fill(&mut pool, 2);
        assert!(a.is_pooled() && b.is_pooled());
        let c = fill(&mut pool, 3);
        assert!(!c.is_pooled(), "exhausted: heap fallback");
        assert_eq!(pool.misses(), 1);
        drop(a);
        let d = fill(&mut pool, 4);
        assert!(!d.is_pooled(), "a2 still holds the slot");
        drop(a2);
        let e = fill(&mut pool, 5);
        assert!(e.is_pooled());
        assert_eq!((e.seq, &e.data[..]), (5, &[0, 5][..]));
        assert_eq!(b.seq, 2, "other slots untouched");
        assert_eq!(pool.misses(), 2);
    }

    #[test]
    fn an_unshared_packet_returns_its_slot() {
        let mut pool = PacketPool::new(1);
        drop(pool.take());
        let p = fill(&mut pool, 7);
        assert!(p.is_pooled());
        assert_eq!(pool.misses(), 0);
    }

    proptest::proptest! {
        /// Any mix of fills, clones and drops: a packet always reads back
        /// what was written into it, and the pool misses only when every
        /// slot is held.
        #[test]
        fn contents_survive_and_slots_recycle(ops in proptest::collection::vec((0u8..3, 0usize..16), 1..400)) {
            let mut pool = PacketPool::new(8);
            let mut live: Vec<PacketRef> = Vec::new();
            let mut seq = 0u16;
            for (op, pick) in ops {
                match op {
                    0 => {
                        let held = {
                            let mut slots: Vec<_> = live.iter().filter(|p| p.is_pooled()).map(|p| p.seq).collect();
                            slots.sort_unstable();
                            slots.dedup();
                            slots.len()
                        };
                        let misses = pool.misses();
                        seq = seq.wrapping_add(1);
                        let p = fill(&mut pool, seq);
                        proptest::prop_assert_eq!(pool.misses() != misses, held == 8);
                        live.push(p);
                    }
                    1 if !live.is_empty() => {
                        let p = live[pick % live.len()].clone();
                        live.push(p);
                    }
                    _ if !live.is_empty() => {
                        live.swap_remove(pick % live.len());
                    }
                    _ => {}
                }
                for p in &live {
                    proptest::prop_assert_eq!(&p.data[..], &p.seq.to_be_bytes()[..]);
                }
            }
        }
    }

    #[test]
    fn references_dropped_on_other_threads_recycle() {
        let mut pool = PacketPool::new(64);
        for round in 0..200u16 {
            let refs: Vec<PacketRef> = (0..32).map(|i| fill(&mut pool, round * 32 + i)).collect();
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let mine: Vec<PacketRef> = refs.iter().skip(t).step_by(4).cloned().collect();
                    std::thread::spawn(move || {
                        for p in &mine {
                            assert_eq!(u16::from_be_bytes([p.data[0], p.data[1]]), p.seq);
                        }
                    })
                })
                .collect();
            drop(refs);
            for h in handles {
                h.join().unwrap();
            }
        }
        assert_eq!(pool.misses(), 0, "every slot came back");
    }
}
