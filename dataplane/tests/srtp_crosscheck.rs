//! Cross-checks the in-place SRTP against webrtc-srtp 0.17, the
//! implementation it replaces, in both directions on random packets.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;
use weir_dataplane::srtp::{Backend, SrtpKeys, SrtpProfile, SrtpSession};

const PROFILES: [SrtpProfile; 2] = [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80];
fn backends() -> Vec<Backend> {
    #[allow(unused_mut)]
    let mut v = vec![Backend::Ring, Backend::RustCrypto];
    #[cfg(feature = "aws-lc-rs")]
    v.push(Backend::AwsLc);
    v
}

fn webrtc_profile(p: SrtpProfile) -> ProtectionProfile {
    match p {
        SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        SrtpProfile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
    }
}

/// Our keys, and webrtc-srtp contexts for the peer: one that encrypts with
/// our remote keys and one that decrypts with our local keys.
fn setup(
    profile: SrtpProfile,
    backend: Backend,
    rng: &mut StdRng,
) -> (SrtpSession, Context, Context) {
    let mut bytes = |n: usize| (0..n).map(|_| rng.gen()).collect::<Vec<u8>>();
    let keys = SrtpKeys {
        profile,
        local_key: bytes(profile.key_len()),
        local_salt: bytes(profile.salt_len()),
        remote_key: bytes(profile.key_len()),
        remote_salt: bytes(profile.salt_len()),
    };
    let ours = SrtpSession::with_backend(&keys, backend).unwrap();
    let p = webrtc_profile(profile);
    let peer_tx = Context::new(&keys.remote_key, &keys.remote_salt, p, None, None).unwrap();
    let peer_rx = Context::new(&keys.local_key, &keys.local_salt, p, None, None).unwrap();
    (ours, peer_tx, peer_rx)
}

/// A random RTP packet: CSRCs, maybe a one-byte-header extension, payload.
fn random_rtp(rng: &mut StdRng, ssrc: u32, seq: u16) -> Vec<u8> {
    let cc = rng.gen_range(0..3u8);
    let ext = rng.gen_bool(0.5);
    let mut p = vec![
        0x80 | cc | if ext { 0x10 } else { 0 },
        rng.gen_range(96..128),
    ];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&rng.gen::<u32>().to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    for _ in 0..cc {
        p.extend_from_slice(&rng.gen::<u32>().to_be_bytes());
    }
    if ext {
        // One element: id 1, two bytes, then padding to the word.
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x11, rng.gen(), rng.gen(), 0]);
    }
    let n = rng.gen_range(1..1300);
    p.extend((0..n).map(|_| rng.gen::<u8>()));
    p
}

/// A random RTCP compound: a sender report head with `ssrc`, then bytes.
fn random_rtcp(rng: &mut StdRng, ssrc: u32) -> Vec<u8> {
    let words = rng.gen_range(1..60u16);
    let mut p = vec![0x80, 200];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..usize::from(words) * 4).map(|_| rng.gen::<u8>()));
    p
}

/// Sequence numbers from near the top, across the wrap, with small gaps.
fn sequence(rng: &mut StdRng, n: usize) -> Vec<u16> {
    let mut seq = 65_000u16.wrapping_add(rng.gen_range(0..400));
    (0..n)
        .map(|_| {
            seq = seq.wrapping_add(rng.gen_range(1..4));
            seq
        })
        .collect()
}

#[test]
fn rtp_matches_webrtc_srtp_both_ways() {
    let mut rng = StdRng::seed_from_u64(0x5e7f);
    for profile in PROFILES {
        for backend in backends() {
            let (mut ours, mut peer_tx, mut peer_rx) = setup(profile, backend, &mut rng);
            let ssrcs = [rng.gen::<u32>(), rng.gen::<u32>()];
            let mut buf = vec![0u8; 1500];
            for (k, seq) in sequence(&mut rng, 600).into_iter().enumerate() {
                let ssrc = ssrcs[k % 2];
                let plain = random_rtp(&mut rng, ssrc, seq);
                // Ours out, theirs in; and the same bytes as theirs out.
                let n = ours.encrypt_rtp_into(&plain, &mut buf).unwrap();
                let theirs = peer_rx.decrypt_rtp(&buf[..n]).unwrap();
                assert_eq!(&theirs[..], &plain[..], "{profile:?} {backend:?} seq {seq}");
                // Theirs out, ours in.
                let sealed = peer_tx.encrypt_rtp(&plain).unwrap();
                let mut wire = sealed.to_vec();
                let m = ours.decrypt_rtp_in_place(&mut wire).unwrap();
                assert_eq!(&wire[..m], &plain[..], "{profile:?} {backend:?} seq {seq}");
            }
        }
    }
}

#[test]
fn rtp_ciphertext_is_identical_to_webrtc_srtp() {
    let mut rng = StdRng::seed_from_u64(7);
    for profile in PROFILES {
        let keys = SrtpKeys {
            profile,
            local_key: vec![9; profile.key_len()],
            local_salt: vec![8; profile.salt_len()],
            remote_key: vec![7; profile.key_len()],
            remote_salt: vec![6; profile.salt_len()],
        };
        let mut ours = SrtpSession::new(&keys).unwrap();
        let mut theirs = Context::new(
            &keys.local_key,
            &keys.local_salt,
            webrtc_profile(profile),
            None,
            None,
        )
        .unwrap();
        let mut out = Vec::new();
        for seq in sequence(&mut rng, 300) {
            let plain = random_rtp(&mut rng, 0x1234_5678, seq);
            ours.encrypt_rtp(&plain, &mut out).unwrap();
            assert_eq!(out, theirs.encrypt_rtp(&plain).unwrap().to_vec());
        }
    }
}

#[test]
fn rtcp_matches_webrtc_srtp_both_ways() {
    let mut rng = StdRng::seed_from_u64(0xc0ffee);
    for profile in PROFILES {
        for backend in backends() {
            let (mut ours, mut peer_tx, mut peer_rx) = setup(profile, backend, &mut rng);
            let mut buf = vec![0u8; 1500];
            for k in 0..300u32 {
                let plain = random_rtcp(&mut rng, 1000 + k % 3);
                let n = ours.encrypt_rtcp_into(&plain, &mut buf).unwrap();
                let theirs = peer_rx.decrypt_rtcp(&buf[..n]).unwrap();
                assert_eq!(&theirs[..], &plain[..], "{profile:?} {backend:?} #{k}");
                let mut wire = peer_tx.encrypt_rtcp(&plain).unwrap().to_vec();
                let m = ours.decrypt_rtcp_in_place(&mut wire).unwrap();
                assert_eq!(&wire[..m], &plain[..], "{profile:?} {backend:?} #{k}");
            }
        }
    }
}
