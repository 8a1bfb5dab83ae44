//! Picture-id rewriting, alone.

use weir_codecs::vp8::PictureId;
use weir_codecs::{Codec, Vp8Descriptor, Vp9Descriptor};

use crate::layers::{PictureIdRewriter, RewriteError};

/// A VP8 payload: descriptor with picture id, TL0PICIDX and TID, then one byte.
pub(super) fn vp8(pid: u16, long: bool, tl0: u8, tid: u8, start: bool, key: bool) -> Vec<u8> {
    let d = Vp8Descriptor {
        non_reference: tid > 0,
        start_of_partition: start,
        partition_index: 0,
        picture_id: Some(PictureId {
            value: pid & if long { 0x7fff } else { 0x7f },
            long,
        }),
        tl0_pic_idx: Some(tl0),
        tid: Some(tid),
        layer_sync: tid > 0,
        key_idx: None,
        header_len: 0,
        keyframe: false,
    };
    let mut out = vec![0u8; 8];
    let n = d.write(&mut out).unwrap();
    out.truncate(n);
    // VP8 frame tag: P bit 0 for a keyframe.
    out.push(if key { 0x00 } else { 0x01 });
    out
}

/// Picture id and TL0PICIDX of a VP8 payload.
pub(super) fn vp8_ids(p: &[u8]) -> (u16, u8) {
    let d = Vp8Descriptor::parse(p).unwrap();
    (d.picture_id.unwrap().value, d.tl0_pic_idx.unwrap())
}

/// A non-flexible VP9 payload: I L B E bits, 15-bit picture id, L byte, TL0PICIDX.
pub(super) fn vp9(pid: u16, tl0: u8, sid: u8, tid: u8, b: bool, e: bool) -> Vec<u8> {
    let b0 = 0x80 | 0x20 | if b { 0x08 } else { 0 } | if e { 0x04 } else { 0 } | 0x40;
    let pid = (pid & 0x7fff) | 0x8000;
    let [hi, lo] = pid.to_be_bytes();
    vec![b0, hi, lo, (tid << 5) | (sid << 1), tl0, 0xaa]
}

pub(super) fn vp9_ids(p: &[u8]) -> (u16, u8) {
    let d = Vp9Descriptor::parse(p).unwrap();
    (
        d.picture_id.unwrap().value,
        d.layers.unwrap().tl0_pic_idx.unwrap(),
    )
}

/// Runs pictures `(pid, tl0, tid, forwarded)` of one encoding, two packets
/// each, and returns the output ids of the forwarded ones.
fn run_vp8(r: &mut PictureIdRewriter, enc: u8, pics: &[(u16, u8, u8, bool)]) -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    for &(pid, tl0, tid, fwd) in pics {
        for start in [true, false] {
            let mut p = vp8(pid, true, tl0, tid, start, false);
            if fwd {
                r.rewrite(enc, &mut p).unwrap();
                if start {
                    out.push(vp8_ids(&p));
                } else {
                    assert_eq!(Some(&vp8_ids(&p)), out.last(), "same picture, same ids");
                }
            } else {
                r.on_dropped(enc, &p);
            }
        }
    }
    out
}

#[test]
fn vp8_temporal_drops_leave_no_picture_id_gap() {
    let mut r = PictureIdRewriter::new(Codec::Vp8);
    // L1T3: 0 2 1 2 0 2 1 2, layer 2 dropped.
    let pics: Vec<_> = (0..8u16)
        .map(|i| {
            let tid = [0, 2, 1, 2][usize::from(i % 4)];
            (100 + i, 7 + (i / 4) as u8, tid, tid < 2)
        })
        .collect();
    let got = run_vp8(&mut r, 0, &pics);
    assert_eq!(got, vec![(100, 7), (101, 7), (102, 8), (103, 8)]);
}

#[test]
fn vp8_picture_id_wraps_at_15_bits_and_7_bits() {
    let mut r = PictureIdRewriter::new(Codec::Vp8);
    let pics: Vec<_> = (0..6u16)
        .map(|i| {
            (
                0x7ffd_u16.wrapping_add(i) & 0x7fff,
                1,
                (i % 2) as u8,
                i % 2 == 0,
            )
        })
        .collect();
    assert_eq!(
        run_vp8(&mut r, 0, &pics),
        vec![(0x7ffd, 1), (0x7ffe, 1), (0x7fff, 1)]
    );

    let mut r = PictureIdRewriter::new(Codec::Vp8);
    let mut got = Vec::new();
    for i in 0..6u16 {
        let mut p = vp8(126 + i, false, 0, (i % 2) as u8, true, false);
        if i % 2 == 0 {
            r.rewrite(0, &mut p).unwrap();
            got.push(Vp8Descriptor::parse(&p).unwrap().picture_id.unwrap());
        } else {
            r.on_dropped(0, &p);
        }
    }
    let values: Vec<_> = got.iter().map(|p| (p.value, p.long)).collect();
    assert_eq!(values, vec![(126, false), (127, false), (0, false)]);
}

