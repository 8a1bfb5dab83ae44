//! Scenario tests of [`IceLite`] on a simulated clock: a fake browser sends checks, time
//! is an `Instant` the test advances by hand.

use super::*;
use crate::ice::stun::{write_binding_request, IceRoleAttr, StunWriter, BINDING_SUCCESS_V6_LEN};

const LOCAL_UFRAG: &str = "SFUa";
const LOCAL_PWD: &str = "sfuPasswordOf22CharsAtLeast";
const REMOTE_UFRAG: &str = "WEBb";
const REMOTE_PWD: &str = "webPasswordOf22CharsAtLeast";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A fake controlling peer that builds checks with increasing transaction ids.
struct Browser {
    next_tid: u8,
    username: String,
    key: String,
}

impl Browser {
    fn new() -> Self {
        Self {
            next_tid: 0,
            username: format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}"),
            key: LOCAL_PWD.to_owned(),
        }
    }

    fn check_with(&mut self, use_candidate: bool, role: IceRoleAttr) -> Vec<u8> {
        self.next_tid = self.next_tid.wrapping_add(1);
        let mut buf = [0u8; 256];
        let n = write_binding_request(
            &mut buf,
            [self.next_tid; 12],
            &self.username,
            0x6e00_01ff,
            use_candidate,
            role,
            self.key.as_bytes(),
        )
        .unwrap();
        buf[..n].to_vec()
    }

    fn check(&mut self, use_candidate: bool) -> Vec<u8> {
        self.check_with(use_candidate, IceRoleAttr::Controlling(0x1234))
    }
}

struct Fixture {
    t0: Instant,
    ice: IceLite,
    browser: Browser,
}

impl Fixture {
    fn new() -> Self {
        let t0 = Instant::now();
        let local = IceCredentials::new(LOCAL_UFRAG, LOCAL_PWD).unwrap();
        Self {
            t0,
            ice: IceLite::new(local, t0),
            browser: Browser::new(),
        }
    }

    fn at(&self, secs: f64) -> Instant {
        self.t0 + Duration::from_secs_f64(secs)
    }

    /// Sends `packet` from `source` at `secs`; returns the agent's verdict and response.
    fn send(
        &mut self,
        secs: f64,
        source: &str,
        packet: &[u8],
    ) -> (Result<Option<usize>, IceError>, Vec<u8>) {
        let mut out = [0u8; BINDING_SUCCESS_V6_LEN];
        let now = self.at(secs);
        let result = self
            .ice
            .handle_binding_request(now, addr(source), packet, &mut out);
        let response = match result {
            Ok(Some(n)) => out[..n].to_vec(),
            _ => Vec::new(),
        };
        (result, response)
    }

    /// Sends a valid check and asserts it is answered.
    fn check(&mut self, secs: f64, source: &str, use_candidate: bool) {
        let packet = self.browser.check(use_candidate);
        let (result, response) = self.send(secs, source, &packet);
        assert!(matches!(result, Ok(Some(_))), "{result:?}");
        let msg = StunMessage::parse(&response).unwrap();
        assert_eq!(msg.class(), StunClass::SuccessResponse);
        let request = StunMessage::parse(&packet).unwrap();
        assert_eq!(msg.transaction_id(), request.transaction_id());
    }

    fn events(&mut self) -> Vec<IceEvent> {
        core::iter::from_fn(|| self.ice.poll_event()).collect()
    }
}

