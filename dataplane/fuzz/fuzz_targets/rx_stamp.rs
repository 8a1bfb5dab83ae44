//! Fuzzes the control-message walk that finds a datagram's kernel receive
//! stamp, and the mapping of any stamp onto a batch's `Instant`s.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weir_dataplane::io::stamp::{parse_rx_stamp, BatchClock, RxStamp, MAX_STAMP_AGE};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_rx_stamp(data);
    let now = Instant::now() + MAX_STAMP_AGE;
    // The first 8 bytes, if any, say when the batch was read on the wall clock.
    let wall = data
        .get(..8)
        .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")));
    let clock = BatchClock::at(now, Duration::from_nanos(wall));
    let stamp = parsed.ok().flatten();
    let at = clock.arrival(stamp);
    assert!(at <= now && at >= now - MAX_STAMP_AGE);
    if stamp.is_none() {
        assert_eq!(at, now);
    }
    let _ = clock.arrival(Some(RxStamp::new(Duration::from_nanos(wall.rotate_left(7)))));
});
