//! Feeds arbitrary bytes to the extensions parser; only a panic or an out-of-bounds read fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    use weir_codecs::extensions::*;
    let [p0, p1, rest @ ..] = data else { return };
    let profile = u16::from_be_bytes([*p0, *p1]);
    if let Ok(e) = Extensions::parse(profile, rest) {
        for (_, v) in e.iter() {
            let _ = (
                AudioLevel::parse(v),
                AbsSendTime::parse(v),
                TransportSequenceNumber::parse(v),
            );
            let _ = (VideoOrientation::parse(v), PlayoutDelay::parse(v));
            let _ = (parse_mid(v), parse_rtp_stream_id(v));
        }
    }
    let mut pkt = data.to_vec();
    let _ = rewrite_in_place(&mut pkt, 1, &[0, 0]);
});
