//! RFC vectors, state machine cases and property tests. The cross-check
//! against webrtc-srtp is in `tests/srtp_crosscheck.rs`.

use super::cm::apply_keystream;
use super::gcm::GcmTransform;
use super::header::RtpHeader;
use super::kdf::{self, LABEL_RTP_AUTH, LABEL_RTP_KEY, LABEL_RTP_SALT};
use super::replay::{estimate_index, ReplayWindow};
use super::*;
use aes::cipher::KeyInit;
use proptest::prelude::*;

fn backends() -> Vec<Backend> {
    #[allow(unused_mut)]
    let mut v = vec![Backend::Ring, Backend::RustCrypto];
    #[cfg(feature = "aws-lc-rs")]
    v.push(Backend::AwsLc);
    v
}
const PROFILES: [SrtpProfile; 2] = [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80];

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// ---- RFC 3711 Appendix B ----

/// B.2: the AES-CM keystream for session key 2B7E…, salt F0F1…FCFD, SSRC 0,
/// index 0. Encrypting zeros yields the keystream itself.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let aes = aes::Aes128Enc::new(hex("2B7E151628AED2A6ABF7158809CF4F3C")[..].into());
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(&hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"));
    let mut ks = vec![0u8; 0xFF02 * 16];
    apply_keystream(&aes, &iv, &mut ks);
    let block = |i: usize| &ks[i * 16..i * 16 + 16];
    assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xFEFF), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xFF00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xFF01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

/// B.3: key derivation from master key E1F9…, master salt 0EC6….
#[test]
fn rfc3711_b3_key_derivation() {
    let key: [u8; 16] = hex("E1F97A0D3E018BE0D64FA32C06DE4139").try_into().unwrap();
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    let mut enc = [0u8; 16];
    kdf::derive(&key, &salt, LABEL_RTP_KEY, &mut enc);
    assert_eq!(enc[..], hex("C61E7A93744F39EE10734AFE3FF7A087")[..]);
    let mut s = [0u8; 14];
    kdf::derive(&key, &salt, LABEL_RTP_SALT, &mut s);
    assert_eq!(s[..], hex("30CBBC08863D8C85D49DB34A9AE1")[..]);
    let mut auth = [0u8; 94];
    kdf::derive(&key, &salt, LABEL_RTP_AUTH, &mut auth);
    assert_eq!(
        auth[..],
        hex(
            "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF72270986371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E474035766B68642C59BBFC2F34DB60DBDFB2"
        )[..]
    );
}

// ---- RFC 7714 sections 16 and 17 (session keys given directly) ----

const GCM_KEY: &str = "000102030405060708090a0b0c0d0e0f";
const GCM_SALT: &str = "517569642070726f2071756f";
const GCM_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                       20646976 69736120 696e2070 61727465 73207472 6573";
const GCM_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
                        4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";

fn gcm_vector(backend: Backend) -> GcmTransform {
    GcmTransform::from_session_keys(
        &hex(GCM_KEY).try_into().unwrap(),
        &hex(GCM_SALT).try_into().unwrap(),
        backend,
    )
}

/// §16.1: AEAD_AES_128_GCM SRTP, SSRC 5501a0b2, ROC 0, SEQ f17b.
#[test]
fn rfc7714_16_srtp_gcm() {
    let want = hex(
        "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5
         0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce",
    );
    let plain = hex(GCM_RTP);
    for backend in backends() {
        let t = gcm_vector(backend);
        let hdr = RtpHeader::parse(&plain, 0).unwrap();
        let mut buf = plain.clone();
        buf.resize(plain.len() + 16, 0);
        assert_eq!(
            t.seal_rtp(&mut buf, plain.len(), &hdr, 0xf17b).unwrap(),
            want.len()
        );
        assert_eq!(buf, want, "{backend:?}");
        let mut wire = want.clone();
        assert_eq!(t.open_rtp(&mut wire, &hdr, 0xf17b).unwrap(), plain.len());
        assert_eq!(wire[..plain.len()], plain[..]);
        // A flipped bit anywhere fails authentication.
        let mut bad = want.clone();
        bad[20] ^= 1;
        assert!(matches!(
            t.open_rtp(&mut bad, &hdr, 0xf17b),
            Err(SrtpError::Authentication)
        ));
    }
}

