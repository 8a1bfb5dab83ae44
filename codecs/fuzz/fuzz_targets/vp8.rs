//! Feeds arbitrary bytes to the vp8 parser; only a panic or an out-of-bounds read fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_codecs::Vp8Descriptor::parse(data);
    let mut buf = data.to_vec();
    let _ = weir_codecs::Vp8Patch {
        picture_id: Some(1),
        tl0_pic_idx: Some(2),
    }
    .apply(&mut buf);
});
