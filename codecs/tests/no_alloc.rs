//! Parsing and patching allocate nothing: a counting global allocator watches every
//! parser over sample packets.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use weir_codecs::extensions::{rewrite_in_place, AudioLevel, Extensions, TransportSequenceNumber};
use weir_codecs::{
    facts, rtp, Av1Payload, Codec, DependencyDescriptor, H264Payload, OpusToc, RtpHeader,
    Vp8Descriptor, Vp8Patch, Vp9Descriptor, Vp9Patch,
};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Only the test's own thread counts: the harness's other threads
    /// (output capture, timing) allocate whenever they like.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// L1T2 key frame descriptor with its structure (see the unit tests for the layout).
const DD_KEY: [u8; 15] = [
    0xc0, 0x00, 0x01, 0x80, 0x01, 0x1e, 0xa8, 0x51, 0x41, 0x01, 0x0c, 0x09, 0xfc, 0x05, 0x9c,
];

#[test]
fn parsers_do_not_allocate() {
    // One-byte extensions: audio level (id 1), transport-wide seq (id 2); then VP8.
    let mut rtp_pkt = [
        0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 2, 0x10, 0x85, 0x21, 0x00, 0x07,
        0, 0, 0, 0x90, 0xe0, 0x92, 0x34, 0x05, 0x40, 0x00, 0xaa,
    ];
    let mut vp9 = [
        0xae, 0x81, 0x02, 0x00, 0x07, 0x10, 0x01, 0x40, 0x00, 0xb4, 0xaa,
    ];
    let mut cache = None;
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    for _ in 0..100 {
        let h = RtpHeader::parse(&rtp_pkt).unwrap();
        let e = Extensions::parse(h.extension_profile().unwrap(), h.extension_block()).unwrap();
        AudioLevel::parse(e.get(1).unwrap()).unwrap();
        TransportSequenceNumber::parse(e.get(2).unwrap()).unwrap();
        let payload_at = h.header_len();
        facts(Codec::Vp8, h.payload(), None).unwrap();
        Vp8Descriptor::parse(h.payload()).unwrap();
        rewrite_in_place(&mut rtp_pkt, 2, &[0x12, 0x34]).unwrap();
        rtp::write_ssrc(&mut rtp_pkt, 9).unwrap();
        Vp8Patch {
            picture_id: Some(1),
            tl0_pic_idx: Some(2),
        }
        .apply(&mut rtp_pkt[payload_at..])
        .unwrap();
        Vp9Descriptor::parse(&vp9).unwrap();
        Vp9Patch {
            picture_id: Some(5),
            tl0_pic_idx: Some(1),
        }
        .apply(&mut vp9)
        .unwrap();
        H264Payload::parse(&[0x78, 0x00, 0x01, 0x67, 0x00, 0x02, 0x65, 0x88]).unwrap();
        Av1Payload::parse(&[0x28, 0x02, 0x08, 0xaa, 0x34, 0x48, 0xbb]).unwrap();
        OpusToc::parse(&[0xf8, 1, 2]).unwrap();
        let d = DependencyDescriptor::parse_with_cache(&DD_KEY, &mut cache).unwrap();
        DependencyDescriptor::parse(&[0xc2, 0x00, 0x02], cache.as_ref()).unwrap();
        let mut out = [0u8; 64];
        d.write(cache.as_ref().unwrap(), &mut out).unwrap();
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.load(Ordering::Relaxed) - before, 0);
}
