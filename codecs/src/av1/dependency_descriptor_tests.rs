use super::*;
use proptest::prelude::*;

/// Packs a string of '0'/'1' (other characters ignored) MSB-first, zero-padded.
fn bits(s: &str) -> Vec<u8> {
    let b: Vec<u8> = s.bytes().filter(|c| *c == b'0' || *c == b'1').collect();
    b.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &x)| acc | ((x - b'0') << (7 - i)))
        })
        .collect()
}

/// L1T2 with one chain, written from the appendix A syntax:
/// templates (S0T0 key, S0T0 delta, S0T1), decode targets {T0, T0+T1}.
fn l1t2_keyframe() -> Vec<u8> {
    bits(concat!(
        "1 1 000000",
        "0000000000000001",                    // start, end, template 0, frame 1
        "1 0 0 0 0",                           // structure attached, no mask, no custom fields
        "000000 00001",                        // template_id_offset 0, dt_cnt 2
        "00 01 11",                            // template_layers: same, tid+1, end
        "10 10  10 10  00 01",                 // template_dtis
        "0  1 0001 0  1 0000 0",               // template_fdiffs: [], [2], [1]
        "1 0",                                 // chain_cnt = ns(3) = 1; protected_by ns(1): no bits
        "0000 0010 0001",                      // template chain fdiffs
        "1 0000001001111111 0000000101100111", // resolutions 640x360
    ))
}

#[test]
fn keyframe_with_structure() {
    let mut cache = None;
    let d = DependencyDescriptor::parse_with_cache(&l1t2_keyframe(), &mut cache).unwrap();
    let s = cache.as_ref().unwrap();
    assert!(d.start_of_frame && d.end_of_frame && d.structure_attached);
    assert_eq!((d.template_id, d.frame_number), (0, 1));
    assert_eq!(d.active_decode_targets, None);
    assert_eq!(d.effective_active_decode_targets(s), Some(0b11));
    assert_eq!((d.frame.spatial_id, d.frame.temporal_id), (0, 0));
    assert_eq!(
        d.frame.dtis.iter().collect::<Vec<_>>(),
        vec![Dti::Switch, Dti::Switch]
    );
    assert_eq!(d.frame.fdiffs.as_slice(), &[] as &[u16]);
    assert_eq!(d.frame.chain_diffs.as_slice(), &[0]);
    assert_eq!(
        d.frame.resolution,
        Some(RenderResolution {
            width: 640,
            height: 360
        })
    );
    assert_eq!(s.templates().len(), 3);
    assert_eq!(s.chain_count(), 1);
    assert_eq!(s.decode_target_protected_by_chain(), &[0, 0]);
    assert_eq!(s.decode_target_layers(0), Some((0, 0)));
    assert_eq!(s.decode_target_layers(1), Some((0, 1)));
    assert_eq!(s.templates()[1].fdiffs.as_slice(), &[2]);
}

#[test]
fn delta_frame_from_template() {
    let mut cache = None;
    DependencyDescriptor::parse_with_cache(&l1t2_keyframe(), &mut cache).unwrap();
    let d =
        DependencyDescriptor::parse(&bits("1 1 000010 0000000000000010"), cache.as_ref()).unwrap();
    assert_eq!((d.frame.spatial_id, d.frame.temporal_id), (0, 1));
    assert_eq!(
        d.frame.dtis.iter().collect::<Vec<_>>(),
        vec![Dti::NotPresent, Dti::Discardable]
    );
    assert_eq!(d.frame.fdiffs.as_slice(), &[1]);
    assert_eq!(d.frame.chain_diffs.as_slice(), &[1]);
}

#[test]
fn custom_fields_and_mask() {
    let mut cache = None;
    DependencyDescriptor::parse_with_cache(&l1t2_keyframe(), &mut cache).unwrap();
    // Template 1, mask 0b01, custom fdiffs [20, 3] and custom chains [7].
    let data = bits("0 1 000001 0000000000000011  0 1 0 1 1  01  10 00010011 01 0010 00  00000111");
    let d = DependencyDescriptor::parse(&data, cache.as_ref()).unwrap();
    assert!(!d.start_of_frame && d.end_of_frame);
    assert_eq!(d.active_decode_targets, Some(0b01));
    assert_eq!(d.frame.fdiffs.as_slice(), &[20, 3]);
    assert_eq!(d.frame.chain_diffs.as_slice(), &[7]);
    let mut out = [0u8; 16];
    let n = d.write(cache.as_ref().unwrap(), &mut out).unwrap();
    assert_eq!(&out[..n], &data[..]);
}

