//! Fuzzes the STUN parser and the ICE-lite agent behind it.
//!
//! Random bytes rarely pass MESSAGE-INTEGRITY, so besides feeding the input to the agent
//! as is, the target re-signs what it parsed as a valid check and feeds that too: the
//! agent's state machine past authentication gets exercised with fuzzer-chosen
//! transaction ids, usernames, priorities, roles and nomination flags.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weir_dataplane::ice::stun::{self, IceRoleAttr, StunMessage};
use weir_dataplane::ice::{IceCredentials, IceEvent, IceLite, StunClass};

const UFRAG: &str = "fUzZ";
const PWD: &str = "fuzzPasswordOf22CharsAtLeast";

fuzz_target!(|data: &[u8]| {
    let _ = stun::is_stun(data);
    let Ok(msg) = StunMessage::parse(data) else {
        return;
    };
    assert!(msg.as_bytes().len() <= data.len());
    let _ = msg.verify_fingerprint();
    let _ = msg.verify_integrity(PWD.as_bytes());
    let _ = (
        msg.local_ufrag(),
        msg.xor_mapped_address(),
        msg.error_code(),
    );

    let tid = msg.transaction_id();
    let t0 = Instant::now();
    let at = |ms: u8| t0 + Duration::from_millis(u64::from(ms) * 100);
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, tid[0], tid[1])), 5000);
    let credentials = IceCredentials::new(UFRAG, PWD).expect("valid constant credentials");
    let mut ice = IceLite::new(credentials, t0);
    let mut out = [0u8; stun::BINDING_SUCCESS_V6_LEN];

    // The input as it came.
    if let Ok(Some(n)) = ice.handle_binding_request(at(tid[2]), source, data, &mut out) {
        let response = StunMessage::parse(&out[..n]).expect("agent writes valid STUN");
        response
            .verify_integrity(PWD.as_bytes())
            .expect("agent signs responses");
    }

    // The same fields, re-signed as a valid check.
    let remote = msg
        .username()
        .and_then(|u| u.split_once(':'))
        .map_or("peer", |(_, r)| r);
    let mut username_buf = [0u8; stun::MAX_USERNAME_LEN];
    let Some(username) = join_username(&mut username_buf, remote) else {
        return;
    };
    let role = match (msg.ice_controlling(), msg.ice_controlled()) {
        (None, Some(tb)) => IceRoleAttr::Controlled(tb),
        (tb, _) => IceRoleAttr::Controlling(tb.unwrap_or(0)),
    };
    let mut check = [0u8; 1024];
    let Ok(n) = stun::write_binding_request(
        &mut check,
        tid,
        username,
        msg.priority().unwrap_or(0),
        msg.use_candidate(),
        role,
        PWD.as_bytes(),
    ) else {
        return;
    };
    let now = at(tid[3]);
    let result = ice.handle_binding_request(now, source, &check[..n], &mut out);
    let consent_already_expired = now >= t0 + Duration::from_secs(30);
    if consent_already_expired {
        assert!(result.is_err());
        return;
    }
    let Ok(Some(n)) = result else {
        panic!("a re-signed check must be answered: {result:?}");
    };
    let response = StunMessage::parse(&out[..n]).expect("agent writes valid STUN");
    response
        .verify_fingerprint()
        .expect("agent adds FINGERPRINT");
    match role {
        IceRoleAttr::Controlling(_) => {
            assert_eq!(response.class(), StunClass::SuccessResponse);
            assert_eq!(response.xor_mapped_address(), Some(source));
            assert!(ice.is_valid_source(source));
            assert_eq!(ice.selected(), Some(source));
            assert_eq!(ice.poll_event(), Some(IceEvent::Connected(source)));
        }
        IceRoleAttr::Controlled(_) => {
            assert_eq!(response.class(), StunClass::ErrorResponse);
            assert!(!ice.is_valid_source(source));
        }
    }
    ice.handle_timeout(now + Duration::from_secs(30));
    while let Some(event) = ice.poll_event() {
        if event == IceEvent::ConsentExpired {
            assert_eq!(ice.selected(), None);
            return;
        }
    }
    panic!("consent must expire 30 s after the last check");
});

/// `"<UFRAG>:<remote>"` in a stack buffer, or `None` if it exceeds USERNAME's limit.
fn join_username<'b>(buf: &'b mut [u8; stun::MAX_USERNAME_LEN], remote: &str) -> Option<&'b str> {
    let len = UFRAG.len() + 1 + remote.len();
    let out = buf.get_mut(..len)?;
    let (local, rest) = out.split_at_mut(UFRAG.len());
    local.copy_from_slice(UFRAG.as_bytes());
    let (colon, tail) = rest.split_at_mut(1);
    colon.copy_from_slice(b":");
    tail.copy_from_slice(remote.as_bytes());
    core::str::from_utf8(buf.get(..len)?).ok()
}
