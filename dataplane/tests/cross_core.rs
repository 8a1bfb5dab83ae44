//! Deterministic tests of the cross-core fan-out: a publisher on core 0,
//! subscribers on core 1, the two `Core`s driven by hand with simulated time
//! and the messages of `poll_cross_core` carried between them as the driver
//! does. They pin down what any cross-core transport (today the mailbox of
//! pooled packets, later the fanout ring) must keep: every packet arrives,
//! in order, at every subscriber of the other core, also when that core was
//! not run for a while; and a core that falls more than a ring behind
//! skips forward and counts what it lost.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::counting::{counted, Counting};
use common::{add_session, inbound_spec, rtp_header, send_check, subscriber_spec};
use weir_dataplane::core::{Codec, Core, Transmit};
use weir_dataplane::counters::CoreCounters;
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::srtp::{SrtpProfile, SrtpSession};
use weir_dataplane::{CoreInput, Kind};

// Counts the allocations of the thread inside `counted` only (the other
// tests of this file run on other threads).
#[global_allocator]
static ALLOC: Counting = Counting;

const TRACK: u64 = 300;
const PUB_SSRC: u32 = 4242;

/// A client of one core: its address, the server's credentials for its
/// session, and its side of the SRTP keys.
struct Peer {
    id: u64,
    addr: SocketAddr,
    server: IceCredentials,
    srtp: SrtpSession,
}

/// Two cores and the simulated clock.
struct Pair {
    cores: [Core; 2],
    counters: [Arc<CoreCounters>; 2],
    now: Instant,
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        let counters = [
            Arc::new(CoreCounters::default()),
            Arc::new(CoreCounters::default()),
        ];
        Self {
            cores: [
                Core::new(0, Duration::from_secs(30), counters[0].clone(), now),
                Core::new(1, Duration::from_secs(30), counters[1].clone(), now),
            ],
            counters,
            now,
        }
    }

    /// Up to `n` datagrams core `core` has queued, as an IO backend takes
    /// one batch.
    fn batch(&mut self, core: usize, n: usize) -> Vec<Transmit> {
        std::iter::from_fn(|| self.cores[core].poll_transmit())
            .take(n)
            .collect()
    }

    /// A connected session `id` on core `core`.
    fn add_peer(&mut self, core: usize, id: u64, port: u16, seed: u8) -> Peer {
        let c = &mut self.cores[core];
        let (server, srtp) = add_session(c, self.now, id, seed, SrtpProfile::AeadAes128Gcm);
        let peer = Peer {
            id,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            server,
            srtp,
        };
        send_check(c, self.now, peer.addr, &peer.server);
        let answers: Vec<Transmit> = std::iter::from_fn(|| c.poll_transmit()).collect();
        assert_eq!(answers.len(), 1, "one STUN answer");
        while c.poll_event().is_some() {}
        peer
    }

    /// Carries the pending messages of each core to their target, as the
    /// driver's mailbox does; returns how many were carried.
    fn pump(&mut self) -> usize {
        let mut carried = 0;
        for from in 0..2 {
            while let Some((to, input)) = self.cores[from].poll_cross_core() {
                assert_ne!(to, from, "a core never mails itself");
                self.cores[to].handle_input(self.now, input);
                carried += 1;
            }
        }
        carried
    }

    /// What the driver does on a wake-up: carry the messages, then read the
    /// rings. Returns the cores the publisher's core asked to wake.
    fn wake(&mut self) -> Vec<usize> {
        let woken: Vec<usize> = std::iter::from_fn(|| self.cores[0].poll_wake()).collect();
        self.pump();
        for core in &mut self.cores {
            core.handle_wake(self.now);
        }
        woken
    }

    /// Everything core `core` wants to send.
    fn drain(&mut self, core: usize) -> Vec<Transmit> {
        std::iter::from_fn(|| self.cores[core].poll_transmit()).collect()
    }
}

/// A publisher of an Opus track on core 0 and `subs` subscribers on core 1.
fn room(subs: u64) -> (Pair, Peer, Vec<Peer>) {
    room_on(1, subs)
}

/// A publisher of an Opus track on core 0 and `subs` subscribers on core
/// `sub_core` (0: the publisher's own).
fn room_on(sub_core: usize, subs: u64) -> (Pair, Peer, Vec<Peer>) {
    let mut pair = Pair::new();
    let publisher = pair.add_peer(0, 1, 5000, 10);
    pair.cores[0].handle_input(
        pair.now,
        CoreInput::AddInbound {
            id: 1,
            spec: inbound_spec(TRACK, Kind::Audio, Codec::Opus, 111, vec![PUB_SSRC]),
        },
    );
    let mut subscribers = Vec::new();
    for i in 0..subs {
        let id = 10 + i;
        let peer = pair.add_peer(
            sub_core,
            id,
            6000 + i as u16,
            20u8.wrapping_add((4 * i) as u8),
        );
        pair.cores[sub_core].handle_input(
            pair.now,
            CoreInput::AddSubscriber {
                id,
                spec: subscriber_spec(TRACK, Kind::Audio, 7000 + i as u32, 111, 100),
            },
        );
        // What the control plane sends the publisher's core per
        // subscriber on `sub_core` (reference counted there).
        pair.cores[0].handle_input(
            pair.now,
            CoreInput::AddFanout {
                track: TRACK,
                core: sub_core,
            },
        );
        subscribers.push(peer);
    }
    pair.pump();
    (pair, publisher, subscribers)
}

