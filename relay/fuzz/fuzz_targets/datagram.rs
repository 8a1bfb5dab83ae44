//! Feeds arbitrary bytes to the datagram parser; feedback it accepts must
//! write back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_relay::proto::datagram::{write_feedback, Datagram};

fuzz_target!(|data: &[u8]| {
    match Datagram::parse(data) {
        Ok(Datagram::Feedback { track, feedback }) => {
            let mut out = Vec::new();
            write_feedback(&mut out, track, &feedback).expect("parsed feedback writes");
            assert_eq!(Datagram::parse(&out), Ok(Datagram::Feedback { track, feedback }));
        }
        Ok(Datagram::Rtp(d)) => {
            let _ = d.rtp.len();
        }
        Err(_) => {}
    }
});
