//! Structured: writes arbitrary extension elements, parses the block back and checks
//! every element survives in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_codecs::extensions::{ExtForm, Extensions, ExtensionsWriter};

fuzz_target!(|input: (bool, u8, Vec<(u8, Vec<u8>)>)| {
    let (two_byte, appbits, elements) = input;
    let form = if two_byte {
        ExtForm::TwoByte {
            appbits: appbits & 0x0f,
        }
    } else {
        ExtForm::OneByte
    };
    let mut buf = vec![0u8; 8192];
    let mut w = ExtensionsWriter::new(form, &mut buf);
    let mut pushed = Vec::new();
    for (id, v) in &elements {
        if w.push(*id, v).is_ok() {
            pushed.push((*id, v.clone()));
        }
    }
    let out = w.finish().expect("buffer is large enough");
    let e = Extensions::parse(out.profile, &buf[..out.len]).expect("writer output parses");
    let got: Vec<(u8, Vec<u8>)> = e.iter().map(|(i, v)| (i, v.to_vec())).collect();
    assert_eq!(got, pushed);
});
