//! The relay's per-packet work allocates nothing once warm: building an
//! RTP datagram (header + packet into a reused chunk) on the origin, and
//! parsing one into a pooled packet on the downstream server. Counted by a
//! global allocator that counts this thread's allocations only, so tests
//! running in parallel do not disturb each other.
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use weir_dataplane::packet::MediaPacket;
use weir_dataplane::packet_pool::PacketPool;

use crate::arena::SendArena;
use crate::peer::media_packet;
use crate::proto::datagram::{write_rtp_header, Datagram, RtpFacts, RTP_HEADER_MAX_LEN};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 1200];
    p[0] = 0x80;
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&1234u32.to_be_bytes());
    p
}

#[test]
fn the_datagram_path_allocates_nothing_per_packet_once_warm() {
    let packets: Vec<Vec<u8>> = (0..64).map(rtp).collect();
    let facts = RtpFacts {
        encoding: 1,
        spatial: 0,
        temporal: 2,
        keyframe: false,
        frame_start: true,
        frame_end: true,
        switching_point: true,
        retransmission: false,
        sender_report: Some((7, 9)),
        svc: None,
    };
    let mut arena = SendArena::new();
    let mut pool = PacketPool::new(256);
    let mut sender_report = None;
    // Downstream rings keep recent packets: hold the last 128 like one.
    let mut ring = std::collections::VecDeque::with_capacity(128);
    let mut round = |n: usize| {
        let mut bytes = 0;
        for i in 0..n {
            let p = &packets[i % packets.len()];
            // Origin: relay header and packet into one reused chunk.
            let mut header = [0u8; RTP_HEADER_MAX_LEN];
            let h = write_rtp_header(&mut header, 5, &facts).expect("header");
            let datagram = arena.datagram(&[&header[..h], p]);
            // Downstream: parse into a pooled packet, shared with the rings.
            let Ok(Datagram::Rtp(d)) = Datagram::parse(&datagram) else {
                panic!("not an RTP datagram");
            };
            let mut packet = pool.take();
            assert!(media_packet(
                &d.facts,
                d.rtp,
                &mut sender_report,
                &mut packet
            ));
            let packet = packet.share();
            bytes += packet.data.len();
            if ring.len() == 128 {
                ring.pop_front();
            }
            ring.push_back(packet);
        }
        bytes
    };
    // Warm-up: every pool slot and chunk touched once.
    assert!(round(2_000) > 0);
    let before = allocations();
    let bytes = round(20_000);
    let after = allocations();
    assert_eq!(bytes, 20_000 * 1200);
    assert_eq!(
        after - before,
        0,
        "allocations for 20,000 relayed packets once warm"
    );
    assert_eq!(pool.misses(), 0);
    assert_eq!(arena.allocations(), crate::arena::CHUNKS as u64);
    // The check can fail: a heap packet per datagram is counted.
    let before = allocations();
    let _p = Box::new(MediaPacket::empty());
    assert!(allocations() > before);
}

#[test]
fn the_bundled_datagram_path_allocates_nothing_per_packet_once_warm() {
    use crate::proto::bundle::{self, record_prefix, BUNDLE_HEADER_LEN, BUNDLE_TYPE};
    let packets: Vec<Vec<u8>> = (0..64).map(rtp).collect();
    let facts = RtpFacts {
        temporal: 1,
        frame_start: true,
        frame_end: true,
        ..RtpFacts::default()
    };
    let mut arena = SendArena::new();
    let mut pool = PacketPool::new(256);
    let mut sender_report = None;
    let mut ring = std::collections::VecDeque::with_capacity(128);
    // Five records per datagram, as a 6,500-byte path allows, written the
    // way `RtpSender` does: room for the bundle header, then the records.
    let mut round = |datagrams: usize| {
        let mut got = 0;
        for i in 0..datagrams {
            arena.begin(BUNDLE_HEADER_LEN + 6_462);
            arena.append(&[0; BUNDLE_HEADER_LEN]);
            let mut first_len = 0;
            for k in 0..5 {
                let p = &packets[(i * 5 + k) % packets.len()];
                let mut header = [0u8; RTP_HEADER_MAX_LEN];
                let h = write_rtp_header(&mut header, 5, &facts).expect("header");
                if k == 0 {
                    first_len = h + p.len();
                } else {
                    arena.append(&record_prefix(h + p.len()).expect("record length"));
                }
                arena.append(&header[..h]);
                arena.append(p);
            }
            let mut head = [BUNDLE_TYPE, 0, 0];
            head[1..].copy_from_slice(&record_prefix(first_len).expect("record length"));
            arena.patch(0, &head);
            let datagram = arena.finish(0);
            for record in bundle::split(&datagram).expect("a bundle") {
                let Ok(Datagram::Rtp(d)) = Datagram::parse(record) else {
                    panic!("not an RTP record");
                };
                let mut packet = pool.take();
                assert!(media_packet(
                    &d.facts,
                    d.rtp,
                    &mut sender_report,
                    &mut packet
                ));
                if ring.len() == 128 {
                    ring.pop_front();
                }
                ring.push_back(packet.share());
                got += 1;
            }
        }
        got
    };
    assert_eq!(round(400), 2_000);
    let before = allocations();
    let got = round(4_000);
    let after = allocations();
    assert_eq!(got, 20_000);
    assert_eq!(
        after - before,
        0,
        "allocations for 20,000 bundled packets once warm"
    );
    assert_eq!(pool.misses(), 0);
    assert_eq!(arena.allocations(), crate::arena::CHUNKS as u64);
}