#[test]
fn errors_not_panics() {
    let key = l1t2_keyframe();
    assert_eq!(
        DependencyDescriptor::parse(&key[..2], None),
        Err(DdError::Truncated)
    );
    assert_eq!(
        DependencyDescriptor::parse(&key[..6], None),
        Err(DdError::Truncated)
    );
    assert_eq!(
        DependencyDescriptor::parse(&bits("11000010 00000000 00000010"), None),
        Err(DdError::NoStructure)
    );
    let mut cache = None;
    DependencyDescriptor::parse_with_cache(&key, &mut cache).unwrap();
    assert_eq!(
        DependencyDescriptor::parse(&bits("11000011 00000000 00000010"), cache.as_ref()),
        Err(DdError::UnknownTemplate(3))
    );
    // A failed parse leaves the cache untouched.
    let before = cache.clone();
    assert!(DependencyDescriptor::parse_with_cache(&key[..8], &mut cache).is_err());
    assert_eq!(cache, before);
}

#[test]
fn rewrite_mask() {
    let key = l1t2_keyframe();
    let mut out = [0u8; 64];
    let n = rewrite_active_decode_targets(&key, None, 0b01, &mut out).unwrap();
    let d = DependencyDescriptor::parse(&out[..n], None).unwrap();
    assert_eq!(d.active_decode_targets, Some(0b01));
    assert!(d.structure_attached);
    let orig = DependencyDescriptor::parse(&key, None).unwrap();
    assert_eq!(d.frame, orig.frame);
    // A 3-byte descriptor grows by the extended flags and the mask.
    let mut cache = None;
    DependencyDescriptor::parse_with_cache(&key, &mut cache).unwrap();
    let n = rewrite_active_decode_targets(
        &bits("11000010 00000000 00000010"),
        cache.as_ref(),
        0b10,
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 4);
    let d = DependencyDescriptor::parse(&out[..n], cache.as_ref()).unwrap();
    assert_eq!(
        (d.active_decode_targets, d.frame.temporal_id),
        (Some(0b10), 1)
    );
}

/// Builds a valid structure from a layer-step list and some entropy bytes.
fn structure() -> impl Strategy<Value = DependencyStructure> {
    (
        proptest::collection::vec(0u8..3, 0..10),
        1u8..=6,
        0u8..=6,
        proptest::collection::vec(any::<u8>(), 256),
        any::<bool>(),
        0u8..64,
    )
        .prop_filter_map(
            "valid structure",
            |(steps, dt, chains, raw, res, offset)| {
                let chains = chains.min(dt);
                let mut raw = raw.into_iter().cycle();
                let mut next = move || raw.next().unwrap_or(0);
                let (mut sid, mut tid) = (0u8, 0u8);
                let mut templates = Vec::new();
                for i in 0..=steps.len() {
                    let dtis: Vec<Dti> = (0..dt)
                        .map(|_| {
                            [
                                Dti::NotPresent,
                                Dti::Discardable,
                                Dti::Switch,
                                Dti::Required,
                            ][usize::from(next() % 4)]
                        })
                        .collect();
                    let fd: Vec<u16> = (0..next() % 4)
                        .map(|_| u16::from(next() % 16) + 1)
                        .collect();
                    let cd: Vec<u8> = (0..chains).map(|_| next() % 16).collect();
                    templates.push(FrameTemplate {
                        spatial_id: sid,
                        temporal_id: tid,
                        dtis: Dtis::from_slice(&dtis).ok()?,
                        fdiffs: FrameDiffs::from_slice(&fd).ok()?,
                        chain_diffs: ChainDiffs::from_slice(&cd).ok()?,
                    });
                    match steps.get(i) {
                        Some(1) => tid += 1,
                        Some(2) => (sid, tid) = (sid + 1, 0),
                        _ => {}
                    }
                }
                let protected: Vec<u8> = if chains == 0 {
                    vec![]
                } else {
                    (0..dt).map(|_| next() % chains).collect()
                };
                let resolutions: Vec<RenderResolution> = (0..=sid)
                    .map(|_| RenderResolution {
                        width: u32::from(next()) + 1,
                        height: u32::from(next()) * 256 + 1,
                    })
                    .collect();
                DependencyStructure::new(
                    offset,
                    dt,
                    chains,
                    &templates,
                    &protected,
                    res.then_some(&resolutions[..]),
                )
                .ok()
            },
        )
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
        let mut cache = None;
        let _ = DependencyDescriptor::parse_with_cache(&bytes, &mut cache);
        let mut known = None;
        DependencyDescriptor::parse_with_cache(&l1t2_keyframe(), &mut known).unwrap();
        let _ = DependencyDescriptor::parse(&bytes, known.as_ref());
        let mut out = [0u8; 64];
        let _ = rewrite_active_decode_targets(&bytes, cache.as_ref(), 1, &mut out);
    }

    #[test]
    fn write_then_parse(s in structure(), t: u8, sof: bool, eof: bool, frame: u16, attach: bool,
                        mask: Option<u32>, cdti: bool, cfd: bool, cch: bool,
                        fdiffs in proptest::collection::vec(1u16..=4096, 0..4), raw in proptest::collection::vec(any::<u8>(), 32)) {
        let template_id = (s.template_id_offset() + t % s.templates().len() as u8) % 64;
        let tpl = *s.template(template_id).unwrap();
        let dt = usize::from(s.decode_target_count());
        let mut frame_dep = FrameDependency {
            spatial_id: tpl.spatial_id,
            temporal_id: tpl.temporal_id,
            dtis: tpl.dtis,
            fdiffs: tpl.fdiffs,
            chain_diffs: tpl.chain_diffs,
            resolution: s.resolutions().map(|r| r[usize::from(tpl.spatial_id)]),
        };
        if cdti {
            let d: Vec<Dti> = raw[..dt].iter().map(|b| [Dti::NotPresent, Dti::Discardable, Dti::Switch, Dti::Required][usize::from(b % 4)]).collect();
            frame_dep.dtis = Dtis::from_slice(&d).unwrap();
        }
        if cfd {
            frame_dep.fdiffs = FrameDiffs::from_slice(&fdiffs).unwrap();
        }
        if cch {
            frame_dep.chain_diffs = ChainDiffs::from_slice(&raw[..usize::from(s.chain_count())]).unwrap();
        }
        let d = DependencyDescriptor {
            start_of_frame: sof,
            end_of_frame: eof,
            template_id,
            frame_number: frame,
            structure_attached: attach,
            active_decode_targets: mask.map(|m| m & s.all_decode_targets()),
            custom_dtis: cdti,
            custom_fdiffs: cfd,
            custom_chains: cch,
            frame: frame_dep,
        };
        let mut out = [0u8; 1024];
        let n = d.write(&s, &mut out).unwrap();
        let cached = if attach { None } else { Some(&s) };
        let mut cache = cached.cloned();
        let got = DependencyDescriptor::parse_with_cache(&out[..n], &mut cache).unwrap();
        prop_assert_eq!(got, d);
        prop_assert_eq!(cache.as_ref(), Some(&s));

        let mut out2 = [0u8; 1024];
        let n2 = rewrite_active_decode_targets(&out[..n], cached, 1, &mut out2).unwrap();
        let re = DependencyDescriptor::parse(&out2[..n2], Some(&s)).unwrap();
        prop_assert_eq!(re, DependencyDescriptor { active_decode_targets: Some(1), ..d });
    }
}

