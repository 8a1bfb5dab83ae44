//! Tests of the STUN codec: RFC 5769 known answers, writer round trips, hostile input and
//! properties.

use super::*;
use proptest::prelude::*;

/// Hex as the RFC prints it (spaces and line breaks ignored) to bytes.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(core::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

const RFC5769_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
const RFC5769_TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// RFC 5769 §2.1 Sample Request (padding of SOFTWARE/USERNAME is 0x20 in the RFC).
pub(crate) fn rfc5769_request() -> Vec<u8> {
    hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
         00 24 00 04 6e 00 01 ff
         80 29 00 08 93 2f f9 b1 51 26 3b 36
         00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
         00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
         80 28 00 04 e5 7a 3b cf")
}

/// RFC 5769 §2.2 Sample IPv4 Response.
fn rfc5769_ipv4_response() -> Vec<u8> {
    hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 08 00 01 a1 47 e1 12 a6 43
         00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
         80 28 00 04 c0 7d 4c 96")
}

/// RFC 5769 §2.3 Sample IPv6 Response.
fn rfc5769_ipv6_response() -> Vec<u8> {
    hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
         80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
         00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
         00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
         80 28 00 04 c8 fb 0b 4c")
}

fn set_length(msg: &mut [u8], len: usize) {
    msg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

fn request(use_candidate: bool, role: IceRoleAttr) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = write_binding_request(
        &mut buf,
        [9; 12],
        "sfuA:webB",
        0x6e00_01ff,
        use_candidate,
        role,
        b"the-password-of-the-sfu",
    )
    .unwrap();
    buf[..n].to_vec()
}

