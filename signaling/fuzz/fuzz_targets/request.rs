//! Feeds arbitrary text as a client's WebSocket frame to the signaling
//! request parser. Besides never panicking: a frame it accepts is a JSON
//! object whose `type` is the request it was read as, and a frame it
//! refuses gets an `error` reply that is JSON with a code and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8; the server never sees anything else.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match weir_signaling::fuzzing::request(text) {
        Ok(kind) => {
            let frame: Value = serde_json::from_str(text).expect("an accepted frame is JSON");
            assert_eq!(frame["type"], kind, "accepted as {kind}: {text}");
        }
        Err(reply) => {
            let reply: Value = serde_json::from_str(&reply).expect("the error reply is JSON");
            assert_eq!(reply["type"], "error", "{reply}");
            assert!(reply["code"].is_string(), "{reply}");
            assert!(
                reply["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{reply}"
            );
        }
    }
});
