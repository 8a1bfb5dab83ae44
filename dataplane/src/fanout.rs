//! A lock-free single-producer, many-consumer ring of packets per track: the
//! cross-core fanout of the data plane and its NACK retransmission cache.
//!
//! The publisher's core ([`Producer`]) writes each packet once into the slot
//! of its (extended) sequence number, with a few words of parsed facts.
//! Each subscriber's core reads through its own [`Consumer`] cursor, copying
//! the packet straight into the buffer it rewrites and encrypts. Nothing
//! waits: the producer overwrites the oldest slot whatever the consumers do,
//! and a consumer that fell more than a ring behind skips forward and counts
//! the packets it lost. A NACK is answered with [`FanoutRing::get`] while the
//! packet is still in its slot.
//!
//! # Memory ordering
//! Each slot is a sequence lock over atomic words (no byte of a slot is ever
//! accessed non-atomically, so a torn read is detected, never undefined
//! behaviour). Writing sequence number `s`:
//! 1. `stamp = 2s + 1` (odd: being written), then a release fence;
//! 2. the facts, length and bytes, relaxed;
//! 3. `stamp = 2s + 2` (release), then `head = s + 1` (release).
//!
//! A reader of `s` loads `stamp` (acquire) and goes on only if it is
//! `2s + 2`, copies the words (relaxed), issues an acquire fence and loads
//! `stamp` again: unchanged means the copy is whole. The model is checked
//! with loom:
//!
//! ```sh
//! RUSTFLAGS="--cfg weir_loom" cargo test -p weir-dataplane --release --lib ring_loom
//! ```
//!
//! # How the core uses it
//! The publishing core builds one ring per published stream (track and
//! SSRC) with the first packet published while another core subscribes,
//! hands it to each subscribing core (`CoreInput::AttachRing`, with the
//! sequence number to start at), and publishes every packet at its extended
//! sequence number with its facts packed by [`facts::pack`]. It then marks
//! those cores to wake; the driver writes each one's eventfd at most once a
//! turn. A subscribing core reads its consumers in `Core::handle_wake`,
//! copies each entry into a slot of its own packet pool and forwards it as a
//! same-core packet (whose retransmission cache keeps it by reference).
//! Packets the ring refuses (late ones, not after the last published; ones
//! larger than a slot) still cross through the mailbox as pooled packets.
#[cfg(weir_loom)]
use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(weir_loom)]
use loom::sync::Arc;
#[cfg(not(weir_loom))]
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(weir_loom))]
use std::sync::Arc;

pub mod facts;

/// A shared ring as it is handed between cores (`loom`'s `Arc` when the
/// ring is model-checked, so the rest of the crate builds unchanged).
pub type SharedRing = Arc<FanoutRing>;

/// Words of facts stored beside each packet.
pub const META_WORDS: usize = 4;

struct Slot {
    /// `2s + 1` while sequence `s` is being written, `2s + 2` once it is
    /// whole; 0 before the first write.
    stamp: AtomicU64,
    len: AtomicU32,
    meta: [AtomicU64; META_WORDS],
    words: Box<[AtomicU64]>,
}

/// The shared ring. Build it with [`FanoutRing::new`], which hands out its
/// only [`Producer`].
pub struct FanoutRing {
    slots: Box<[Slot]>,
    mask: u64,
    /// One past the highest sequence number published; 0 before the first.
    head: AtomicU64,
    /// The first sequence number published (`u64::MAX` before), so that a
    /// consumer made earlier does not count the numbers before it as lost.
    first: AtomicU64,
    /// Largest packet a slot holds, in bytes.
    capacity: usize,
}

impl std::fmt::Debug for FanoutRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutRing")
            .field("slots", &self.slots.len())
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// A packet read from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// Its length in bytes (copied to the start of the caller's buffer).
    pub len: usize,
    /// Its facts, as the producer packed them.
    pub meta: [u64; META_WORDS],
}

/// Why [`Producer::publish`] refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Larger than a slot.
    #[error("packet of {0} bytes does not fit a ring slot")]
    TooLarge(usize),
    /// Not after the last published sequence number (a late or repeated
    /// packet: its slot may already hold a newer one).
    #[error("sequence number {0} is not after the last published one")]
    NotNewer(u64),
}

