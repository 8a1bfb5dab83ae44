//! The core's outgoing datagrams: a queue of [`Transmit`]s whose buffers
//! come from a free list and go back to it once the IO backend has sent
//! them ([`super::Core::recycle_transmit`]), so that a forwarded packet costs
//! no allocation once the list is warm.
//!
//! SRTP encrypts straight into the leased buffer.
use std::collections::VecDeque;
use std::net::SocketAddr;

use super::Transmit;
use crate::counters::CoreCounters;
use crate::srtp::{SrtpError, SrtpSession};

/// Size of every transmit buffer: the largest datagram the core builds
/// (an MTU-sized RTP packet plus its SRTP tag, or a copied DTLS record)
/// fits, so a recycled buffer never grows.
pub(super) const TX_BUF: usize = crate::io::MAX_DATAGRAM;

/// Buffers kept for reuse at most. Enough for a burst of a keyframe fanned
/// out to many subscribers between two sends; beyond that, returned
/// buffers are freed. The list's own storage is reserved once, when the
/// first buffer comes back (an idle core never pays for it).
const TX_POOL: usize = 16_384;

/// Free buffers [`TxQueue::trim`] always leaves: a few of the IO backends'
/// batches, so that the next packets after a quiet spell start warm.
const TX_POOL_KEEP: usize = 512;

