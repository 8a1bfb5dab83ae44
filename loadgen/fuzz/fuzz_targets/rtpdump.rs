//! Feeds arbitrary bytes as an rtpdump capture to the VP8 frame
//! reassembler that `--vp8-frames captured` replays; only a panic fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = weir_loadgen::fuzzing::rtpdump_frames(data);
});