#[test]
fn first_check_connects_and_response_is_authenticated() {
    let mut f = Fixture::new();
    assert_eq!(f.ice.state(), IceState::Checking);
    assert_eq!(f.ice.selected(), None);
    assert_eq!(f.ice.poll_timeout(), Some(f.at(30.0)));

    let packet = f.browser.check(false);
    let (result, response) = f.send(1.0, "198.51.100.7:50000", &packet);
    assert_eq!(result, Ok(Some(response.len())));
    let msg = StunMessage::parse(&response).unwrap();
    assert_eq!(msg.class(), StunClass::SuccessResponse);
    assert_eq!(msg.xor_mapped_address(), Some(addr("198.51.100.7:50000")));
    msg.verify_integrity(LOCAL_PWD.as_bytes()).unwrap();
    msg.verify_fingerprint().unwrap();

    assert_eq!(
        f.events(),
        [IceEvent::Connected(addr("198.51.100.7:50000"))]
    );
    assert_eq!(f.ice.state(), IceState::Connected);
    assert_eq!(f.ice.selected(), Some(addr("198.51.100.7:50000")));
    assert!(f.ice.is_valid_source(addr("198.51.100.7:50000")));
    assert!(!f.ice.is_valid_source(addr("198.51.100.7:50001")));
    assert_eq!(f.ice.poll_timeout(), Some(f.at(31.0)));
}

#[test]
fn use_candidate_moves_selection_and_plain_checks_do_not() {
    let mut f = Fixture::new();
    f.check(0.0, "10.0.0.1:1000", false);
    assert_eq!(f.events(), [IceEvent::Connected(addr("10.0.0.1:1000"))]);

    // Another path without USE-CANDIDATE: valid, but not selected.
    f.check(0.1, "[2001:db8::5]:2000", false);
    assert!(f.ice.is_valid_source(addr("[2001:db8::5]:2000")));
    assert_eq!(f.ice.selected(), Some(addr("10.0.0.1:1000")));
    assert_eq!(f.events(), []);

    // The browser nominates it.
    f.check(0.2, "[2001:db8::5]:2000", true);
    assert_eq!(f.ice.selected(), Some(addr("[2001:db8::5]:2000")));
    assert_eq!(
        f.events(),
        [IceEvent::SelectedChanged(addr("[2001:db8::5]:2000"))]
    );

    // Nominating the selected pair again changes nothing; the old path stays valid.
    f.check(0.3, "[2001:db8::5]:2000", true);
    f.check(0.4, "10.0.0.1:1000", false);
    assert_eq!(f.events(), []);
    assert!(f.ice.is_valid_source(addr("10.0.0.1:1000")));
}

#[test]
fn first_check_with_use_candidate_connects_once() {
    let mut f = Fixture::new();
    f.check(0.0, "10.0.0.1:1000", true);
    assert_eq!(f.events(), [IceEvent::Connected(addr("10.0.0.1:1000"))]);
}

#[test]
fn pending_events_drain_in_order() {
    let mut f = Fixture::new();
    f.check(0.0, "10.0.0.1:1000", false);
    f.check(0.1, "10.0.0.2:1000", true);
    f.check(0.2, "10.0.0.3:1000", true);
    f.ice.handle_timeout(f.at(40.0));
    // SelectedChanged is coalesced to the latest address.
    assert_eq!(
        f.events(),
        [
            IceEvent::Connected(addr("10.0.0.1:1000")),
            IceEvent::SelectedChanged(addr("10.0.0.3:1000")),
            IceEvent::ConsentExpired,
        ]
    );
}

