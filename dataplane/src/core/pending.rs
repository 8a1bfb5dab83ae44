//! Local fan-outs under way: packets published to this core's subscribers
//! whose copies are built as the transmit queue drains, not all at once.
//!
//! A packet for 1,000 subscribers is 1,000 sealed datagrams of up to 2 KiB;
//! built when the packet arrives, a keyframe burst queues tens of thousands
//! of them, and the transmit buffer pool grows to match (13,000 buffers,
//! 26 MB, on one core at 2,000 subscribers). Here a packet waits as one
//! shared reference with the place of its next subscriber, and
//! [`super::Core::poll_transmit`] builds the next [`FANOUT_CHUNK`] copies
//! whenever the IO backend has taken the queue. The work and its order are
//! the same: every subscriber gets packet n before packet n + 1, and each
//! packet reaches its subscribers in the order of their session slots.
//!
//! A packet under way holds the session slot of its next subscriber, not a
//! position: each track's list is kept sorted by slot, so a subscribe or
//! unsubscribe between two chunks shifts nobody. Every subscriber still
//! listed gets the packet; one that joined mid-way gets it if its slot
//! lies ahead, as if it had joined a moment earlier.
use std::collections::VecDeque;
use std::time::Instant;

use super::TrackKey;
use crate::packet_pool::PacketRef;

/// Copies built per refill of the transmit queue: a few of the IO
/// backends' batches, so they never wait for the core, while the queue
/// (and the buffers it holds) stays small.
pub(super) const FANOUT_CHUNK: usize = 256;

/// Copies owed beyond which a newly arrived packet is dropped for this
/// core's subscribers (counted in `drop_tx_backlog`): about 100 ms of
/// sending at 1.5 µs per datagram, which only an overloaded core reaches.
/// A keyframe burst to a thousand subscribers is well under it. The packets
/// waiting cost a pool slot each, not a buffer per copy.
pub(super) const MAX_OWED: usize = 65_536;

/// One packet part-way through its local fan-out.
pub(super) struct PendingFanout {
    /// When the packet arrived.
    pub(super) at: Instant,
    pub(super) track: TrackKey,
    pub(super) packet: PacketRef,
    /// Session slot of the next subscriber (lists are sorted by slot).
    pub(super) next: usize,
    /// Copies still to build, as counted into [`Pending::datagrams`].
    counted: usize,
}

/// The queue of packets under way, and the copies they still owe.
#[derive(Default)]
pub(super) struct Pending {
    queue: VecDeque<PendingFanout>,
    datagrams: usize,
}

impl Pending {
    /// Whether nothing is under way.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Copies still to build: with the transmit queue, the core's backlog.
    pub(super) fn datagrams(&self) -> usize {
        self.datagrams
    }

    /// Queues `packet` with `remaining` subscribers from slot `next` on.
    pub(super) fn push_back(
        &mut self,
        at: Instant,
        track: TrackKey,
        packet: PacketRef,
        next: usize,
        remaining: usize,
    ) {
        self.datagrams += remaining;
        self.queue.push_back(PendingFanout {
            at,
            track,
            packet,
            next,
            counted: remaining,
        });
    }

    /// Takes the oldest packet to continue its fan-out.
    pub(super) fn pop_front(&mut self) -> Option<PendingFanout> {
        let p = self.queue.pop_front()?;
        self.datagrams = self.datagrams.saturating_sub(p.counted);
        Some(p)
    }

    /// Puts back a packet taken by [`Self::pop_front`] whose fan-out
    /// stopped at slot `next` with `remaining` copies to go.
    pub(super) fn push_front(&mut self, mut p: PendingFanout, next: usize, remaining: usize) {
        p.next = next;
        p.counted = remaining;
        self.datagrams += remaining;
        self.queue.push_front(p);
    }
}
