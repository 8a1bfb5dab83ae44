//! Feeds arbitrary bytes to the bundle splitter and each record it yields
//! to the datagram parser: nothing panics, records lie inside the input,
//! and no record is itself a bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_relay::proto::bundle::{split, BUNDLE_TYPE};
use weir_relay::proto::datagram::Datagram;

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = split(data) {
        let mut total = 0;
        for record in records {
            assert!(!record.is_empty() && record[0] != BUNDLE_TYPE);
            total += record.len();
            let _ = Datagram::parse(record);
        }
        assert!(total <= data.len());
    }
});