/// The L1T3 example of the spec (§A.6.1): five templates, three decode targets
/// (30, 15, 7.5 fps), one chain over the T0 frames.
#[test]
fn spec_l1t3_example() {
    use Dti::{Discardable as D, NotPresent as N, Switch as S};
    let t = |tid: u8, fdiffs: &[u16], chain: u8, dtis: &[Dti]| FrameTemplate {
        spatial_id: 0,
        temporal_id: tid,
        dtis: Dtis::from_slice(dtis).unwrap(),
        fdiffs: FrameDiffs::from_slice(fdiffs).unwrap(),
        chain_diffs: ChainDiffs::from_slice(&[chain]).unwrap(),
    };
    let templates = [
        t(0, &[], 0, &[S, S, S]),
        t(0, &[4], 4, &[S, S, S]),
        t(1, &[2], 2, &[S, D, N]),
        t(2, &[1], 1, &[D, N, N]),
        t(2, &[1], 3, &[D, N, N]),
    ];
    let s = DependencyStructure::new(1, 3, 1, &templates, &[0, 0, 0], None).unwrap();
    assert_eq!(s.decode_target_layers(0), Some((0, 2)));
    assert_eq!(s.decode_target_layers(1), Some((0, 1)));
    assert_eq!(s.decode_target_layers(2), Some((0, 0)));
    assert_eq!((s.spatial_layer_count(), s.temporal_layer_count()), (1, 3));
    // The T1 frame is where a decoder joins T2 (switch for decode target 0);
    // a T2 frame is a switch point of nothing.
    assert_eq!(s.switch_up_to(&templates[0].dtis), Some(2));
    assert_eq!(s.switch_up_to(&templates[2].dtis), Some(2));
    assert_eq!(s.switch_up_to(&templates[3].dtis), None);
    // Key frame with the structure, then a T2 frame by template id 4 (index 3).
    let key = DependencyDescriptor {
        start_of_frame: true,
        end_of_frame: true,
        template_id: 1,
        frame_number: 100,
        structure_attached: true,
        active_decode_targets: None,
        custom_dtis: false,
        custom_fdiffs: false,
        custom_chains: false,
        frame: FrameDependency {
            spatial_id: 0,
            temporal_id: 0,
            dtis: templates[0].dtis,
            fdiffs: templates[0].fdiffs,
            chain_diffs: templates[0].chain_diffs,
            resolution: None,
        },
    };
    let mut out = [0u8; 64];
    let n = key.write(&s, &mut out).unwrap();
    let mut cache = None;
    assert_eq!(
        DependencyDescriptor::parse_with_cache(&out[..n], &mut cache).unwrap(),
        key
    );
    let d = DependencyDescriptor::parse(&[0xc4, 0x00, 0x65], cache.as_ref()).unwrap();
    assert_eq!((d.frame_number, d.frame.temporal_id), (101, 2));
    assert_eq!(d.frame.dtis.iter().collect::<Vec<_>>(), vec![D, N, N]);
    assert_eq!(d.frame.fdiffs.as_slice(), &[1]);
}