/// How often the core trims its free list ([`TxQueue::trim`]).
pub(super) const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Queued datagrams (with the copies that local fan-outs under way still
/// owe, see `pending.rs`) beyond which the core stops reading other cores'
/// fanout rings until the IO backend catches up. Unread packets wait in
/// the ring, whose fixed size then bounds the backlog (a reader lapped by
/// its writer skips ahead and counts `fanout_ring_lost`), instead of the
/// queue growing without bound when the socket or the CPU cannot keep up.
/// About 6 ms of sending at 1.5 µs per datagram.
pub(super) const BACKLOG_SOFT: usize = 4096;

/// Queued datagrams beyond which media (forwarded packets,
/// retransmissions, probes) is dropped and counted in `drop_tx_backlog`.
/// Control traffic (RTCP, STUN, DTLS) is still queued. Local fan-outs fill
/// the queue only as it drains (`pending.rs`, which bounds their backlog
/// itself), so only retransmissions and control traffic can get here.
/// 16,384 datagrams of 2 KiB bound the queue at 32 MiB per core.
pub(super) const BACKLOG_HARD: usize = 16_384;

/// Queued datagrams and the free buffers to build more.
pub(super) struct TxQueue {
    queue: VecDeque<Transmit>,
    free: Vec<Vec<u8>>,
    /// The fewest free buffers since the last trim: that many were not
    /// needed all period.
    low: usize,
}

impl TxQueue {
    pub(super) fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            free: Vec::new(),
            low: 0,
        }
    }

    /// Frees the buffers that stayed unused since the last call, down to
    /// [`TX_POOL_KEEP`]; returns how many. A burst (a NACK storm, a keyframe
    /// to a crowd) can leave thousands of 2 KiB buffers behind; called
    /// every [`TRIM_EVERY`], this hands them back within two periods of
    /// the burst while a steady load, which uses its buffers every period,
    /// keeps them all. Not on the per-packet path.
    pub(super) fn trim(&mut self) -> usize {
        let idle = self.low.min(self.free.len().saturating_sub(TX_POOL_KEEP));
        self.free.truncate(self.free.len() - idle);
        if self.free.len() <= TX_POOL_KEEP {
            // The list's own storage, reserved for a full pool.
            self.free.shrink_to(TX_POOL_KEEP);
        }
        self.low = self.free.len();
        idle
    }

    /// A buffer of [`TX_BUF`] bytes: a recycled one, or a new one counted
    /// as a miss.
    fn lease(&mut self, counters: &CoreCounters) -> Vec<u8> {
        let mut buf = self.free.pop().unwrap_or_else(|| {
            counters.tx_pool_misses.inc();
            Vec::with_capacity(TX_BUF)
        });
        self.low = self.low.min(self.free.len());
        // No allocation: every pooled buffer has this capacity.
        buf.resize(TX_BUF, 0);
        buf
    }

    /// Encrypts the RTP packet `plain` straight into a leased buffer and
    /// queues it; returns the SRTP length.
    pub(super) fn seal_rtp(
        &mut self,
        srtp: &mut SrtpSession,
        dest: SocketAddr,
        plain: &[u8],
        counters: &CoreCounters,
    ) -> Result<usize, SrtpError> {
        let mut buf = self.lease(counters);
        let r = srtp.encrypt_rtp_into(plain, &mut buf);
        self.finish(dest, buf, r)
    }

    /// Encrypts the RTCP compound packet `plain` into a leased buffer and
    /// queues it; returns the SRTCP length.
    pub(super) fn seal_rtcp(
        &mut self,
        srtp: &mut SrtpSession,
        dest: SocketAddr,
        plain: &[u8],
        counters: &CoreCounters,
    ) -> Result<usize, SrtpError> {
        let mut buf = self.lease(counters);
        let r = srtp.encrypt_rtcp_into(plain, &mut buf);
        self.finish(dest, buf, r)
    }

    /// Queues a copy of `bytes` (a STUN answer).
    pub(super) fn push_copy(&mut self, dest: SocketAddr, bytes: &[u8], counters: &CoreCounters) {
        let mut buf = self.lease(counters);
        buf.clear();
        buf.extend_from_slice(bytes);
        self.queue.push_back(Transmit { dest, data: buf });
    }

    /// Queues a datagram built elsewhere (a DTLS record from the control
    /// plane); its buffer joins the free list after the send if it is big
    /// enough.
    pub(super) fn push(&mut self, t: Transmit) {
        self.queue.push_back(t);
    }

    fn finish(
        &mut self,
        dest: SocketAddr,
        mut buf: Vec<u8>,
        r: Result<usize, SrtpError>,
    ) -> Result<usize, SrtpError> {
        match r {
            Ok(n) => {
                buf.truncate(n);
                self.queue.push_back(Transmit { dest, data: buf });
                Ok(n)
            }
            Err(e) => {
                self.give_back(buf);
                Err(e)
            }
        }
    }

    /// Datagrams waiting for the IO backend.
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether media should be dropped rather than queued
    /// ([`BACKLOG_HARD`]).
    pub(super) fn overloaded(&self) -> bool {
        self.queue.len() >= BACKLOG_HARD
    }

    pub(super) fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    pub(super) fn give_back(&mut self, buf: Vec<u8>) {
        if buf.capacity() >= TX_BUF && self.free.len() < TX_POOL {
            if self.free.len() == self.free.capacity() {
                // Once to the full pool (never per packet): the storage
                // is 384 KiB, given back by `trim` when the pool shrinks.
                self.free.reserve_exact(TX_POOL - self.free.len());
            }
            self.free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_a_burst_left_behind_are_freed_and_a_steady_load_keeps_its_own() {
        let counters = CoreCounters::default();
        let mut q = TxQueue::new();
        let lease_all = |q: &mut TxQueue, n: usize| {
            let bufs: Vec<Vec<u8>> = (0..n).map(|_| q.lease(&counters)).collect();
            for b in bufs {
                q.give_back(b);
            }
        };
        // A burst of 3,000 copies, then the steady 100 in flight.
        lease_all(&mut q, 3000);
        assert_eq!(q.trim(), 0, "the burst used them this period");
        lease_all(&mut q, 100);
        assert_eq!(q.trim(), 3000 - TX_POOL_KEEP, "idle all period");
        assert_eq!(q.free.len(), TX_POOL_KEEP);
        lease_all(&mut q, 100);
        assert_eq!(q.trim(), 0, "never below the kept few");
        // A steady load of 2,000 keeps its buffers.
        lease_all(&mut q, 2000);
        q.trim();
        lease_all(&mut q, 2000);
        assert_eq!(q.trim(), 0);
        assert_eq!(q.free.len(), 2000);
        let misses = counters.tx_pool_misses.get();
        lease_all(&mut q, 2000);
        assert_eq!(counters.tx_pool_misses.get(), misses, "warm");
    }
}