#[test]
fn invalid_checks_are_rejected_without_side_effects() {
    let mut f = Fixture::new();
    let src = "192.0.2.50:4000";

    let mut wrong_key = Browser::new();
    wrong_key.key = "notThePasswordOfTheSFUxx".into();
    let (r, _) = f.send(0.0, src, &wrong_key.check(true));
    assert_eq!(r, Err(IceError::Stun(StunError::IntegrityMismatch)));
    assert_eq!(
        r.unwrap_err().to_string(),
        "STUN message integrity check failed"
    );

    let mut wrong_local = Browser::new();
    wrong_local.username = format!("XXXX:{REMOTE_UFRAG}");
    let (r, _) = f.send(0.0, src, &wrong_local.check(true));
    assert_eq!(r, Err(IceError::LocalUfragMismatch));

    let mut no_colon = Browser::new();
    no_colon.username = LOCAL_UFRAG.into();
    let (r, _) = f.send(0.0, src, &no_colon.check(true));
    assert_eq!(r, Err(IceError::MalformedUsername));

    // No FINGERPRINT.
    let mut buf = [0u8; 256];
    let mut w =
        StunWriter::new(&mut buf, StunClass::Request, StunMethod::BINDING, [1; 12]).unwrap();
    w.username(&f.browser.username)
        .unwrap()
        .ice_role(IceRoleAttr::Controlling(1))
        .unwrap()
        .message_integrity(LOCAL_PWD.as_bytes())
        .unwrap();
    let n = w.finish();
    let (r, _) = f.send(0.0, src, &buf[..n]);
    assert_eq!(r, Err(IceError::Stun(StunError::MissingFingerprint)));

    // No USERNAME.
    let mut buf = [0u8; 256];
    let mut w =
        StunWriter::new(&mut buf, StunClass::Request, StunMethod::BINDING, [1; 12]).unwrap();
    w.ice_role(IceRoleAttr::Controlling(1))
        .unwrap()
        .message_integrity(LOCAL_PWD.as_bytes())
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = w.finish();
    let (r, _) = f.send(0.0, src, &buf[..n]);
    assert_eq!(r, Err(IceError::MissingUsername));

    // No role attribute.
    let mut buf = [0u8; 256];
    let mut w =
        StunWriter::new(&mut buf, StunClass::Request, StunMethod::BINDING, [1; 12]).unwrap();
    w.username(&f.browser.username)
        .unwrap()
        .message_integrity(LOCAL_PWD.as_bytes())
        .unwrap()
        .fingerprint()
        .unwrap();
    let n = w.finish();
    let (r, _) = f.send(0.0, src, &buf[..n]);
    assert_eq!(r, Err(IceError::MissingRole));

    // Not STUN at all (a DTLS record header).
    let (r, _) = f.send(0.0, src, &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert!(matches!(r, Err(IceError::Stun(StunError::TooShort { .. }))));

    // A response: lite agents send no requests.
    let mut buf = [0u8; 128];
    let n =
        stun::write_binding_success(&mut buf, [1; 12], addr(src), LOCAL_PWD.as_bytes()).unwrap();
    let (r, _) = f.send(0.0, src, &buf[..n]);
    assert_eq!(
        r,
        Err(IceError::UnexpectedClass(StunClass::SuccessResponse))
    );

    assert!(!f.ice.is_valid_source(addr(src)));
    assert_eq!(f.ice.selected(), None);
    assert_eq!(f.ice.state(), IceState::Checking);
    assert_eq!(f.events(), []);
    // Rejected packets do not refresh consent.
    assert_eq!(f.ice.poll_timeout(), Some(f.at(30.0)));
}

#[test]
fn remote_ufrag_is_enforced_once_known() {
    let mut f = Fixture::new();
    let mut other = Browser::new();
    other.username = format!("{LOCAL_UFRAG}:ZZZZ");
    // Unknown remote: any sender ufrag is fine.
    f.check(0.0, "10.0.0.1:1000", false);
    let (r, _) = f.send(0.1, "10.0.0.2:1000", &other.check(false));
    assert!(matches!(r, Ok(Some(_))));

    f.ice
        .set_remote_credentials(REMOTE_UFRAG, REMOTE_PWD)
        .unwrap();
    assert_eq!(f.ice.remote_credentials().unwrap().ufrag(), REMOTE_UFRAG);
    let (r, _) = f.send(0.2, "10.0.0.3:1000", &other.check(true));
    assert_eq!(r, Err(IceError::RemoteUfragMismatch));
    assert!(!f.ice.is_valid_source(addr("10.0.0.3:1000")));
    f.check(0.3, "10.0.0.1:1000", false);

    assert!(matches!(
        f.ice.set_remote_credentials("a:b!", REMOTE_PWD),
        Err(IceError::Credentials(_))
    ));
}

#[test]
fn ice_controlled_gets_role_conflict() {
    let mut f = Fixture::new();
    let packet = f.browser.check_with(true, IceRoleAttr::Controlled(99));
    let (r, response) = f.send(0.0, "10.0.0.1:1000", &packet);
    assert_eq!(r, Ok(Some(response.len())));
    let msg = StunMessage::parse(&response).unwrap();
    assert_eq!(msg.class(), StunClass::ErrorResponse);
    assert_eq!(msg.error_code().unwrap().code, 487);
    msg.verify_integrity(LOCAL_PWD.as_bytes()).unwrap();
    msg.verify_fingerprint().unwrap();
    assert!(!f.ice.is_valid_source(addr("10.0.0.1:1000")));
    assert_eq!(f.events(), []);
}

#[test]
fn rfc5769_sample_request_is_authenticated_then_gets_role_conflict() {
    // The RFC's sample is a check to ufrag "evtj" from a controlled agent.
    let t0 = Instant::now();
    let local = IceCredentials::new("evtj", "VOkJxbRl1RmTxUk/WvJxBt").unwrap();
    let mut ice = IceLite::new(local, t0);
    let mut out = [0u8; 128];
    let packet = crate::ice::stun::tests::rfc5769_request();
    let n = ice
        .handle_binding_request(t0, addr("192.0.2.1:32853"), &packet, &mut out)
        .unwrap()
        .unwrap();
    let msg = StunMessage::parse(&out[..n]).unwrap();
    assert_eq!(msg.error_code().unwrap().code, stun::ERROR_ROLE_CONFLICT);
}

#[test]
fn binding_indication_is_ignored() {
    let mut f = Fixture::new();
    let mut buf = [0u8; 64];
    let mut w = StunWriter::new(
        &mut buf,
        StunClass::Indication,
        StunMethod::BINDING,
        [5; 12],
    )
    .unwrap();
    w.fingerprint().unwrap();
    let n = w.finish();
    let (r, _) = f.send(1.0, "10.0.0.1:1000", &buf[..n]);
    assert_eq!(r, Ok(None));
    assert!(!f.ice.is_valid_source(addr("10.0.0.1:1000")));
    assert_eq!(f.ice.poll_timeout(), Some(f.at(30.0)));
}

#[test]
fn consent_holds_while_checks_arrive_and_expires_30s_after_the_last() {
    let mut f = Fixture::new();
    // Browsers send consent checks every ~5 s (RFC 7675 §5.1).
    let mut t = 0.0;
    while t <= 120.0 {
        f.check(t, "10.0.0.1:1000", t == 0.0);
        f.ice.handle_timeout(f.at(t + 4.9));
        t += 5.0;
    }
    let last = t - 5.0;
    assert_eq!(f.events(), [IceEvent::Connected(addr("10.0.0.1:1000"))]);
    assert_eq!(f.ice.poll_timeout(), Some(f.at(last + 30.0)));

    f.ice.handle_timeout(f.at(last + 29.999));
    assert_eq!(f.events(), []);
    assert_eq!(f.ice.selected(), Some(addr("10.0.0.1:1000")));

    f.ice.handle_timeout(f.at(last + 30.0));
    assert_eq!(f.events(), [IceEvent::ConsentExpired]);
    assert_eq!(f.ice.state(), IceState::ConsentExpired);
    assert_eq!(f.ice.selected(), None);
    assert!(!f.ice.is_valid_source(addr("10.0.0.1:1000")));
    assert_eq!(f.ice.poll_timeout(), None);

    // Emitted once, and the agent stays closed.
    f.ice.handle_timeout(f.at(last + 100.0));
    assert_eq!(f.events(), []);
    let packet = f.browser.check(true);
    let (r, _) = f.send(last + 31.0, "10.0.0.1:1000", &packet);
    assert_eq!(r, Err(IceError::ConsentExpired));
    assert_eq!(f.events(), []);
}

#[test]
fn consent_expires_if_no_check_ever_arrives() {
    let mut f = Fixture::new();
    f.ice.handle_timeout(f.at(29.0));
    assert_eq!(f.events(), []);
    f.ice.handle_timeout(f.at(30.0));
    assert_eq!(f.events(), [IceEvent::ConsentExpired]);
}

#[test]
fn a_late_check_does_not_revive_an_expired_agent() {
    let mut f = Fixture::new();
    f.check(0.0, "10.0.0.1:1000", true);
    let _ = f.events();
    // The owner never called handle_timeout; the check arrives after the deadline.
    let packet = f.browser.check(true);
    let (r, _) = f.send(30.5, "10.0.0.1:1000", &packet);
    assert_eq!(r, Err(IceError::ConsentExpired));
    assert_eq!(f.events(), [IceEvent::ConsentExpired]);
}

#[test]
fn consent_timeout_is_configurable() {
    let t0 = Instant::now();
    let local = IceCredentials::new(LOCAL_UFRAG, LOCAL_PWD).unwrap();
    let config = IceConfig {
        consent_timeout: Duration::from_secs(5),
        ..IceConfig::default()
    };
    let mut ice = IceLite::with_config(local, config, t0);
    assert_eq!(ice.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    ice.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(ice.poll_event(), Some(IceEvent::ConsentExpired));
}

#[test]
fn valid_sources_are_bounded_and_keep_the_selected_pair() {
    let mut f = Fixture::new();
    f.check(0.0, "10.0.0.100:1", true);
    for i in 0..MAX_VALID_SOURCES + 3 {
        f.check(1.0 + i as f64, &format!("10.0.0.{i}:1"), false);
    }
    // The selected pair survives; the oldest others were evicted.
    assert!(f.ice.is_valid_source(addr("10.0.0.100:1")));
    assert_eq!(f.ice.selected(), Some(addr("10.0.0.100:1")));
    let valid = (0..MAX_VALID_SOURCES + 3)
        .filter(|i| f.ice.is_valid_source(addr(&format!("10.0.0.{i}:1"))))
        .collect::<Vec<_>>();
    assert_eq!(valid, (4..MAX_VALID_SOURCES + 3).collect::<Vec<_>>());
}

#[test]
fn a_too_small_output_buffer_changes_nothing() {
    let mut f = Fixture::new();
    let packet = f.browser.check(true);
    let mut small = [0u8; 40];
    let r = f
        .ice
        .handle_binding_request(f.at(0.0), addr("10.0.0.1:1"), &packet, &mut small);
    assert!(matches!(
        r,
        Err(IceError::Stun(StunError::BufferTooSmall { .. }))
    ));
    assert_eq!(f.ice.selected(), None);
    assert_eq!(f.events(), []);
    // The retransmission succeeds.
    let (r, _) = f.send(0.5, "10.0.0.1:1", &packet);
    assert!(matches!(r, Ok(Some(_))));
}

#[test]
fn ipv4_mapped_sources_are_answered_as_ipv4() {
    let mut f = Fixture::new();
    let packet = f.browser.check(true);
    let (_, response) = f.send(0.0, "[::ffff:192.0.2.9]:7000", &packet);
    let msg = StunMessage::parse(&response).unwrap();
    assert_eq!(msg.xor_mapped_address(), Some(addr("192.0.2.9:7000")));
    // The agent keeps the address as the socket reported it, for is_valid_source.
    assert!(f.ice.is_valid_source(addr("[::ffff:192.0.2.9]:7000")));
}

#[test]
fn debug_output_has_no_secrets() {
    let f = Fixture::new();
    let s = format!("{:?}", f.ice);
    assert!(!s.contains(LOCAL_PWD) && !s.contains(LOCAL_UFRAG), "{s}");
}