/// §17.1: AEAD_AES_128_GCM SRTCP, encrypted, SSRC "Mars", index 0x5d4.
#[test]
fn rfc7714_17_srtcp_gcm_encrypted() {
    let want = hex(
        "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
         c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
         45d9eade 800005d4",
    );
    let plain = hex(GCM_RTCP);
    for backend in backends() {
        let t = gcm_vector(backend);
        let mut buf = plain.clone();
        buf.resize(plain.len() + 20, 0);
        assert_eq!(
            t.seal_rtcp(&mut buf, plain.len(), 0x4d617273, 0x5d4, true)
                .unwrap(),
            want.len()
        );
        assert_eq!(buf, want, "{backend:?}");
        let mut wire = want.clone();
        assert_eq!(
            t.open_rtcp(&mut wire, 0x4d617273, 0x5d4, true).unwrap(),
            plain.len()
        );
        assert_eq!(wire[..plain.len()], plain[..]);
    }
}

/// §17.3: AEAD_AES_128_GCM SRTCP with the E flag clear (authenticated only).
#[test]
fn rfc7714_17_srtcp_gcm_authenticated_only() {
    let plain = hex(GCM_RTCP);
    let mut want = plain.clone();
    want.extend(hex("841dd968 3dd78ec9 2ae58790 125f62b3 000005d4"));
    for backend in backends() {
        let t = gcm_vector(backend);
        let mut buf = plain.clone();
        buf.resize(plain.len() + 20, 0);
        t.seal_rtcp(&mut buf, plain.len(), 0x4d617273, 0x5d4, false)
            .unwrap();
        assert_eq!(buf, want, "{backend:?}");
        let mut wire = want.clone();
        assert_eq!(
            t.open_rtcp(&mut wire, 0x4d617273, 0x5d4, false).unwrap(),
            plain.len()
        );
        assert_eq!(wire[..plain.len()], plain[..]);
    }
}

// ---- Sessions ----

fn keys(profile: SrtpProfile, flip: bool) -> SrtpKeys {
    let a = vec![1u8; profile.key_len()];
    let b = vec![2u8; profile.key_len()];
    let sa = vec![3u8; profile.salt_len()];
    let sb = vec![4u8; profile.salt_len()];
    if flip {
        SrtpKeys {
            profile,
            local_key: b,
            local_salt: sb,
            remote_key: a,
            remote_salt: sa,
        }
    } else {
        SrtpKeys {
            profile,
            local_key: a,
            local_salt: sa,
            remote_key: b,
            remote_salt: sb,
        }
    }
}

fn pair(profile: SrtpProfile, backend: Backend) -> (SrtpSession, SrtpSession) {
    (
        SrtpSession::with_backend(&keys(profile, false), backend).unwrap(),
        SrtpSession::with_backend(&keys(profile, true), backend).unwrap(),
    )
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7]);
    p.extend_from_slice(b"payload");
    p
}

fn rtcp(n: u8) -> Vec<u8> {
    // A receiver report with no blocks, then some APP bytes.
    let mut p = vec![0x80, 201, 0, 1, 0, 0, 0, 7];
    p.extend_from_slice(&[0x80, 204, 0, 2, 0, 0, 0, 7, b'w', b'e', b'i', n]);
    p
}

#[test]
fn round_trip_rejects_replay_and_wrong_key() {
    for profile in PROFILES {
        let mut alice = SrtpSession::new(&keys(profile, false)).unwrap();
        let mut bob = SrtpSession::new(&keys(profile, true)).unwrap();
        let mut sealed = Vec::new();
        let mut plain = Vec::new();
        alice.encrypt_rtp(&rtp(1), &mut sealed).unwrap();
        bob.decrypt_rtp(&sealed, &mut plain).unwrap();
        assert_eq!(plain, rtp(1));
        // The same packet again is a replay.
        assert!(matches!(
            bob.decrypt_rtp(&sealed, &mut plain),
            Err(SrtpError::Replayed)
        ));
        // A session with other keys cannot authenticate it.
        let mut eve = SrtpSession::new(&keys(profile, false)).unwrap();
        alice.encrypt_rtp(&rtp(2), &mut sealed).unwrap();
        assert!(matches!(
            eve.decrypt_rtp(&sealed, &mut plain),
            Err(SrtpError::Authentication)
        ));
    }
}