#[test]
fn vp8_encoding_switch_continues_from_the_last_output() {
    let mut r = PictureIdRewriter::new(Codec::Vp8);
    let a = run_vp8(&mut r, 0, &[(500, 40, 0, true), (501, 40, 1, true)]);
    assert_eq!(a, vec![(500, 40), (501, 40)]);
    // Encoding 2 has its own picture-id and TL0PICIDX spaces.
    let b = run_vp8(
        &mut r,
        2,
        &[
            (9000, 200, 0, true),
            (9001, 200, 2, false),
            (9002, 200, 1, true),
            (9004, 201, 0, true),
        ],
    );
    // 9003 was lost before the SFU: a real gap stays.
    assert_eq!(b, vec![(502, 41), (503, 41), (505, 42)]);
    // Back to encoding 0, which moved on meanwhile.
    let c = run_vp8(&mut r, 0, &[(620, 70, 0, true)]);
    assert_eq!(c, vec![(506, 43)]);
}

#[test]
fn vp8_drops_from_other_encodings_are_ignored() {
    let mut r = PictureIdRewriter::new(Codec::Vp8);
    run_vp8(&mut r, 1, &[(10, 0, 0, true)]);
    r.on_dropped(0, &vp8(4000, true, 0, 0, true, false));
    r.on_dropped(2, &vp8(11, true, 0, 0, true, false));
    assert_eq!(run_vp8(&mut r, 1, &[(11, 1, 0, true)]), vec![(11, 1)]);
}

#[test]
fn vp8_picture_counted_dropped_then_forwarded_keeps_its_place() {
    let mut r = PictureIdRewriter::new(Codec::Vp8);
    run_vp8(&mut r, 0, &[(10, 0, 0, true)]);
    // A packet of picture 11 is dropped, then another of it is forwarded.
    r.on_dropped(0, &vp8(11, true, 0, 1, false, false));
    let mut p = vp8(11, true, 0, 1, false, false);
    r.rewrite(0, &mut p).unwrap();
    assert_eq!(vp8_ids(&p), (11, 0));
    assert_eq!(run_vp8(&mut r, 0, &[(12, 1, 0, true)]), vec![(12, 1)]);
}

#[test]
fn retransmission_maps_to_the_same_picture_id() {
    let mut r = PictureIdRewriter::new(Codec::Vp8);
    let pics: Vec<_> = (0..10u16)
        .map(|i| (300 + i, 0, (i % 2) as u8, i % 2 == 0))
        .collect();
    let got = run_vp8(&mut r, 0, &pics);
    assert_eq!(got.len(), 5);
    // Picture 302 (forwarded as 301) again, after newer drops.
    let mut p = vp8(302, true, 0, 0, false, false);
    r.rewrite(0, &mut p).unwrap();
    assert_eq!(vp8_ids(&p).0, 301);
    // And the stream goes on unchanged.
    assert_eq!(run_vp8(&mut r, 0, &[(310, 0, 0, true)]), vec![(305, 0)]);
}

#[test]
fn vp9_keeps_picture_ids_within_an_encoding() {
    let mut r = PictureIdRewriter::new(Codec::Vp9);
    let mut got = Vec::new();
    // Three spatial layers; spatial 2 and temporal layer 1 dropped.
    for i in 0..4u16 {
        let tid = (i % 2) as u8;
        for sid in 0..3 {
            let mut p = vp9(1000 + i, 9, sid, tid, true, true);
            if tid == 0 && sid < 2 {
                r.rewrite(0, &mut p).unwrap();
                got.push(vp9_ids(&p));
            } else {
                r.on_dropped(0, &p);
            }
        }
    }
    assert_eq!(got, vec![(1000, 9), (1000, 9), (1002, 9), (1002, 9)]);
}

#[test]
fn vp9_encoding_switch_continues() {
    let mut r = PictureIdRewriter::new(Codec::Vp9);
    let mut p = vp9(50, 3, 0, 0, true, true);
    r.rewrite(0, &mut p).unwrap();
    let mut p = vp9(7000, 100, 0, 0, true, true);
    r.rewrite(1, &mut p).unwrap();
    assert_eq!(vp9_ids(&p), (51, 4));
}

#[test]
fn other_codecs_pass_through_and_bad_payloads_are_errors() {
    for codec in [Codec::Opus, Codec::H264, Codec::Av1] {
        let mut r = PictureIdRewriter::new(codec);
        let mut p = [1, 2, 3];
        r.rewrite(0, &mut p).unwrap();
        r.on_dropped(0, &p);
        assert_eq!(p, [1, 2, 3]);
    }
    let mut r = PictureIdRewriter::new(Codec::Vp8);
    assert!(matches!(r.rewrite(0, &mut []), Err(RewriteError::Vp8(_))));
    r.on_dropped(0, &[]);
    // No picture id, no TL0PICIDX: nothing to patch.
    let mut p = [0x10, 0x00];
    r.rewrite(0, &mut p).unwrap();
    assert_eq!(p, [0x10, 0x00]);
    let mut r = PictureIdRewriter::new(Codec::Vp9);
    assert!(matches!(
        r.rewrite(0, &mut [0x80]),
        Err(RewriteError::Vp9(_))
    ));
}
