//! SRTP/SRTCP unprotect on hostile bytes and on genuine packets with
//! fuzzer-chosen SSRCs, sequence numbers, corruption and replays, so that
//! index estimation and the replay window are driven too. Checks: no panic,
//! genuine packets decrypt to what was sent, an accepted packet replayed
//! is rejected.
#![no_main]
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use weir_dataplane::srtp::{SrtpKeys, SrtpProfile, SrtpSession};

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

fn keys(profile: SrtpProfile, flip: bool) -> SrtpKeys {
    let (a, b) = (vec![1u8; profile.key_len()], vec![2u8; profile.key_len()]);
    let (sa, sb) = (vec![3u8; profile.salt_len()], vec![4u8; profile.salt_len()]);
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

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let profile = if u.arbitrary()? {
        SrtpProfile::AeadAes128Gcm
    } else {
        SrtpProfile::Aes128CmHmacSha1_80
    };
    let mut sfu = SrtpSession::new(&keys(profile, false)).expect("valid keys");
    let mut peer = SrtpSession::new(&keys(profile, true)).expect("valid keys");
    let mut buf = [0u8; 2048];
    let mut accepted: Option<(bool, Vec<u8>)> = None;
    while !u.is_empty() {
        match u.int_in_range(0..=4u8)? {
            // Raw bytes as SRTP, then as SRTCP.
            op @ (0 | 1) => {
                let len = u.int_in_range(0..=1500usize)?;
                let bytes = u.bytes(len)?;
                buf[..len].copy_from_slice(bytes);
                let _ = if op == 0 {
                    sfu.decrypt_rtp_in_place(&mut buf[..len])
                } else {
                    sfu.decrypt_rtcp_in_place(&mut buf[..len])
                };
            }
            // A genuine packet, maybe corrupted in one byte.
            op @ (2 | 3) => {
                let rtp = op == 2;
                let ssrc: u32 = u.int_in_range(1..=4)?;
                let body_len = u.int_in_range(0..=1200usize)?;
                let mut plain = if rtp {
                    let mut p = vec![0x80, 96];
                    p.extend_from_slice(&u.arbitrary::<u16>()?.to_be_bytes());
                    p.extend_from_slice(&[0, 0, 0, 0]);
                    p
                } else {
                    vec![0x80, 200, 0, 0]
                };
                plain.extend_from_slice(&ssrc.to_be_bytes());
                plain.extend_from_slice(u.bytes(body_len)?);
                let sealed = if rtp {
                    peer.encrypt_rtp_into(&plain, &mut buf)
                } else {
                    peer.encrypt_rtcp_into(&plain, &mut buf)
                };
                let Ok(n) = sealed else { continue };
                let flip: Option<(u16, u8)> = u.arbitrary()?;
                if let Some((at, bits)) = flip {
                    buf[usize::from(at) % n] ^= bits;
                }
                let wire = buf[..n].to_vec();
                let opened = if rtp {
                    sfu.decrypt_rtp_in_place(&mut buf[..n])
                } else {
                    sfu.decrypt_rtcp_in_place(&mut buf[..n])
                };
                if let Ok(m) = opened {
                    if flip.is_none_or(|(_, bits)| bits == 0) {
                        assert_eq!(
                            buf[..m],
                            plain[..],
                            "genuine packet decrypts to what was sent"
                        );
                    }
                    accepted = Some((rtp, wire));
                }
            }
            // Replay the last accepted packet.
            _ => {
                if let Some((rtp, wire)) = &accepted {
                    let n = wire.len();
                    buf[..n].copy_from_slice(wire);
                    let again = if *rtp {
                        sfu.decrypt_rtp_in_place(&mut buf[..n])
                    } else {
                        sfu.decrypt_rtcp_in_place(&mut buf[..n])
                    };
                    assert!(again.is_err(), "a replayed packet is rejected");
                }
            }
        }
    }
    Ok(())
}