#[test]
fn backends_agree_byte_for_byte() {
    for profile in PROFILES {
        for other in &backends()[1..] {
            let (mut a, _) = pair(profile, Backend::Ring);
            let (mut b, _) = pair(profile, *other);
            let (mut x, mut y) = (Vec::new(), Vec::new());
            for seq in [0u16, 1, 65535, 3] {
                a.encrypt_rtp(&rtp(seq), &mut x).unwrap();
                b.encrypt_rtp(&rtp(seq), &mut y).unwrap();
                assert_eq!(x, y, "{other:?}");
                a.encrypt_rtcp(&rtcp(seq as u8), &mut x).unwrap();
                b.encrypt_rtcp(&rtcp(seq as u8), &mut y).unwrap();
                assert_eq!(x, y, "{other:?}");
            }
        }
    }
}

#[test]
fn in_place_and_into_round_trip_rtp_and_rtcp() {
    for profile in PROFILES {
        for backend in backends() {
            let (mut alice, mut bob) = pair(profile, backend);
            let mut out = [0u8; 256];
            for seq in 10..20u16 {
                let plain = rtp(seq);
                let n = alice.encrypt_rtp_into(&plain, &mut out).unwrap();
                assert_eq!(n, plain.len() + profile.tag_len());
                assert_ne!(out[12..plain.len()], plain[12..], "payload is encrypted");
                let m = bob.decrypt_rtp_in_place(&mut out[..n]).unwrap();
                assert_eq!(out[..m], plain[..]);

                let plain = rtcp(seq as u8);
                let n = alice.encrypt_rtcp_into(&plain, &mut out).unwrap();
                assert_eq!(n, plain.len() + profile.srtcp_overhead());
                assert_ne!(out[8..plain.len()], plain[8..], "RTCP is encrypted");
                let m = bob.decrypt_rtcp_in_place(&mut out[..n]).unwrap();
                assert_eq!(out[..m], plain[..]);
            }
        }
    }
}

#[test]
fn output_buffer_too_small_is_an_error() {
    for profile in PROFILES {
        let (mut alice, _) = pair(profile, Backend::Ring);
        let plain = rtp(1);
        let mut out = vec![0u8; plain.len() + profile.tag_len() - 1];
        assert!(matches!(
            alice.encrypt_rtp_into(&plain, &mut out),
            Err(SrtpError::BufferTooSmall { .. })
        ));
        let plain = rtcp(1);
        let mut out = vec![0u8; plain.len() + profile.srtcp_overhead() - 1];
        assert!(matches!(
            alice.encrypt_rtcp_into(&plain, &mut out),
            Err(SrtpError::BufferTooSmall { .. })
        ));
    }
}

/// Sequence numbers wrap from 65535 to 0 and the ROC follows on both sides,
/// including a packet from before the wrap that arrives after it.
#[test]
fn roc_rolls_over_across_65535() {
    for profile in PROFILES {
        for backend in backends() {
            let (mut alice, mut bob) = pair(profile, backend);
            let (mut wire, mut plain) = (Vec::new(), Vec::new());
            let mut late = Vec::new();
            for seq in (65530..=65535u16).chain(0..6) {
                alice.encrypt_rtp(&rtp(seq), &mut wire).unwrap();
                if seq == 65534 {
                    late = wire.clone();
                    continue;
                }
                bob.decrypt_rtp(&wire, &mut plain).unwrap();
                assert_eq!(plain, rtp(seq));
            }
            // ROC 0, SEQ 65534 after ROC 1 packets: still authenticates.
            bob.decrypt_rtp(&late, &mut plain).unwrap();
            assert_eq!(plain, rtp(65534));
            // The same SEQ sent a second time round (ROC 1) is another packet.
            for seq in 6..=65534u16 {
                alice.encrypt_rtp(&rtp(seq), &mut wire).unwrap();
            }
            assert_ne!(wire, late);
        }
    }
}

