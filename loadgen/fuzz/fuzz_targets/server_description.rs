//! Feeds arbitrary text as a server's session description to the
//! subscriber's SDP parser (transport attributes, m-sections, `a=extmap`,
//! `a=ssrc-group`) and answers what parses; only a panic fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = weir_loadgen::fuzzing::server_description(text);
    }
});