/// Sends RTP sequence number `seq` whose payload is `seq` big-endian.
fn publish(pair: &mut Pair, publisher: &mut Peer, seq: u16) {
    let sealed = seal(publisher, seq);
    pair.cores[0].handle_datagram(pair.now, publisher.addr, &sealed);
}

/// The SRTP packet `publish` sends.
fn seal(publisher: &mut Peer, seq: u16) -> Vec<u8> {
    let mut p = rtp_header(111, seq, u32::from(seq) * 960, PUB_SSRC);
    p.extend_from_slice(&[0xf8, 0xff]); // an Opus TOC and a byte
    p.extend_from_slice(&seq.to_be_bytes());
    let mut sealed = Vec::new();
    publisher.srtp.encrypt_rtp(&p, &mut sealed).unwrap();
    sealed
}

/// The (output sequence number, published sequence number) of each packet
/// `peer` got in `out`, in send order.
fn received(peer: &mut Peer, out: &[Transmit]) -> Vec<(u16, u16)> {
    out.iter()
        .filter(|t| t.dest == peer.addr)
        .map(|t| {
            let mut plain = Vec::new();
            peer.srtp
                .decrypt_rtp(&t.data, &mut plain)
                .expect("subscriber can authenticate the packet");
            let n = plain.len();
            (
                u16::from_be_bytes([plain[2], plain[3]]),
                u16::from_be_bytes([plain[n - 2], plain[n - 1]]),
            )
        })
        .collect()
}

fn assert_in_order(peer: &Peer, got: &[(u16, u16)], first_published: u16, count: u16) {
    let want: Vec<(u16, u16)> = (0..count)
        .map(|i| (100u16.wrapping_add(i), first_published.wrapping_add(i)))
        .collect();
    assert_eq!(
        got, want,
        "subscriber {} got every packet, in order",
        peer.id
    );
}

#[test]
fn packets_cross_cores_in_order_without_loss() {
    let (mut pair, mut publisher, mut subs) = room(3);
    let mut got = vec![Vec::new(); subs.len()];
    // Lock-step: the subscribing core runs after every packet.
    for seq in 0..200u16 {
        publish(&mut pair, &mut publisher, 60_000u16.wrapping_add(seq));
        assert!(
            pair.drain(0).is_empty(),
            "nothing is sent on the publisher's core: no subscriber there"
        );
        let woken = pair.wake();
        assert_eq!(woken, vec![1], "one wake-up per packet for the other core");
        let out = pair.drain(1);
        for (peer, got) in subs.iter_mut().zip(&mut got) {
            got.extend(received(peer, &out));
        }
    }
    for (peer, got) in subs.iter().zip(&got) {
        assert_in_order(peer, got, 60_000, 200);
    }
    assert_eq!(pair.counters[0].cross_core_sent.get(), 200);
    assert_eq!(pair.counters[1].fanout_ring_lost.get(), 0);
}

#[test]
fn a_starved_core_catches_up_in_order() {
    let (mut pair, mut publisher, mut subs) = room(2);
    // Core 1 does not run while 500 packets are published (a busy or
    // descheduled thread); then it drains everything at once.
    for seq in 0..500u16 {
        publish(&mut pair, &mut publisher, seq);
        pair.now += Duration::from_millis(1);
        pair.cores[0].handle_timeout(pair.now);
    }
    assert!(pair.drain(1).is_empty(), "core 1 has not run yet");
    assert_eq!(
        pair.wake(),
        vec![1],
        "wake-ups coalesce while core 1 sleeps"
    );
    let out = pair.drain(1);
    for peer in &mut subs {
        let got = received(peer, &out);
        assert_in_order(peer, &got, 0, 500);
    }
    assert_eq!(pair.counters[1].drop_malformed.get(), 0);
    assert_eq!(pair.counters[1].fanout_ring_lost.get(), 0);
}

