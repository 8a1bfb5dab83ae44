use super::*;
use proptest::prelude::*;

#[test]
fn non_flexible_keyframe_with_ss() {
    // I=1 P=0 L=1 F=0 B=1 E=1 V=1 Z=0; M=1 picture id 0x0102; TID=0 U=0 SID=0 D=0;
    // TL0PICIDX 7; SS: N_S=1 (2 layers) Y=1 G=1; 320x180, 640x360; N_G=1: TID 0 U 1 R=1 P_DIFF 1.
    let p = [
        0xae, 0x81, 0x02, 0x00, 0x07, // header, picture id, L byte, TL0PICIDX
        0x38, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68, // SS header and resolutions
        0x01, 0x14, 0x01, // N_G, one entry with one P_DIFF
        0xaa, // frame data
    ];
    let d = Vp9Descriptor::parse(&p).unwrap();
    assert!(d.start_of_frame && d.end_of_frame && !d.inter_picture_predicted && !d.flexible);
    assert_eq!(
        d.picture_id,
        Some(PictureId {
            value: 0x0102,
            long: true
        })
    );
    let l = d.layers.unwrap();
    assert_eq!(
        (l.temporal_id, l.spatial_id, l.tl0_pic_idx),
        (0, 0, Some(7))
    );
    let ss = d.scalability_structure.unwrap();
    assert_eq!(ss.spatial_layers(), 2);
    assert_eq!(ss.temporal_layers(), Some(1));
    assert_eq!(
        ss.resolutions().unwrap().collect::<Vec<_>>(),
        vec![(320, 180), (640, 360)]
    );
    let g: Vec<_> = ss.picture_group().unwrap().collect();
    assert_eq!(
        g,
        vec![PictureGroupEntry {
            temporal_id: 0,
            switching_up: true,
            p_diffs: &[1]
        }]
    );
    assert_eq!(d.header_len, p.len() - 1);
    assert!(d.is_keyframe());
}

#[test]
fn flexible_with_p_diffs() {
    // I=1 P=1 L=1 F=1 B=1 E=0; 7-bit picture id 5; TID=2 U=1 SID=1 D=1; P_DIFFs 1 (N=1), 3.
    let p = [0xf8, 0x05, 0x53, 0x03, 0x06];
    let d = Vp9Descriptor::parse(&p).unwrap();
    let l = d.layers.unwrap();
    assert_eq!(
        (
            l.temporal_id,
            l.switching_up,
            l.spatial_id,
            l.inter_layer_dependency
        ),
        (2, true, 1, true)
    );
    assert_eq!(l.tl0_pic_idx, None);
    assert_eq!(d.p_diffs(), &[1, 3]);
    assert_eq!(d.header_len, 5);
    assert!(!d.is_keyframe());
    assert_eq!(
        Vp9Descriptor::parse(&[0x50, 0x03, 0x03, 0x03, 0x03]),
        Err(Vp9Error::TooManyPDiffs)
    );
    assert_eq!(Vp9Descriptor::parse(&p[..4]), Err(Vp9Error::Truncated));
}

/// Test-side encoder from the RFC layout, for round trips.
fn encode(
    flex: bool,
    p: bool,
    pid: Option<(u16, bool)>,
    layers: Option<(u8, bool, u8, bool, u8)>,
    pdiffs: &[u8],
) -> Vec<u8> {
    let mut b = vec![
        (u8::from(pid.is_some()) << 7)
            | (u8::from(p) << 6)
            | (u8::from(layers.is_some()) << 5)
            | (u8::from(flex) << 4)
            | 0x08,
    ];
    if let Some((v, long)) = pid {
        if long {
            b.extend_from_slice(&((v & 0x7fff) | 0x8000).to_be_bytes());
        } else {
            b.push((v & 0x7f) as u8);
        }
    }
    if let Some((t, u, s, d, tl0)) = layers {
        b.push((t << 5) | (u8::from(u) << 4) | (s << 1) | u8::from(d));
        if !flex {
            b.push(tl0);
        }
    }
    if flex && p {
        for (i, d) in pdiffs.iter().enumerate() {
            b.push((d << 1) | u8::from(i + 1 < pdiffs.len()));
        }
    }
    b
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        if let Ok(d) = Vp9Descriptor::parse(&bytes) {
            prop_assert!(d.header_len <= bytes.len());
            if let Some(ss) = d.scalability_structure {
                let _ = ss.resolutions().map(|r| r.count());
                let _ = ss.picture_group().map(|g| g.count());
            }
        }
        let mut b = bytes.clone();
        let _ = Vp9Patch { picture_id: Some(1), tl0_pic_idx: Some(2) }.apply(&mut b);
    }

    #[test]
    fn patch_then_parse(flex: bool, p: bool, pid in proptest::option::of((any::<u16>(), any::<bool>())),
                        layers in proptest::option::of((0u8..8, any::<bool>(), 0u8..8, any::<bool>(), any::<u8>())),
                        pdiffs in proptest::collection::vec(0u8..128, 1..=3), new_pid: u16, new_tl0: u8) {
        let mut b = encode(flex, p, pid, layers, &pdiffs);
        let orig = b.clone();
        let before = Vp9Descriptor::parse(&orig).unwrap();
        prop_assert_eq!(before.header_len, b.len());
        if flex && p {
            prop_assert_eq!(before.p_diffs(), &pdiffs[..]);
        }
        let patch = Vp9Patch {
            picture_id: pid.map(|_| new_pid),
            tl0_pic_idx: layers.filter(|_| !flex).map(|_| new_tl0),
        };
        patch.apply(&mut b).unwrap();
        let after = Vp9Descriptor::parse(&b).unwrap();
        let expected_pid = pid.map(|(_, long)| PictureId { value: new_pid & if long { 0x7fff } else { 0x7f }, long });
        prop_assert_eq!(after.picture_id, expected_pid);
        prop_assert_eq!(after.layers.and_then(|l| l.tl0_pic_idx), patch.tl0_pic_idx);
        prop_assert_eq!(after.layers.map(|l| (l.temporal_id, l.spatial_id)), before.layers.map(|l| (l.temporal_id, l.spatial_id)));
        prop_assert_eq!(after.p_diffs(), before.p_diffs());
    }
}