impl FanoutRing {
    /// A ring of `slots` slots (rounded up to a power of two, at least 2) of
    /// `capacity` bytes each, and its producer. All memory is allocated
    /// here, once.
    pub fn new(slots: usize, capacity: usize) -> (Arc<FanoutRing>, Producer) {
        let n = slots.max(2).next_power_of_two();
        let words = capacity.div_ceil(8);
        let slots: Box<[Slot]> = (0..n)
            .map(|_| Slot {
                stamp: AtomicU64::new(0),
                len: AtomicU32::new(0),
                meta: std::array::from_fn(|_| AtomicU64::new(0)),
                words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            })
            .collect();
        let ring = Arc::new(FanoutRing {
            slots,
            mask: n as u64 - 1,
            head: AtomicU64::new(0),
            first: AtomicU64::new(u64::MAX),
            capacity: words * 8,
        });
        let producer = Producer {
            ring: ring.clone(),
            last: None,
        };
        (ring, producer)
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a ring has at least two slots.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The largest packet a slot holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Copies packet `seq` into `out` if its slot still holds it whole (the
    /// NACK path). `None` if it was never published, has been overwritten,
    /// is being overwritten, or `out` is too small.
    pub fn get(&self, seq: u64, out: &mut [u8]) -> Option<Entry> {
        match self.read_slot(seq, out) {
            SlotRead::Whole(e) => Some(e),
            _ => None,
        }
    }

    fn read_slot(&self, seq: u64, out: &mut [u8]) -> SlotRead {
        let slot = &self.slots[(seq & self.mask) as usize];
        let want = 2 * seq + 2;
        let before = slot.stamp.load(Ordering::Acquire);
        if before != want {
            return if before > want {
                SlotRead::Overwritten
            } else {
                SlotRead::Missing
            };
        }
        let len = slot.len.load(Ordering::Relaxed) as usize;
        let meta: [u64; META_WORDS] = std::array::from_fn(|i| slot.meta[i].load(Ordering::Relaxed));
        if len > out.len() || len > self.capacity {
            // Too small a buffer, or a length torn by a concurrent write
            // (then the stamp check below would fail too).
            return if slot.stamp.load(Ordering::Acquire) == want {
                SlotRead::TooSmall
            } else {
                SlotRead::Overwritten
            };
        }
        // Whole words first (fixed-size copies the compiler turns into
        // plain moves), then the tail.
        let mut chunks = out[..len].chunks_exact_mut(8);
        let mut words = slot.words.iter();
        for (chunk, word) in (&mut chunks).zip(&mut words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let tail = chunks.into_remainder();
        if let (false, Some(word)) = (tail.is_empty(), words.next()) {
            let bytes = word.load(Ordering::Relaxed).to_le_bytes();
            tail.copy_from_slice(&bytes[..tail.len()]);
        }
        // Orders the relaxed loads above before the stamp's re-check.
        fence(Ordering::Acquire);
        if slot.stamp.load(Ordering::Relaxed) != want {
            return SlotRead::Overwritten;
        }
        SlotRead::Whole(Entry { seq, len, meta })
    }
}

enum SlotRead {
    Whole(Entry),
    /// The slot holds an older sequence number: this one was never
    /// published (a gap in the publisher's numbers) or is being written.
    Missing,
    /// A newer packet took the slot (the reader fell a ring behind).
    Overwritten,
    TooSmall,
}

/// The only writer of a ring; lives on the publisher's core.
#[derive(Debug)]
pub struct Producer {
    ring: Arc<FanoutRing>,
    last: Option<u64>,
}

impl Producer {
    /// The ring it writes.
    pub fn ring(&self) -> &Arc<FanoutRing> {
        &self.ring
    }

    /// Writes packet `seq` with its facts. Sequence numbers must increase;
    /// gaps are allowed (lost packets) and read as missing.
    pub fn publish(
        &mut self,
        seq: u64,
        meta: [u64; META_WORDS],
        bytes: &[u8],
    ) -> Result<(), PublishError> {
        let ring = &*self.ring;
        if bytes.len() > ring.capacity {
            return Err(PublishError::TooLarge(bytes.len()));
        }
        if self.last.is_some_and(|l| seq <= l) || seq >= u64::MAX / 2 - 1 {
            return Err(PublishError::NotNewer(seq));
        }
        let slot = &ring.slots[(seq & ring.mask) as usize];
        slot.stamp.store(2 * seq + 1, Ordering::Relaxed);
        // Readers that see any of the writes below also see the odd stamp.
        fence(Ordering::Release);
        slot.len.store(bytes.len() as u32, Ordering::Relaxed);
        for (m, v) in slot.meta.iter().zip(meta) {
            m.store(v, Ordering::Relaxed);
        }
        let mut chunks = bytes.chunks_exact(8);
        let mut words = slot.words.iter();
        // Chunks first: `zip` must not take a word for the tail.
        for (chunk, word) in (&mut chunks).zip(&mut words) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        let tail = chunks.remainder();
        if let (false, Some(word)) = (tail.is_empty(), words.next()) {
            let mut b = [0u8; 8];
            b[..tail.len()].copy_from_slice(tail);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        slot.stamp.store(2 * seq + 2, Ordering::Release);
        if self.last.is_none() {
            ring.first.store(seq, Ordering::Relaxed);
        }
        // Publishes `first` too: a reader that sees this head sees it.
        ring.head.store(seq + 1, Ordering::Release);
        self.last = Some(seq);
        Ok(())
    }
}

/// One reader's cursor; lives on a subscribing core.
#[derive(Debug)]
pub struct Consumer {
    ring: Arc<FanoutRing>,
    next: u64,
    lost: u64,
}

impl Consumer {
    /// A consumer of `ring` that starts with the next packet published.
    pub fn new(ring: &Arc<FanoutRing>) -> Self {
        Consumer {
            next: ring.head.load(Ordering::Acquire),
            ring: ring.clone(),
            lost: 0,
        }
    }

    /// A consumer of `ring` whose first packet is sequence number `next`
    /// (or the first one after it): made on another core than the producer,
    /// it still reads from where the producer was when it handed the ring
    /// over, not from wherever the producer got to in between.
    pub fn starting_at(ring: &Arc<FanoutRing>, next: u64) -> Self {
        Consumer {
            next,
            ring: ring.clone(),
            lost: 0,
        }
    }

    /// One past the highest sequence number published so far (where
    /// [`Consumer::new`] starts).
    pub fn head_of(ring: &FanoutRing) -> u64 {
        ring.head.load(Ordering::Acquire)
    }

    /// The ring it reads.
    pub fn ring(&self) -> &Arc<FanoutRing> {
        &self.ring
    }

    /// Whether it reads `ring` (the same ring, not an equal one).
    pub fn reads(&self, ring: &SharedRing) -> bool {
        Arc::ptr_eq(&self.ring, ring)
    }

    /// Packets this consumer skipped because the producer overwrote them
    /// before it read them.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The next sequence number it will look at.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Copies the next packet into `out`. Skips sequence numbers never
    /// published and, when the producer has lapped this consumer, jumps to
    /// the oldest packet still held, counting the packets passed over in
    /// [`Consumer::lost`] (an upper bound: gaps in the publisher's numbers
    /// inside a lapped stretch count too). `None` when it has caught up (or `out` is too
    /// small for the next packet, which is then skipped and counted lost).
    pub fn read(&mut self, out: &mut [u8]) -> Option<Entry> {
        let ring = &*self.ring;
        loop {
            let head = ring.head.load(Ordering::Acquire);
            if self.next >= head {
                return None;
            }
            let first = ring.first.load(Ordering::Relaxed);
            if self.next < first {
                self.next = first;
            }
            let oldest = head.saturating_sub(ring.slots.len() as u64);
            if self.next < oldest {
                self.lost += oldest - self.next;
                self.next = oldest;
            }
            let seq = self.next;
            match ring.read_slot(seq, out) {
                SlotRead::Whole(e) => {
                    self.next = seq + 1;
                    return Some(e);
                }
                // Below head, so never published: a gap, not a loss.
                SlotRead::Missing => self.next = seq + 1,
                SlotRead::Overwritten | SlotRead::TooSmall => {
                    self.lost += 1;
                    self.next = seq + 1;
                }
            }
        }
    }
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;

    fn packet(seq: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (seq as u8).wrapping_add(i as u8))
            .collect()
    }

    #[test]
    fn consumers_read_in_order_and_skip_gaps() {
        let (ring, mut p) = FanoutRing::new(8, 64);
        let mut a = Consumer::new(&ring);
        let mut buf = [0u8; 64];
        assert_eq!(a.read(&mut buf), None);
        for seq in [10u64, 11, 13] {
            p.publish(seq, [seq, 0, 0, 0], &packet(seq, 20 + seq as usize))
                .unwrap();
        }
        let mut got = Vec::new();
        while let Some(e) = a.read(&mut buf) {
            assert_eq!(&buf[..e.len], &packet(e.seq, e.len)[..]);
            assert_eq!(e.meta[0], e.seq);
            got.push(e.seq);
        }
        assert_eq!(got, vec![10, 11, 13]);
        assert_eq!(a.lost(), 0, "12 was never published: not a loss");
        assert_eq!(p.publish(13, [0; 4], &[1]), Err(PublishError::NotNewer(13)));
        assert_eq!(
            p.publish(14, [0; 4], &[0; 65]),
            Err(PublishError::TooLarge(65))
        );
    }

    #[test]
    fn a_lapped_consumer_skips_forward_and_counts() {
        let (ring, mut p) = FanoutRing::new(4, 16);
        let mut slow = Consumer::new(&ring);
        for seq in 0..10u64 {
            p.publish(seq, [0; 4], &packet(seq, 8)).unwrap();
        }
        let mut buf = [0u8; 16];
        let first = slow.read(&mut buf).unwrap();
        assert_eq!(first.seq, 6, "the oldest still held");
        assert_eq!(slow.lost(), 6);
        let rest: Vec<u64> = std::iter::from_fn(|| slow.read(&mut buf).map(|e| e.seq)).collect();
        assert_eq!(rest, vec![7, 8, 9]);
    }

    #[test]
    fn get_serves_retransmissions_while_held() {
        let (ring, mut p) = FanoutRing::new(4, 16);
        for seq in 100..106u64 {
            p.publish(seq, [seq; 4], &packet(seq, 10)).unwrap();
        }
        let mut buf = [0u8; 16];
        assert_eq!(ring.get(105, &mut buf).map(|e| e.meta[0]), Some(105));
        assert_eq!(&buf[..10], &packet(105, 10)[..]);
        assert!(ring.get(101, &mut buf).is_none(), "overwritten");
        assert!(ring.get(200, &mut buf).is_none(), "never published");
        assert!(ring.get(104, &mut [0u8; 4]).is_none(), "buffer too small");
    }

    proptest::proptest! {
        /// Against a model: whatever the mix of publishes (with gaps),
        /// reads and lookups, a consumer gets exactly the published
        /// packets still held when it reads, in order, whole, and counts
        /// the others as lost; `get` finds a packet until a later one takes
        /// its slot.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u8..4, 1u64..4, 0usize..48), 1..300)) {
            const SLOTS: u64 = 8;
            let (ring, mut p) = FanoutRing::new(SLOTS as usize, 48);
            let mut c = Consumer::new(&ring);
            let mut published: Vec<u64> = Vec::new();
            let mut next_seq = 5u64;
            let mut delivered: Vec<u64> = Vec::new();
            let mut buf = [0u8; 48];
            for (op, step, len) in ops {
                match op {
                    0 | 1 => {
                        next_seq += step;
                        p.publish(next_seq, [next_seq, len as u64, 0, 0], &packet(next_seq, len)).unwrap();
                        published.push(next_seq);
                    }
                    2 => {
                        if let Some(e) = c.read(&mut buf) {
                            proptest::prop_assert_eq!(&buf[..e.len], &packet(e.seq, e.len)[..]);
                            proptest::prop_assert_eq!(e.meta[1], e.len as u64);
                            delivered.push(e.seq);
                        }
                    }
                    _ => {
                        let Some(&top) = published.last() else { continue };
                        let seq = top.saturating_sub(step * 3);
                        // Held until a later packet takes its slot.
                        let held = published.contains(&seq)
                            && !published.iter().any(|s| *s > seq && s % SLOTS == seq % SLOTS);
                        proptest::prop_assert_eq!(ring.get(seq, &mut buf).is_some(), held);
                    }
                }
            }
            while let Some(e) = c.read(&mut buf) {
                delivered.push(e.seq);
            }
            proptest::prop_assert!(delivered.windows(2).all(|w| w[0] < w[1]));
            proptest::prop_assert!(delivered.iter().all(|s| published.contains(s)));
            if let Some(&top) = published.last() {
                // The last ring's worth is always still readable at the end.
                for s in published.iter().filter(|s| **s + SLOTS > top) {
                    proptest::prop_assert!(delivered.contains(s), "{} missing", s);
                }
            }
            proptest::prop_assert!(c.lost() as usize >= published.len() - delivered.len());
        }
    }

    /// One producer and four consumers on real threads: every packet read is
    /// whole, each consumer sees increasing sequence numbers, and every
    /// published packet is either read or counted lost by each consumer.
    #[test]
    fn stress_many_threads() {
        const PACKETS: u64 = 200_000;
        let (ring, mut p) = FanoutRing::new(64, 256);
        let consumers: Vec<Consumer> = (0..4).map(|_| Consumer::new(&ring)).collect();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = consumers
            .into_iter()
            .enumerate()
            .map(|(k, mut c)| {
                let done = done.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 256];
                    let (mut read, mut last) = (0u64, None::<u64>);
                    loop {
                        let finished = done.load(std::sync::atomic::Ordering::Acquire);
                        while let Some(e) = c.read(&mut buf) {
                            assert!(last.is_none_or(|l| e.seq > l), "in order");
                            assert_eq!(e.len, 16 + (e.seq % 200) as usize);
                            assert_eq!(&buf[..e.len], &packet(e.seq, e.len)[..], "whole");
                            assert_eq!(e.meta, [e.seq, !e.seq, e.seq * 3, 7]);
                            last = Some(e.seq);
                            read += 1;
                            if k == 0 && read % 64 == 0 {
                                // One slow consumer, to be lapped.
                                std::thread::yield_now();
                            }
                        }
                        if finished {
                            break;
                        }
                    }
                    (read, c.lost(), c.position())
                })
            })
            .collect();
        for seq in 0..PACKETS {
            let len = 16 + (seq % 200) as usize;
            p.publish(seq, [seq, !seq, seq * 3, 7], &packet(seq, len))
                .unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        for r in readers {
            let (read, lost, position) = r.join().unwrap();
            assert_eq!(position, PACKETS);
            assert_eq!(read + lost, PACKETS, "read {read}, lost {lost}");
            assert!(read > 0);
        }
    }
}