#[test]
fn a_core_that_falls_a_ring_behind_skips_forward_and_counts_the_loss() {
    let (mut pair, mut publisher, mut subs) = room(2);
    publish(&mut pair, &mut publisher, 0);
    pair.wake();
    let first = pair.drain(1);
    // Core 1 starves while far more than a ring's worth is published.
    for seq in 1..=2000u16 {
        publish(&mut pair, &mut publisher, seq);
    }
    pair.wake();
    let out = pair.drain(1);
    let lost = pair.counters[1].fanout_ring_lost.get();
    assert!(lost > 0, "the starved reader lost packets");
    let delivered = 2000 - lost;
    assert!(delivered > 0, "it went on with what the ring still held");
    for peer in &mut subs {
        assert_eq!(received(peer, &first), vec![(100, 0)]);
        let got = received(peer, &out);
        // The newest packets, in order; output numbering stays continuous
        // (skipped input is not signalled to the receiver as a gap).
        let published: Vec<u16> = got.iter().map(|&(_, p)| p).collect();
        let want: Vec<u16> = (2001 - delivered as u16..=2000).collect();
        assert_eq!(
            published, want,
            "subscriber {} got the newest packets in order",
            peer.id
        );
    }
    // Publishing goes on undisturbed, and the reader keeps up again.
    publish(&mut pair, &mut publisher, 2001);
    pair.wake();
    let out = pair.drain(1);
    for peer in &mut subs {
        let got = received(peer, &out);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, 2001);
    }
    assert_eq!(pair.counters[1].fanout_ring_lost.get(), lost);
}

#[test]
fn removing_the_last_remote_subscriber_stops_the_traffic() {
    let (mut pair, mut publisher, _subs) = room(2);
    publish(&mut pair, &mut publisher, 1);
    assert_eq!(pair.pump(), 1, "the ring is handed to core 1");
    assert_eq!(pair.wake(), vec![1]);
    assert_eq!(pair.drain(1).len(), 2, "one packet per subscriber");
    for _ in 0..2 {
        pair.cores[0].handle_input(
            pair.now,
            CoreInput::RemoveFanout {
                track: TRACK,
                core: 1,
            },
        );
    }
    assert_eq!(pair.pump(), 1, "core 1 lets go of the ring");
    publish(&mut pair, &mut publisher, 2);
    assert!(
        pair.wake().is_empty(),
        "no wake-up once core 1 has no subscriber"
    );
    assert!(pair.drain(1).is_empty());
    assert_eq!(
        pair.counters[0].cross_core_sent.get(),
        1,
        "one per packet and subscribing core"
    );
}

#[test]
fn crossing_cores_through_the_ring_allocates_nothing_once_warm() {
    let (mut pair, mut publisher, _subs) = room(3);
    let warm = 300u16;
    for seq in 0..warm {
        publish(&mut pair, &mut publisher, seq);
        pair.wake();
        for core in 0..2 {
            while let Some(t) = pair.cores[core].poll_transmit() {
                pair.cores[core].recycle_transmit(t);
            }
        }
    }
    // Sealed up front: the client's SRTP is not the server's business.
    let sealed: Vec<Vec<u8>> = (warm..warm + 500)
        .map(|s| seal(&mut publisher, s))
        .collect();
    let mut sent = 0usize;
    let ((), allocations) = counted(|| {
        for datagram in &sealed {
            pair.cores[0].handle_datagram(pair.now, publisher.addr, datagram);
            while let Some(target) = pair.cores[0].poll_wake() {
                pair.cores[target].handle_wake(pair.now);
            }
            while let Some(t) = pair.cores[1].poll_transmit() {
                sent += 1;
                pair.cores[1].recycle_transmit(t);
            }
        }
    });
    assert_eq!(sent, 3 * 500, "every packet reached every subscriber");
    assert_eq!(
        allocations, 0,
        "publish, wake-up, ring read and forward allocate nothing"
    );
    assert_eq!(pair.counters[1].fanout_ring_lost.get(), 0);
}

#[test]
fn a_long_transmit_queue_leaves_packets_in_the_ring_until_they_are_sent() {
    // 20 subscribers on core 1 and 300 packets waiting in the ring: 6,000
    // datagrams, more than the core queues before its IO backend has sent
    // some (4,096).
    let (mut pair, mut publisher, mut subs) = room(20);
    for seq in 0..300u16 {
        publish(&mut pair, &mut publisher, seq);
    }
    pair.wake();
    assert!(
        pair.cores[1].ring_backlog(),
        "core 1 stopped reading with packets left in the ring"
    );
    assert_eq!(pair.counters[1].ring_reads_deferred.get(), 1);
    let mut out = pair.drain(1);
    assert!(
        out.len() < 4096 + 20,
        "at most one packet's fan-out past the limit, got {}",
        out.len()
    );
    // The next turn reads on without a new wake-up, once the queue is sent.
    pair.cores[1].handle_wake(pair.now);
    out.extend(pair.drain(1));
    assert!(!pair.cores[1].ring_backlog());
    for peer in &mut subs {
        let got = received(peer, &out);
        assert_in_order(peer, &got, 0, 300);
    }
    assert_eq!(pair.counters[1].fanout_ring_lost.get(), 0);
    assert_eq!(pair.counters[1].drop_tx_backlog.get(), 0);
}

