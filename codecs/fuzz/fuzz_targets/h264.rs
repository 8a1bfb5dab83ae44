//! Feeds arbitrary bytes to the h264 parser; only a panic or an out-of-bounds read fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_codecs::H264Payload::parse(data);
    if let Ok(s) = core::str::from_utf8(data) {
        let _ = weir_codecs::h264::ProfileLevelId::parse(s);
    }
});
