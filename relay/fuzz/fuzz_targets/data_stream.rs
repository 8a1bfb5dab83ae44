//! Feeds arbitrary bytes, in arbitrary chunks, to a relayed data channel's
//! frame reader; every frame it accepts must encode back to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_relay::proto::data::DataFrameReader;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut reader = DataFrameReader::new(4096);
    for c in rest.chunks(chunk) {
        reader.push(c);
        while let Some(f) = reader.poll() {
            if let Ok(f) = f {
                let mut out = Vec::new();
                f.encode(&mut out).expect("a parsed frame encodes");
                let mut again = DataFrameReader::new(4096);
                again.push(&out);
                assert_eq!(again.poll(), Some(Ok(f)));
            }
        }
    }
});
