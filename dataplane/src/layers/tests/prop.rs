//! Property tests: random packet sequences and commands.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use weir_codecs::Codec;

use super::rewrite::{vp8, vp8_ids};
use crate::layers::{
    Decision, LayerPacket, LayerSelector, Layers, Layout, PictureIdRewriter, KEYFRAME_RETRY_INITIAL,
};

#[derive(Debug, Clone, Copy)]
enum Op {
    Pkt(LayerPacket),
    Prefer(u8, u8),
    Max(u8, u8),
    Wait(u16),
}

fn packet() -> impl Strategy<Value = LayerPacket> {
    (0u8..4, 0u8..4, 0u8..4, any::<[bool; 6]>()).prop_map(|(encoding, spatial, temporal, b)| {
        LayerPacket {
            encoding,
            spatial,
            temporal,
            keyframe: b[0] && b[1],
            frame_start: b[1],
            frame_end: b[2],
            switching_point: b[3],
            switch_up_to: 0,
            marker: b[4] && b[2],
        }
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => packet().prop_map(Op::Pkt),
        1 => (0u8..5, 0u8..5).prop_map(|(s, t)| Op::Prefer(s, t)),
        1 => (0u8..5, 0u8..5).prop_map(|(s, t)| Op::Max(s, t)),
        1 => (0u16..1500).prop_map(Op::Wait),
    ]
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        (1u8..4, 0u8..4).prop_map(|(encodings, temporal)| Layout::Simulcast {
            encodings,
            temporal
        }),
        (1u8..4, 0u8..4).prop_map(|(spatial, temporal)| Layout::Svc { spatial, temporal }),
        (0u8..4).prop_map(|temporal| Layout::Single { temporal }),
    ]
}