#[test]
fn rfc5769_sample_request() {
    let bytes = rfc5769_request();
    let msg = StunMessage::parse(&bytes).unwrap();
    assert_eq!(msg.class(), StunClass::Request);
    assert_eq!(msg.method(), StunMethod::BINDING);
    assert!(msg.is_binding_request());
    assert_eq!(msg.transaction_id(), RFC5769_TID);
    assert_eq!(msg.username(), Some("evtj:h6vY"));
    assert_eq!(msg.local_ufrag(), Some("evtj"));
    assert_eq!(msg.priority(), Some(0x6e00_01ff));
    assert_eq!(msg.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
    assert_eq!(msg.ice_controlling(), None);
    assert!(!msg.use_candidate());
    assert_eq!(msg.unknown_comprehension_required(), None);
    assert_eq!(msg.as_bytes(), &bytes[..]);
    msg.verify_fingerprint().unwrap();
    msg.verify_integrity(RFC5769_PASSWORD).unwrap();
    assert_eq!(
        msg.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"),
        Err(StunError::IntegrityMismatch)
    );
}

#[test]
fn rfc5769_ipv4_response_vector() {
    let bytes = rfc5769_ipv4_response();
    let msg = StunMessage::parse(&bytes).unwrap();
    assert_eq!(msg.class(), StunClass::SuccessResponse);
    assert_eq!(msg.method(), StunMethod::BINDING);
    assert_eq!(msg.transaction_id(), RFC5769_TID);
    assert_eq!(
        msg.xor_mapped_address(),
        Some("192.0.2.1:32853".parse().unwrap())
    );
    msg.verify_fingerprint().unwrap();
    msg.verify_integrity(RFC5769_PASSWORD).unwrap();
}

#[test]
fn rfc5769_ipv6_response_vector() {
    let bytes = rfc5769_ipv6_response();
    let msg = StunMessage::parse(&bytes).unwrap();
    assert_eq!(msg.class(), StunClass::SuccessResponse);
    assert_eq!(
        msg.xor_mapped_address(),
        Some(
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                .parse()
                .unwrap()
        )
    );
    msg.verify_fingerprint().unwrap();
    msg.verify_integrity(RFC5769_PASSWORD).unwrap();
}

#[test]
fn writer_encodes_xor_mapped_address_like_rfc5769() {
    for (addr, value) in [
        ("192.0.2.1:32853", "00 01 a1 47 e1 12 a6 43"),
        (
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            "00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9",
        ),
    ] {
        let mut buf = [0u8; BINDING_SUCCESS_V6_LEN];
        let n = write_binding_success(
            &mut buf,
            RFC5769_TID,
            addr.parse().unwrap(),
            RFC5769_PASSWORD,
        )
        .unwrap();
        let value = hex(value);
        // Header, then the XOR-MAPPED-ADDRESS attribute header, then its value.
        assert_eq!(&buf[20..22], &attr::XOR_MAPPED_ADDRESS.to_be_bytes());
        assert_eq!(&buf[24..24 + value.len()], &value[..]);
        let expected_len = if value.len() == 8 {
            BINDING_SUCCESS_V4_LEN
        } else {
            BINDING_SUCCESS_V6_LEN
        };
        assert_eq!(n, expected_len);
    }
}

#[test]
fn binding_success_round_trip() {
    for addr in ["203.0.113.9:50000", "[2001:db8::1]:3478"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut buf = [0u8; 128];
        let n = write_binding_success(&mut buf, [3; 12], addr, b"key").unwrap();
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        assert_eq!(msg.class(), StunClass::SuccessResponse);
        assert_eq!(msg.method(), StunMethod::BINDING);
        assert_eq!(msg.transaction_id(), [3; 12]);
        assert_eq!(msg.xor_mapped_address(), Some(addr));
        assert!(msg.has_integrity() && msg.has_fingerprint());
        msg.verify_fingerprint().unwrap();
        msg.verify_integrity(b"key").unwrap();
    }
}

#[test]
fn binding_request_round_trip() {
    let bytes = request(true, IceRoleAttr::Controlling(42));
    let msg = StunMessage::parse(&bytes).unwrap();
    assert!(msg.is_binding_request());
    assert_eq!(msg.username(), Some("sfuA:webB"));
    assert_eq!(msg.priority(), Some(0x6e00_01ff));
    assert!(msg.use_candidate());
    assert_eq!(msg.ice_controlling(), Some(42));
    assert_eq!(msg.ice_controlled(), None);
    msg.verify_fingerprint().unwrap();
    msg.verify_integrity(b"the-password-of-the-sfu").unwrap();
}

#[test]
fn binding_error_round_trip() {
    let mut buf = [0u8; 128];
    let n = write_binding_error(&mut buf, [1; 12], 487, "Role Conflict", b"k").unwrap();
    let msg = StunMessage::parse(&buf[..n]).unwrap();
    assert_eq!(msg.class(), StunClass::ErrorResponse);
    assert_eq!(
        msg.error_code(),
        Some(ErrorCode {
            code: 487,
            reason: "Role Conflict"
        })
    );
    msg.verify_integrity(b"k").unwrap();
    msg.verify_fingerprint().unwrap();
}

#[test]
fn message_type_interleaving() {
    for class in [
        StunClass::Request,
        StunClass::Indication,
        StunClass::SuccessResponse,
        StunClass::ErrorResponse,
    ] {
        for method in [0x001, 0x00F, 0x010, 0x070, 0x080, 0xABC, 0xFFF] {
            let method = StunMethod::new(method).unwrap();
            let t = message_type(class, method);
            assert_eq!(t & 0xC000, 0);
            assert_eq!(split_message_type(t), (class, method));
        }
    }
    assert_eq!(
        message_type(StunClass::Request, StunMethod::BINDING),
        0x0001
    );
    assert_eq!(
        message_type(StunClass::Indication, StunMethod::BINDING),
        0x0011
    );
    assert_eq!(
        message_type(StunClass::SuccessResponse, StunMethod::BINDING),
        0x0101
    );
    assert_eq!(
        message_type(StunClass::ErrorResponse, StunMethod::BINDING),
        0x0111
    );
    assert_eq!(StunMethod::new(0x1000), None);
}

#[test]
fn is_stun_and_local_ufrag() {
    assert!(is_stun(&rfc5769_request()));
    assert!(is_stun_first_byte(0) && is_stun_first_byte(3));
    assert!(!is_stun_first_byte(20) && !is_stun_first_byte(128));
    assert!(!is_stun(&rfc5769_request()[..19]));
    let mut dtls = rfc5769_request();
    dtls[0] = 22;
    assert!(!is_stun(&dtls));
    let mut no_cookie = rfc5769_request();
    no_cookie[4] = 0;
    assert!(!is_stun(&no_cookie));
    assert_eq!(local_ufrag("sfu1:web1"), Some("sfu1"));
    assert_eq!(local_ufrag("sfu1:"), Some("sfu1"));
    assert_eq!(local_ufrag(":web1"), None);
    assert_eq!(local_ufrag("sfu1"), None);
}

#[test]
fn truncated_messages_are_rejected() {
    let bytes = rfc5769_request();
    for len in 0..bytes.len() {
        let err = StunMessage::parse(&bytes[..len]).unwrap_err();
        if len < HEADER_LEN {
            assert_eq!(err, StunError::TooShort { len });
        } else {
            assert!(matches!(err, StunError::Truncated { length: 0x58, .. }));
        }
    }
    // Trailing bytes after the message are not part of it.
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0xFF; 7]);
    let msg = StunMessage::parse(&longer).unwrap();
    assert_eq!(msg.as_bytes(), &bytes[..]);
    msg.verify_fingerprint().unwrap();
}

