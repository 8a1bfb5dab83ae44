//! DTLS datagrams through the resend backoff (they come from the network
//! on neither side, but the backoff reads record and handshake headers of
//! whatever the handshake writes): no panic on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};
use weir_controlplane::FlightBackoff;

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut backoff = FlightBackoff::new();
    // Length-prefixed datagrams, each 100 ms after the last.
    let mut rest = data;
    let mut i = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        let _ = backoff.admit(t0 + Duration::from_millis(100 * i), datagram);
        rest = next;
        i += 1;
    }
});
