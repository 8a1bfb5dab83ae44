//! Structured: writes an arbitrary VP8 descriptor, parses it back, patches it and
//! checks the patched fields and nothing else changed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_codecs::vp8::PictureId;
use weir_codecs::{Vp8Descriptor, Vp8Patch};

type Input = (
    u8,
    Option<(u16, bool)>,
    Option<u8>,
    Option<u8>,
    bool,
    Option<u8>,
    u16,
    u8,
);

fuzz_target!(|input: Input| {
    let (b0, pic, tl0, tid, y, key, new_pic, new_tl0) = input;
    let tid = tid.map(|t| t & 3);
    let d = Vp8Descriptor {
        non_reference: b0 & 1 != 0,
        start_of_partition: b0 & 2 != 0,
        partition_index: b0 >> 5,
        picture_id: pic.map(|(v, long)| PictureId {
            value: v & if long { 0x7fff } else { 0x7f },
            long,
        }),
        tl0_pic_idx: tl0,
        tid,
        layer_sync: y && tid.is_some(),
        key_idx: key.map(|k| k & 0x1f),
        header_len: 0,
        keyframe: false,
    };
    let mut buf = [0u8; 8];
    let n = d.write(&mut buf).expect("6 bytes at most");
    let got = Vp8Descriptor::parse(&buf[..n]).expect("writer output parses");
    assert_eq!(got, Vp8Descriptor { header_len: n, ..d });
    let patch = Vp8Patch {
        picture_id: pic.map(|_| new_pic),
        tl0_pic_idx: tl0.map(|_| new_tl0),
    };
    patch.apply(&mut buf[..n]).expect("fields present");
    let after = Vp8Descriptor::parse(&buf[..n]).expect("patched output parses");
    assert_eq!(after.tl0_pic_idx, patch.tl0_pic_idx);
    assert_eq!(
        after.picture_id.map(|p| p.long),
        d.picture_id.map(|p| p.long)
    );
    assert_eq!(
        (after.tid, after.key_idx, after.header_len),
        (d.tid, d.key_idx, n)
    );
});
