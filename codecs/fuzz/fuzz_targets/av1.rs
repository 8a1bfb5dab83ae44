//! Feeds arbitrary bytes to the av1 parser; only a panic or an out-of-bounds read fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_codecs::Av1Payload::parse(data);
});
