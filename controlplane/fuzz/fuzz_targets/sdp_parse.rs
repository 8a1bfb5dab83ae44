//! Remote SDP (offers and answers come straight from clients).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        weir_controlplane::fuzzing::sdp(text);
    }
});