#[test]
fn header_violations_are_rejected() {
    let mut top_bits = rfc5769_request();
    top_bits[0] |= 0x40;
    assert_eq!(
        StunMessage::parse(&top_bits).unwrap_err(),
        StunError::NotStun
    );

    let mut cookie = rfc5769_request();
    cookie[7] ^= 1;
    assert_eq!(
        StunMessage::parse(&cookie).unwrap_err(),
        StunError::BadMagicCookie
    );

    let mut unaligned = rfc5769_request();
    set_length(&mut unaligned, 0x57);
    assert_eq!(
        StunMessage::parse(&unaligned).unwrap_err(),
        StunError::UnalignedLength { length: 0x57 }
    );
}

#[test]
fn attribute_overrunning_the_length_is_rejected() {
    // A header claiming 8 bytes of attributes, holding one attribute that claims 8 bytes
    // of value: the value would end 4 bytes past the message.
    let mut bytes = rfc5769_request()[..20].to_vec();
    set_length(&mut bytes, 8);
    bytes.extend_from_slice(&[0x00, 0x24, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(
        StunMessage::parse(&bytes).unwrap_err(),
        StunError::AttributeOverrun {
            attr_type: attr::PRIORITY,
            offset: 20
        }
    );

    // Padding must also fit: a 1-byte USERNAME needs 4 bytes.
    let mut bytes = rfc5769_request()[..20].to_vec();
    set_length(&mut bytes, 4);
    bytes.extend_from_slice(&[0x00, 0x06, 0x00, 0x01, b'a', 0, 0, 0]);
    assert!(matches!(
        StunMessage::parse(&bytes).unwrap_err(),
        StunError::AttributeOverrun { .. }
    ));

    // Shrinking the length of the RFC request cuts its last attribute in half.
    let mut bytes = rfc5769_request();
    set_length(&mut bytes, 0x58 - 4);
    assert!(matches!(
        StunMessage::parse(&bytes).unwrap_err(),
        StunError::AttributeOverrun { .. }
    ));
}

#[test]
fn tampering_is_detected() {
    let bytes = rfc5769_request();
    // Flip a bit in PRIORITY.
    let mut tampered = bytes.clone();
    tampered[47] ^= 1;
    let msg = StunMessage::parse(&tampered).unwrap();
    assert_eq!(
        msg.verify_fingerprint(),
        Err(StunError::FingerprintMismatch)
    );
    assert_eq!(
        msg.verify_integrity(RFC5769_PASSWORD),
        Err(StunError::IntegrityMismatch)
    );
}

#[test]
fn missing_fingerprint_and_integrity_are_reported() {
    let mut buf = [0u8; 64];
    let mut w =
        StunWriter::new(&mut buf, StunClass::Request, StunMethod::BINDING, [0; 12]).unwrap();
    w.username("a:b").unwrap();
    let n = w.finish();
    let msg = StunMessage::parse(&buf[..n]).unwrap();
    assert_eq!(msg.verify_fingerprint(), Err(StunError::MissingFingerprint));
    assert_eq!(msg.verify_integrity(b"k"), Err(StunError::MissingIntegrity));
}

#[test]
fn fingerprint_must_be_last() {
    let mut bytes = rfc5769_request();
    bytes.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
    set_length(&mut bytes, 0x58 + 4);
    assert_eq!(
        StunMessage::parse(&bytes).unwrap_err(),
        StunError::AttributeAfterFingerprint {
            attr_type: attr::USE_CANDIDATE
        }
    );
}

#[test]
fn attributes_after_integrity_are_ignored() {
    // An attacker appends USE-CANDIDATE after MESSAGE-INTEGRITY of a request that had none
    // (and drops FINGERPRINT): the integrity still verifies, so the parser must not
    // believe the appended attribute.
    let mut bytes = request(false, IceRoleAttr::Controlling(1));
    let without_fp = bytes.len() - FP_ATTR_LEN;
    bytes.truncate(without_fp);
    bytes.extend_from_slice(&[0x00, 0x25, 0x00, 0x00]);
    let len = bytes.len() - HEADER_LEN;
    set_length(&mut bytes, len);
    let msg = StunMessage::parse(&bytes).unwrap();
    msg.verify_integrity(b"the-password-of-the-sfu").unwrap();
    assert!(!msg.use_candidate());
    assert!(!msg.has_fingerprint());
}

#[test]
fn first_of_repeated_attributes_wins() {
    let mut buf = [0u8; 128];
    let mut w =
        StunWriter::new(&mut buf, StunClass::Request, StunMethod::BINDING, [0; 12]).unwrap();
    w.priority(1).unwrap().priority(2).unwrap();
    w.username("a:b").unwrap().username("c:d").unwrap();
    let n = w.finish();
    let msg = StunMessage::parse(&buf[..n]).unwrap();
    assert_eq!(msg.priority(), Some(1));
    assert_eq!(msg.username(), Some("a:b"));
}

#[test]
fn malformed_known_attributes_are_rejected() {
    let cases: &[(&[u8], u16)] = &[
        // USERNAME not UTF-8.
        (&[0x00, 0x06, 0x00, 0x02, 0xC3, 0x28, 0, 0], attr::USERNAME),
        // PRIORITY of 2 bytes.
        (&[0x00, 0x24, 0x00, 0x02, 0, 1, 0, 0], attr::PRIORITY),
        // USE-CANDIDATE with a value.
        (&[0x00, 0x25, 0x00, 0x01, 1, 0, 0, 0], attr::USE_CANDIDATE),
        // ICE-CONTROLLING of 4 bytes.
        (&[0x80, 0x2A, 0x00, 0x04, 0, 0, 0, 1], attr::ICE_CONTROLLING),
        // XOR-MAPPED-ADDRESS with family 3.
        (
            &[0x00, 0x20, 0x00, 0x08, 0, 3, 0, 0, 0, 0, 0, 0],
            attr::XOR_MAPPED_ADDRESS,
        ),
        // XOR-MAPPED-ADDRESS IPv6 family with an IPv4-sized value.
        (
            &[0x00, 0x20, 0x00, 0x08, 0, 2, 0, 0, 0, 0, 0, 0],
            attr::XOR_MAPPED_ADDRESS,
        ),
        // ERROR-CODE class 7.
        (&[0x00, 0x09, 0x00, 0x04, 0, 0, 7, 0], attr::ERROR_CODE),
        // MESSAGE-INTEGRITY of 4 bytes.
        (
            &[0x00, 0x08, 0x00, 0x04, 0, 0, 0, 0],
            attr::MESSAGE_INTEGRITY,
        ),
        // FINGERPRINT of 8 bytes.
        (
            &[0x80, 0x28, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0],
            attr::FINGERPRINT,
        ),
    ];
    for (attribute, attr_type) in cases {
        let mut bytes = rfc5769_request()[..20].to_vec();
        set_length(&mut bytes, attribute.len());
        bytes.extend_from_slice(attribute);
        match StunMessage::parse(&bytes) {
            Err(StunError::InvalidAttribute { attr_type: t, .. }) => assert_eq!(t, *attr_type),
            other => panic!("attribute {attr_type:#06x}: {other:?}"),
        }
    }
}

#[test]
fn unknown_attributes() {
    let mut bytes = rfc5769_request()[..20].to_vec();
    set_length(&mut bytes, 8);
    // Comprehension-optional then comprehension-required.
    bytes.extend_from_slice(&[0xC0, 0x57, 0x00, 0x00, 0x7F, 0x01, 0x00, 0x00]);
    let msg = StunMessage::parse(&bytes).unwrap();
    assert_eq!(msg.unknown_comprehension_required(), Some(0x7F01));
}

#[test]
fn writer_never_overruns_a_small_buffer() {
    let full = request(true, IceRoleAttr::Controlling(7));
    for size in 0..full.len() {
        let mut buf = vec![0u8; size];
        let result = write_binding_request(
            &mut buf,
            [9; 12],
            "sfuA:webB",
            0x6e00_01ff,
            true,
            IceRoleAttr::Controlling(7),
            b"the-password-of-the-sfu",
        );
        assert!(
            matches!(result, Err(StunError::BufferTooSmall { .. })),
            "size {size}: {result:?}"
        );
    }
    let mut buf = vec![0u8; full.len()];
    let n = write_binding_request(
        &mut buf,
        [9; 12],
        "sfuA:webB",
        0x6e00_01ff,
        true,
        IceRoleAttr::Controlling(7),
        b"the-password-of-the-sfu",
    )
    .unwrap();
    assert_eq!(&buf[..n], &full[..]);
}

#[test]
fn writer_rejects_bad_values_and_late_attributes() {
    let mut buf = [0u8; 2048];
    let mut w =
        StunWriter::new(&mut buf, StunClass::Request, StunMethod::BINDING, [0; 12]).unwrap();
    let long = "x".repeat(MAX_USERNAME_LEN + 1);
    assert!(matches!(
        w.username(&long),
        Err(StunError::InvalidValue { .. })
    ));
    assert!(matches!(
        w.error_code(700, "nope"),
        Err(StunError::InvalidValue { .. })
    ));
    // A failed call leaves the message as it was.
    assert_eq!(w.len(), HEADER_LEN);
    w.fingerprint().unwrap();
    assert_eq!(
        w.priority(1).unwrap_err(),
        StunError::AttributeAfterFingerprint {
            attr_type: attr::PRIORITY
        }
    );
    let n = w.finish();
    StunMessage::parse(&buf[..n])
        .unwrap()
        .verify_fingerprint()
        .unwrap();
}

fn arb_role() -> impl Strategy<Value = IceRoleAttr> {
    prop_oneof![
        any::<u64>().prop_map(IceRoleAttr::Controlling),
        any::<u64>().prop_map(IceRoleAttr::Controlled),
    ]
}

/// A header with the right cookie and length in front of arbitrary attribute bytes, so
/// the attribute loop is reached far more often than with fully random input.
fn arb_framed() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        any::<[u8; 12]>(),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(t, tid, words)| {
            let mut body: Vec<u8> = words
                .chunks(2)
                .flat_map(|c| {
                    // Bias attribute headers towards known types and small lengths.
                    let t = [
                        0x0006u16, 0x0008, 0x0009, 0x0020, 0x0024, 0x0025, 0x8028, 0x8029, 0x802A,
                    ][usize::from(c[0]) % 9];
                    let len = u16::from(*c.get(1).unwrap_or(&0) % 24);
                    let mut a = t.to_be_bytes().to_vec();
                    a.extend_from_slice(&len.to_be_bytes());
                    a.extend(core::iter::repeat_n(c[0], usize::from(len).div_ceil(4) * 4));
                    a
                })
                .collect();
            body.truncate(body.len() & !3);
            let mut msg = (t & 0x3FFF).to_be_bytes().to_vec();
            msg.extend_from_slice(&(body.len() as u16).to_be_bytes());
            msg.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            msg.extend_from_slice(&tid);
            msg.extend_from_slice(&body);
            msg
        })
}