#[test]
fn replay_and_out_of_window_are_rejected() {
    for profile in PROFILES {
        let (mut alice, mut bob) = pair(profile, Backend::Ring);
        let (mut wire, mut plain) = (Vec::new(), Vec::new());
        let mut sealed = Vec::new();
        for seq in 0..2000u16 {
            alice.encrypt_rtp(&rtp(seq), &mut wire).unwrap();
            sealed.push(wire.clone());
        }
        // Deliver 1000..2000 first, then the older ones.
        for p in &sealed[1000..2000] {
            bob.decrypt_rtp(p, &mut plain).unwrap();
        }
        // 1999 - 976 = 1023 is the oldest index in the window.
        bob.decrypt_rtp(&sealed[976], &mut plain).unwrap();
        assert!(matches!(
            bob.decrypt_rtp(&sealed[975], &mut plain),
            Err(SrtpError::TooOld)
        ));
        assert!(matches!(
            bob.decrypt_rtp(&sealed[976], &mut plain),
            Err(SrtpError::Replayed)
        ));
        assert!(matches!(
            bob.decrypt_rtp(&sealed[1500], &mut plain),
            Err(SrtpError::Replayed)
        ));

        // SRTCP likewise, on its explicit index.
        let mut sealed = Vec::new();
        for i in 0..1100u32 {
            alice.encrypt_rtcp(&rtcp(i as u8), &mut wire).unwrap();
            sealed.push(wire.clone());
        }
        bob.decrypt_rtcp(&sealed[1099], &mut plain).unwrap();
        bob.decrypt_rtcp(&sealed[500], &mut plain).unwrap();
        assert!(matches!(
            bob.decrypt_rtcp(&sealed[500], &mut plain),
            Err(SrtpError::Replayed)
        ));
        assert!(matches!(
            bob.decrypt_rtcp(&sealed[1099], &mut plain),
            Err(SrtpError::Replayed)
        ));
        assert!(matches!(
            bob.decrypt_rtcp(&sealed[10], &mut plain),
            Err(SrtpError::TooOld)
        ));
    }
}

/// A forged packet is rejected and leaves the state as it was: the genuine
/// packet with that index still goes through.
#[test]
fn tampering_is_rejected_without_touching_state() {
    for profile in PROFILES {
        for backend in backends() {
            let (mut alice, mut bob) = pair(profile, backend);
            let (mut wire, mut plain) = (Vec::new(), Vec::new());
            alice.encrypt_rtp(&rtp(7), &mut wire).unwrap();
            for i in 0..wire.len() {
                let mut bad = wire.clone();
                bad[i] ^= 0x04;
                assert!(bob.decrypt_rtp(&bad, &mut plain).is_err(), "byte {i}");
            }
            bob.decrypt_rtp(&wire, &mut plain).unwrap();
            assert_eq!(plain, rtp(7));

            alice.encrypt_rtcp(&rtcp(1), &mut wire).unwrap();
            for i in 0..wire.len() {
                let mut bad = wire.clone();
                bad[i] ^= 0x04;
                assert!(bob.decrypt_rtcp(&bad, &mut plain).is_err(), "byte {i}");
            }
            bob.decrypt_rtcp(&wire, &mut plain).unwrap();
            assert_eq!(plain, rtcp(1));
        }
    }
}

/// Unencrypted SRTCP (E flag clear) is accepted when authentic.
#[test]
fn srtcp_without_encryption_is_authenticated() {
    for profile in PROFILES {
        for backend in backends() {
            let (mut alice, mut bob) = pair(profile, backend);
            let mut out = [0u8; 128];
            let plain = rtcp(3);
            let n = alice.protect_rtcp(&plain, &mut out, false).unwrap();
            assert_eq!(out[..plain.len()], plain[..], "sent in the clear");
            let mut bad = out;
            bad[9] ^= 1;
            assert!(bob.decrypt_rtcp_in_place(&mut bad[..n]).is_err());
            let m = bob.decrypt_rtcp_in_place(&mut out[..n]).unwrap();
            assert_eq!(out[..m], plain[..]);
        }
    }
}

#[test]
fn header_extension_and_csrcs_stay_in_the_clear() {
    for profile in PROFILES {
        let (mut alice, mut bob) = pair(profile, Backend::Ring);
        // Two CSRCs, a one-word extension, then payload.
        let mut p = vec![
            0x92, 96, 0, 9, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2,
        ];
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
        p.extend_from_slice(b"media");
        let mut out = [0u8; 64];
        let n = alice.encrypt_rtp_into(&p, &mut out).unwrap();
        assert_eq!(out[..28], p[..28]);
        assert_ne!(out[28..33], p[28..]);
        let m = bob.decrypt_rtp_in_place(&mut out[..n]).unwrap();
        assert_eq!(out[..m], p[..]);
        // An extension that claims more than the packet holds is malformed.
        let mut q = p.clone();
        q[22..24].copy_from_slice(&[0, 200]);
        assert!(matches!(
            alice.encrypt_rtp_into(&q, &mut out),
            Err(SrtpError::Malformed(_))
        ));
    }
}

