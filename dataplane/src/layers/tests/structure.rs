//! The selector adopting a structure the stream announces.

use std::time::Instant;

use crate::layers::{LayerPacket, LayerSelector, Layers, Layout, StreamLayers};

fn pkt(spatial: u8, temporal: u8) -> LayerPacket {
    LayerPacket {
        spatial,
        temporal,
        frame_start: true,
        frame_end: true,
        marker: true,
        ..LayerPacket::default()
    }
}

#[test]
fn counts_to_layout() {
    let l = |spatial, temporal| StreamLayers { spatial, temporal }.layout();
    assert_eq!(
        l(3, 3),
        Layout::Svc {
            spatial: 3,
            temporal: 3
        }
    );
    assert_eq!(l(1, 3), Layout::Single { temporal: 3 });
    assert_eq!(l(1, 0), Layout::Single { temporal: 1 });
}

#[test]
fn vp9_scalability_structure() {
    // Key picture start with V=1: SS with N_S=2 (3 layers), Y=0, G=1 and a
    // picture group of TIDs 0, 2, 1, 2.
    let key = [
        0xae, 0x05, 0x00, 0x00, // I L B E V, picture id, L byte, TL0PICIDX
        0x48, 0x04, 0x00, 0x40, 0x20, 0x40, // SS: N_S=2 G=1, N_G=4, TIDs (R=0)
        0xaa,
    ];
    assert_eq!(
        StreamLayers::from_vp9(&key),
        Some(StreamLayers {
            spatial: 3,
            temporal: 3
        })
    );
    // Flexible mode, as Chromium sends SVC: SS with resolutions, no group.
    let flexible = [
        0xbe, 0x05, 0x00, // I L F B E V, picture id, L byte (no TL0PICIDX)
        0x50, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68, 0x05, 0x00, 0x02, 0xd0, 0xaa,
    ];
    assert_eq!(
        StreamLayers::from_vp9(&flexible),
        Some(StreamLayers {
            spatial: 3,
            temporal: 3
        })
    );
    // Without V (most packets) nothing is parsed.
    let mut plain = key;
    plain[0] &= !0x02;
    assert_eq!(StreamLayers::from_vp9(&plain), None);
    assert_eq!(StreamLayers::from_vp9(&[]), None);
    assert_eq!(
        StreamLayers::from_vp9(&[0x02]),
        None,
        "truncated is no structure"
    );
}

#[test]
fn single_stream_becomes_svc_and_filters() {
    let now = Instant::now();
    let mut s = LayerSelector::new(Layout::Single { temporal: 3 });
    s.set_preferred(0, 0);
    s.on_stream_layers(StreamLayers {
        spatial: 3,
        temporal: 3,
    });
    assert_eq!(
        s.layout(),
        Layout::Svc {
            spatial: 3,
            temporal: 3
        }
    );
    let mut key = pkt(0, 0);
    key.keyframe = true;
    assert!(s.on_packet(now, &key).is_forward());
    assert!(!s.on_packet(now, &pkt(1, 0)).is_forward(), "S1 filtered");
    assert!(!s.on_packet(now, &pkt(0, 1)).is_forward(), "T1 filtered");
    assert_eq!(s.current(), Some(Layers::new(0, 0)));
}

#[test]
fn mid_stream_structure_keeps_what_the_decoder_has() {
    let now = Instant::now();
    let mut s = LayerSelector::new(Layout::Single { temporal: 3 });
    let mut key = pkt(0, 0);
    key.keyframe = true;
    assert!(s.on_packet(now, &key).is_forward());
    // Forwarded whole so far: every spatial layer reached the decoder, so
    // no keyframe is needed to keep the top one.
    s.on_stream_layers(StreamLayers {
        spatial: 2,
        temporal: 3,
    });
    assert_eq!(s.current(), Some(Layers::new(1, 2)));
    assert_eq!(s.poll_keyframe_request(now), None);
    // Fewer layers announced later: current follows down.
    s.on_stream_layers(StreamLayers {
        spatial: 1,
        temporal: 2,
    });
    assert_eq!(s.layout(), Layout::Single { temporal: 2 });
    assert_eq!(s.current(), Some(Layers::new(0, 1)));
}

#[test]
fn simulcast_keeps_its_encodings() {
    let mut s = LayerSelector::new(Layout::Simulcast {
        encodings: 3,
        temporal: 3,
    });
    s.on_stream_layers(StreamLayers {
        spatial: 1,
        temporal: 2,
    });
    assert_eq!(
        s.layout(),
        Layout::Simulcast {
            encodings: 3,
            temporal: 2
        }
    );
}

#[test]
fn switch_up_to_a_layer_above_the_frames_own() {
    // L1T3 through the Dependency Descriptor: the T1 frame is the switch
    // point of T2.
    let now = Instant::now();
    let mut s = LayerSelector::new(Layout::Single { temporal: 3 });
    s.set_preferred(0, 0);
    let mut key = pkt(0, 0);
    key.keyframe = true;
    assert!(s.on_packet(now, &key).is_forward());
    s.set_preferred(0, 2);
    assert!(
        !s.on_packet(now, &pkt(0, 2)).is_forward(),
        "no switch at a T2 frame"
    );
    let mut t1 = pkt(0, 1);
    t1.switching_point = true;
    t1.switch_up_to = 2;
    assert!(s.on_packet(now, &t1).is_forward());
    assert_eq!(s.current(), Some(Layers::new(0, 2)));
    assert!(s.on_packet(now, &pkt(0, 2)).is_forward());
}

proptest::proptest! {
    /// Any payload: a structure or nothing, never a panic, never a zero count.
    #[test]
    fn vp9_structure_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        if let Some(l) = StreamLayers::from_vp9(&bytes) {
            proptest::prop_assert!(l.spatial >= 1 && l.temporal >= 1);
        }
    }
}