#[test]
fn an_overloaded_core_drops_media_beyond_its_queue_bound_and_recovers() {
    // Publisher and 40 subscribers on core 0; the IO backend does not
    // send while 2,000 packets arrive: 80,000 copies for a backlog bounded
    // at 65,536 copies owed.
    const SENT: u16 = 2_000;
    let (mut pair, mut publisher, mut subs) = room_on(0, 40);
    for seq in 0..SENT {
        publish(&mut pair, &mut publisher, seq);
    }
    let out = pair.drain(0);
    let dropped = pair.counters[0].drop_tx_backlog.get();
    // Past the bound a packet is dropped for all 40 subscribers; what was
    // queued before the first refill comes on top.
    assert!(
        (65_536..65_536 + 40 + 256).contains(&out.len()),
        "the backlog stops at its bound, got {}",
        out.len()
    );
    assert_eq!(
        out.len() as u64 + dropped,
        u64::from(SENT) * 40,
        "the rest is counted"
    );
    assert_eq!(dropped % 40, 0, "whole packets are dropped");
    // Once sent, forwarding resumes; the subscriber sees the drop as a
    // sequence gap it can NACK, not as a silently shortened stream.
    publish(&mut pair, &mut publisher, SENT);
    let after = pair.drain(0);
    let peer = &mut subs[0];
    let got = received(peer, &out);
    let last = *got
        .last()
        .expect("subscriber 0 got packets before the bound");
    let next = received(peer, &after);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, SENT);
    assert_eq!(
        next[0].0.wrapping_sub(last.0),
        SENT - last.1,
        "output numbers keep the gap of the dropped packets"
    );
}

#[test]
fn a_burst_to_many_subscribers_is_built_as_the_queue_drains() {
    // 30 packets (a keyframe's worth) to 600 subscribers on the
    // publisher's own core: 18,000 copies. Built all at once they would
    // take 18,000 transmit buffers; built as the IO backend takes the
    // queue, the buffers it holds stay near one refill.
    let (mut pair, mut publisher, mut subs) = room_on(0, 600);
    // The room's STUN answers were drained without coming back.
    let before = pair.counters[0].tx_pool_misses.get();
    for seq in 0..30u16 {
        publish(&mut pair, &mut publisher, seq);
    }
    let mut out = Vec::new();
    let mut buffers = 0;
    // A backend that sends 64 datagrams per turn and returns their
    // buffers; `out` keeps copies to check what arrived.
    loop {
        let batch = pair.batch(0, 64);
        if batch.is_empty() {
            break;
        }
        buffers = buffers.max(pair.counters[0].tx_pool_misses.get() - before);
        for t in batch {
            out.push(Transmit {
                dest: t.dest,
                data: t.data.clone(),
            });
            pair.cores[0].recycle_transmit(t);
        }
    }
    assert_eq!(out.len(), 30 * 600);
    // One refill plus the batch in the backend's hands.
    assert!(
        buffers <= 256 + 64,
        "{buffers} transmit buffers for a burst of 18,000 copies"
    );
    for peer in subs.iter_mut().step_by(37) {
        let got = received(peer, &out);
        assert_in_order(peer, &got, 0, 30);
    }
    assert_eq!(pair.counters[0].drop_tx_backlog.get(), 0);
}

#[test]
fn a_subscriber_leaving_mid_fan_out_costs_no_one_else_the_packet() {
    // Two packets to 600 subscribers on the publisher's core; after the
    // backend took its first batch (the first refill built), an early
    // subscriber leaves. The fan-out resumes at the next subscriber's
    // session slot, so no one past the refill is skipped.
    let (mut pair, mut publisher, mut subs) = room_on(0, 600);
    for seq in 0..2u16 {
        publish(&mut pair, &mut publisher, seq);
    }
    let mut out = Vec::new();
    let mut left = false;
    loop {
        let batch = pair.batch(0, 64);
        if batch.is_empty() {
            break;
        }
        out.extend(batch);
        if !left {
            left = true;
            pair.cores[0].handle_input(
                pair.now,
                CoreInput::RemoveSubscriber {
                    id: subs[10].id,
                    track: TRACK,
                },
            );
        }
    }
    let gone = subs.remove(10);
    assert!(received(&mut { gone }, &out).len() <= 1);
    assert_eq!(out.len(), 2 * 599 + 1);
    for peer in subs.iter_mut() {
        let got = received(peer, &out);
        assert_in_order(peer, &got, 0, 2);
    }
}