fn exercise(bytes: &[u8]) {
    if let Ok(msg) = StunMessage::parse(bytes) {
        let _ = msg.verify_fingerprint();
        let _ = msg.verify_integrity(b"key");
        let _ = (msg.username(), msg.xor_mapped_address(), msg.error_code());
        assert!(msg.as_bytes().len() <= bytes.len());
    }
    let _ = is_stun(bytes);
}

proptest! {
    // Regressions go next to this file, inside the module's own folder.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        exercise(&bytes);
    }

    #[test]
    fn parse_never_panics_on_framed_input(bytes in arb_framed()) {
        exercise(&bytes);
    }

    #[test]
    fn request_write_parse_identity(
        tid in any::<[u8; 12]>(),
        username in "[A-Za-z0-9+/]{4,40}:[A-Za-z0-9+/]{4,40}",
        priority in any::<u32>(),
        use_candidate in any::<bool>(),
        role in arb_role(),
        key in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let mut buf = [0u8; 256];
        let n = write_binding_request(&mut buf, tid, &username, priority, use_candidate, role, &key).unwrap();
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        prop_assert!(msg.is_binding_request());
        prop_assert_eq!(msg.transaction_id(), tid);
        prop_assert_eq!(msg.username(), Some(username.as_str()));
        prop_assert_eq!(msg.priority(), Some(priority));
        prop_assert_eq!(msg.use_candidate(), use_candidate);
        let parsed_role = match (msg.ice_controlling(), msg.ice_controlled()) {
            (Some(tb), None) => IceRoleAttr::Controlling(tb),
            (None, Some(tb)) => IceRoleAttr::Controlled(tb),
            other => panic!("role attributes {other:?}"),
        };
        prop_assert_eq!(parsed_role, role);
        prop_assert_eq!(msg.verify_fingerprint(), Ok(()));
        prop_assert_eq!(msg.verify_integrity(&key), Ok(()));
    }

    #[test]
    fn success_write_parse_identity(
        tid in any::<[u8; 12]>(),
        ip in any::<IpAddr>(),
        port in any::<u16>(),
        key in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        // STUN carries address and port only, not IPv6 flow info or scope id.
        let addr = SocketAddr::new(ip, port);
        let mut buf = [0u8; BINDING_SUCCESS_V6_LEN];
        let n = write_binding_success(&mut buf, tid, addr, &key).unwrap();
        let msg = StunMessage::parse(&buf[..n]).unwrap();
        prop_assert_eq!(msg.class(), StunClass::SuccessResponse);
        prop_assert_eq!(msg.transaction_id(), tid);
        prop_assert_eq!(msg.xor_mapped_address(), Some(addr));
        prop_assert_eq!(msg.verify_fingerprint(), Ok(()));
        prop_assert_eq!(msg.verify_integrity(&key), Ok(()));
    }

    #[test]
    fn any_bit_flip_is_caught(bit in 0usize..(8 * 100), use_candidate in any::<bool>()) {
        let mut bytes = request(use_candidate, IceRoleAttr::Controlling(5));
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        if let Ok(msg) = StunMessage::parse(&bytes) {
            let ok = msg.verify_fingerprint().is_ok() && msg.verify_integrity(b"the-password-of-the-sfu").is_ok();
            prop_assert!(!ok, "bit {} flipped unnoticed", bit);
        }
    }
}