/// Loom model checks of the sequence lock: run with
/// `RUSTFLAGS="--cfg weir_loom" cargo test -p weir-dataplane --release --lib ring_loom`.
#[cfg(all(test, weir_loom))]
mod ring_loom {
    use super::*;

    /// Bounded preemptions keep the search finite; three covers every
    /// interleaving of one write with one read's two stamp loads.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(f);
    }

    fn bytes(seq: u64) -> [u8; 12] {
        let mut b = [0u8; 12];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
        }
        b
    }

    /// A reader racing a producer that laps a two-slot ring never gets a
    /// torn packet, and accounts for every packet.
    #[test]
    fn ring_loom_reader_never_sees_a_torn_packet() {
        model(|| {
            let (ring, mut p) = FanoutRing::new(2, 12);
            let mut c = Consumer::new(&ring);
            let writer = loom::thread::spawn(move || {
                for seq in 0..3u64 {
                    p.publish(seq, [seq, 0, 0, 0], &bytes(seq)).unwrap();
                }
            });
            let mut buf = [0u8; 12];
            let mut read = 0;
            for _ in 0..2 {
                if let Some(e) = c.read(&mut buf) {
                    assert_eq!(buf, bytes(e.seq));
                    assert_eq!(e.meta[0], e.seq);
                    read += 1;
                }
            }
            writer.join().unwrap();
            while let Some(e) = c.read(&mut buf) {
                assert_eq!(buf, bytes(e.seq));
                read += 1;
            }
            assert_eq!(read + c.lost(), 3);
        });
    }

    /// NACK lookups racing an overwrite get the old packet whole or nothing.
    #[test]
    fn ring_loom_get_is_whole_or_nothing() {
        model(|| {
            let (ring, mut p) = FanoutRing::new(2, 12);
            p.publish(0, [0; 4], &bytes(0)).unwrap();
            let reader = {
                let ring = ring.clone();
                loom::thread::spawn(move || {
                    let mut buf = [0u8; 12];
                    if let Some(e) = ring.get(0, &mut buf) {
                        assert_eq!(e.seq, 0);
                        assert_eq!(buf, bytes(0));
                    }
                })
            };
            p.publish(2, [2; 4], &bytes(2)).unwrap();
            reader.join().unwrap();
            let mut buf = [0u8; 12];
            assert!(ring.get(0, &mut buf).is_none());
            assert_eq!(ring.get(2, &mut buf).map(|e| e.meta[0]), Some(2));
        });
    }
}