#[test]
fn wrong_key_lengths_are_setup_errors() {
    let mut k = keys(SrtpProfile::AeadAes128Gcm, false);
    k.local_salt.push(0);
    assert!(matches!(SrtpSession::new(&k), Err(SrtpError::Setup(_))));
    let mut k = keys(SrtpProfile::Aes128CmHmacSha1_80, false);
    k.remote_key.pop();
    assert!(matches!(SrtpSession::new(&k), Err(SrtpError::Setup(_))));
}

// ---- Index estimation and replay window ----

#[test]
fn index_estimation_follows_rfc3711() {
    // Before any rollover: a large jump back stays at ROC 0.
    assert_eq!(estimate_index(100, 65000).unwrap(), 65000);
    // Near the top, a small SEQ is the next ROC.
    assert_eq!(estimate_index(65530, 3).unwrap(), (1 << 16) | 3);
    // Just after a rollover, a large SEQ is the previous ROC.
    assert_eq!(estimate_index((1 << 16) | 3, 65530).unwrap(), 65530);
    assert_eq!(estimate_index((5 << 16) | 10, 11).unwrap(), (5 << 16) | 11);
    // The ROC cannot pass 32 bits.
    assert!(matches!(
        estimate_index((1 << 48) - 2, 3),
        Err(SrtpError::IndexExhausted)
    ));
}

#[test]
fn replay_window_slides() {
    let mut w = ReplayWindow::new(5);
    assert!(matches!(w.check(5), Err(SrtpError::Replayed)));
    w.check(4).unwrap();
    w.accept(4);
    w.accept(5000);
    assert!(matches!(w.check(5), Err(SrtpError::TooOld)));
    w.check(4999).unwrap();
    // A slot reused after the window moved reads as unseen.
    w.accept(5000 + 1024 + 3);
    w.check(5000 + 1024 + 2).unwrap();
    assert!(matches!(w.check(5000 + 1024 + 3), Err(SrtpError::Replayed)));
}

proptest! {
    /// Whatever arrives, decrypting returns an error instead of panicking.
    #[test]
    fn decrypt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200), gcm in any::<bool>()) {
        let profile = if gcm { SrtpProfile::AeadAes128Gcm } else { SrtpProfile::Aes128CmHmacSha1_80 };
        let mut s = SrtpSession::new(&keys(profile, false)).unwrap();
        let mut out = Vec::new();
        let _ = s.decrypt_rtp(&data, &mut out);
        let _ = s.decrypt_rtcp(&data, &mut out);
        let mut rtcp = vec![0x80, 200, 0, 1];
        rtcp.extend_from_slice(&data);
        let _ = s.decrypt_rtcp(&rtcp, &mut out);
        let mut rtp = vec![0x80, 96];
        rtp.extend_from_slice(&data);
        let _ = s.decrypt_rtp(&rtp, &mut out);
        let mut buf = data.clone();
        let _ = s.decrypt_rtp_in_place(&mut buf);
        let mut buf = data.clone();
        let _ = s.decrypt_rtcp_in_place(&mut buf);
        let mut out = [0u8; 256];
        let _ = s.encrypt_rtp_into(&data, &mut out);
        let _ = s.encrypt_rtcp_into(&data, &mut out);
    }

    /// Any sequence order within the window decrypts exactly once.
    #[test]
    fn reordered_packets_decrypt_once(order in Just((0..300u16).collect::<Vec<_>>()).prop_shuffle(), start in any::<u16>(), gcm in any::<bool>()) {
        let profile = if gcm { SrtpProfile::AeadAes128Gcm } else { SrtpProfile::Aes128CmHmacSha1_80 };
        let (mut alice, mut bob) = pair(profile, profile.default_backend());
        let mut sealed = Vec::new();
        let mut wire = Vec::new();
        for i in 0..300u16 {
            alice.encrypt_rtp(&rtp(start.wrapping_add(i)), &mut wire).unwrap();
            sealed.push(wire.clone());
        }
        // Deliver the first in order so the receiver's ROC starts right.
        let mut plain = Vec::new();
        bob.decrypt_rtp(&sealed[0], &mut plain).unwrap();
        for &i in order.iter().filter(|&&i| i != 0) {
            bob.decrypt_rtp(&sealed[i as usize], &mut plain).unwrap();
            prop_assert_eq!(&plain, &rtp(start.wrapping_add(i)));
        }
        for p in &sealed {
            prop_assert!(bob.decrypt_rtp(p, &mut plain).is_err());
        }
    }
}
