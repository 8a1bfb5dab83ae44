//! Feeds arbitrary bytes to the rtp_header parser; only a panic or an out-of-bounds read fails.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = weir_codecs::RtpHeader::parse(data) {
        let _ = (h.payload(), h.extension_block(), h.csrcs().count());
    }
    let mut buf = data.to_vec();
    let _ = weir_codecs::rtp::write_ssrc(&mut buf, 1);
    let _ = weir_codecs::rtp::write_marker(&mut buf, true);
});
