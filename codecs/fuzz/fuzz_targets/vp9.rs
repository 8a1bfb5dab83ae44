//! Feeds arbitrary bytes to the vp9 parser; only a panic or an out-of-bounds read fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = weir_codecs::Vp9Descriptor::parse(data) {
        if let Some(ss) = d.scalability_structure {
            let _ = ss.resolutions().map(|r| r.count());
            let _ = ss.picture_group().map(|g| g.count());
        }
    }
    let mut buf = data.to_vec();
    let _ = weir_codecs::Vp9Patch {
        picture_id: Some(1),
        tl0_pic_idx: Some(2),
    }
    .apply(&mut buf);
});
