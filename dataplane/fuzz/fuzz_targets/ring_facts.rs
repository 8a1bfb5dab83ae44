//! Arbitrary ring meta words and entry lengths: unpacking never panics, and
//! facts it accepts never point outside the packet; packing what it
//! produced gives the same words back for the fields it keeps.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weir_dataplane::fanout::facts::{pack, unpack};
use weir_dataplane::fanout::META_WORDS;
use weir_dataplane::packet::{LayerFacts, MediaPacket};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 * META_WORDS + 2 {
        return;
    }
    let mut words = [0u64; META_WORDS];
    for (w, chunk) in words.iter_mut().zip(data.chunks_exact(8)) {
        *w = u64::from_le_bytes(chunk.try_into().unwrap());
    }
    let len = usize::from(u16::from_le_bytes([data[8 * META_WORDS], data[8 * META_WORDS + 1]]));
    let mut p = MediaPacket {
        data: Vec::new(),
        payload_offset: 0,
        payload_len: 0,
        seq: 0,
        timestamp: 0,
        ssrc: 0,
        marker: false,
        keyframe: false,
        layers: LayerFacts::default(),
        sender_report: None,
    };
    if unpack(&words, len, &mut p).is_ok() {
        assert!(p.payload_offset + p.payload_len <= len);
        if let Some((o, l)) = p.layers.dd {
            assert!(usize::from(o) + usize::from(l) <= len);
        }
        let again = pack(&p).expect("unpacked facts always fit");
        let mut q = p.clone();
        unpack(&again, len, &mut q).expect("repacked facts unpack");
        assert_eq!(format!("{p:?}"), format!("{q:?}"));
    }
});
