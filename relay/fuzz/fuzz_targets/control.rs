//! Feeds arbitrary bytes, in arbitrary chunks, to the control-stream frame
//! reader; every message it accepts must encode back to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_relay::proto::control::FrameReader;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut reader = FrameReader::new();
    for c in rest.chunks(chunk) {
        reader.push(c);
        while let Some(m) = reader.poll() {
            if let Ok(m) = m {
                let mut out = Vec::new();
                m.encode(&mut out).expect("a parsed message encodes");
                let mut again = FrameReader::new();
                again.push(&out);
                assert_eq!(again.poll(), Some(Ok(m)));
            }
        }
    }
});
