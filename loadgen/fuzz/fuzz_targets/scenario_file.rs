//! Feeds arbitrary text as a TOML scenario file; only a panic fails. Any
//! flags it yields must then parse (or be rejected) by the command line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = weir_loadgen::fuzzing::scenario_file(text);
    }
});