proptest! {
    // Failures are reported, not persisted: shrunk cases worth keeping go
    // into the selector table.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Never two simulcast encodings without a keyframe of the new one, never
    /// a layer above current, PLIs at least 500 ms apart, and after any
    /// history a keyframe of the target still brings current to target.
    #[test]
    fn selector_invariants(layout in layout(), ops in proptest::collection::vec(op(), 0..300)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut s = LayerSelector::new(layout);
        let mut last_enc: Option<u8> = None;
        let mut last_pli: Option<Instant> = None;
        let simulcast = matches!(layout, Layout::Simulcast { .. });
        let svc = matches!(layout, Layout::Svc { .. });
        for op in ops {
            match op {
                Op::Pkt(p) => {
                    let d = s.on_packet(now, &p);
                    if d.is_forward() {
                        let cur = s.current().expect("forwarding implies current layers");
                        if simulcast {
                            if last_enc.is_some_and(|e| e != p.encoding) {
                                prop_assert!(p.keyframe, "encoding switch without keyframe: {p:?}");
                            }
                            prop_assert_eq!(cur.spatial, p.encoding);
                            last_enc = Some(p.encoding);
                        }
                        prop_assert!(p.temporal <= cur.temporal);
                        if svc {
                            prop_assert!(p.spatial <= cur.spatial);
                        }
                        if let Decision::Forward { set_marker: false } = d {
                            prop_assert!(!p.marker, "a published marker is never cleared");
                        }
                    }
                }
                Op::Prefer(a, b) => s.set_preferred(a, b),
                Op::Max(a, b) => s.set_max(a, b),
                Op::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            }
            if let Some(_e) = s.poll_keyframe_request(now) {
                if let Some(last) = last_pli {
                    prop_assert!(now - last >= KEYFRAME_RETRY_INITIAL);
                }
                last_pli = Some(now);
            }
            prop_assert!(s.poll_keyframe_request(now).is_none());
            if let Some(c) = s.current() {
                prop_assert!(c.spatial < layout.spatial_layers());
                prop_assert!(c.temporal < layout.temporal_layers());
            }
            let _ = s.poll_event();
        }
        // Liveness: one keyframe of the target is enough.
        let target = s.target();
        let kf = LayerPacket {
            encoding: if simulcast { target.spatial } else { 0 },
            keyframe: true,
            frame_start: true,
            switching_point: true,
            ..LayerPacket::default()
        };
        prop_assert!(s.on_packet(now, &kf).is_forward());
        prop_assert_eq!(s.current(), Some(target));
        prop_assert_eq!(s.poll_keyframe_request(now + Duration::from_secs(60)), None);
        let ev = s.poll_event();
        prop_assert!(ev.is_none() || ev.map(|e| Layers::new(e.spatial, e.temporal)) == Some(target));
    }

    /// Out-of-range layer ids and junk never panic any layout.
    #[test]
    fn selector_never_panics(layout in layout(), raw in proptest::collection::vec((any::<[u8; 3]>(), any::<u8>()), 0..200)) {
        let t0 = Instant::now();
        let mut s = LayerSelector::new(layout);
        for (i, ([e, sp, t], bits)) in raw.into_iter().enumerate() {
            let p = LayerPacket {
                encoding: e, spatial: sp, temporal: t,
                keyframe: bits & 1 != 0, frame_start: bits & 2 != 0, frame_end: bits & 4 != 0,
                switching_point: bits & 8 != 0, switch_up_to: bits >> 6, marker: bits & 16 != 0,
            };
            if bits & 0xe0 == 0xe0 {
                s.set_preferred(e, t);
            }
            let now = t0 + Duration::from_millis(i as u64 * 7);
            let _ = s.on_packet(now, &p);
            let _ = s.poll_keyframe_request(now);
            let _ = s.poll_event();
        }
    }

    /// The rewriter never panics on junk.
    #[test]
    fn rewriter_never_panics(vp9 in any::<bool>(), payloads in proptest::collection::vec((0u8..3, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..12)), 0..50)) {
        let mut r = PictureIdRewriter::new(if vp9 { Codec::Vp9 } else { Codec::Vp8 });
        for (enc, fwd, mut p) in payloads {
            if fwd {
                let _ = r.rewrite(enc, &mut p);
            } else {
                r.on_dropped(enc, &p);
            }
        }
    }

    /// VP8: whatever upper-layer frames are dropped and whichever encoding
    /// is forwarded, forwarded pictures are numbered consecutively and
    /// TL0PICIDX steps once per base-layer picture.
    #[test]
    fn vp8_output_is_continuous(frames in proptest::collection::vec((0u8..3, 0u8..3, any::<bool>(), 1usize..3), 1..200),
                                starts in any::<[u16; 3]>()) {
        let mut r = PictureIdRewriter::new(Codec::Vp8);
        let mut pid = starts.map(|s| s & 0x7fff);
        let mut tl0 = starts.map(|s| s as u8);
        let mut prev: Option<(u16, u8)> = None;
        let mut cur_enc = None;
        for (enc, tid, keep, packets) in frames {
            let e = usize::from(enc);
            pid[e] = pid[e].wrapping_add(1) & 0x7fff;
            if tid == 0 {
                tl0[e] = tl0[e].wrapping_add(1);
            }
            // The selector forwards base-layer frames of the current encoding, and
            // switches encodings at a (base-layer) keyframe.
            let forward = if cur_enc == Some(enc) { tid == 0 || keep } else { tid == 0 && keep };
            for i in 0..packets {
                let mut p = vp8(pid[e], true, tl0[e], tid, i == 0, false);
                if forward {
                    cur_enc = Some(enc);
                    r.rewrite(enc, &mut p).unwrap();
                    let ids = vp8_ids(&p);
                    if i == 0 {
                        if let Some((ppid, ptl0)) = prev {
                            prop_assert_eq!(ids.0, ppid.wrapping_add(1) & 0x7fff);
                            prop_assert_eq!(ids.1, if tid == 0 { ptl0.wrapping_add(1) } else { ptl0 });
                        }
                    } else {
                        prop_assert_eq!(Some(ids), prev);
                    }
                    prev = Some(ids);
                } else {
                    r.on_dropped(enc, &p);
                }
            }
        }
    }
}
