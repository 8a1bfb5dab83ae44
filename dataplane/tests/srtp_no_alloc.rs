//! Proves that the in-place SRTP paths allocate nothing per packet once the
//! SSRCs of a transport are known: a counting global allocator watches a
//! steady stream of encrypt/decrypt calls.
mod common;

use common::counting::{counted, Counting};
use weir_dataplane::srtp::{SrtpKeys, SrtpProfile, SrtpSession};

// Counts the allocations of the thread inside `counted` only: the harness
// and the other test of this file run on other threads.
#[global_allocator]
static GLOBAL: Counting = Counting;

fn keys(profile: SrtpProfile, flip: bool) -> SrtpKeys {
    let (a, b) = (vec![0x11; profile.key_len()], vec![0x22; profile.key_len()]);
    let (sa, sb) = (
        vec![0x33; profile.salt_len()],
        vec![0x44; profile.salt_len()],
    );
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

fn rtp(ssrc: u32, seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x10, 0]);
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(len, 0xab);
    p
}

fn rtcp(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 7];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.resize(32, 0x5a);
    p
}

#[test]
fn steady_state_rtp_and_rtcp_allocate_nothing() {
    // The counter sees allocations at all.
    assert_eq!(
        counted(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(64)))).1,
        1
    );
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let mut sfu = SrtpSession::new(&keys(profile, false)).unwrap();
        let mut peer = SrtpSession::new(&keys(profile, true)).unwrap();
        let ssrcs = [0xa0a0_0001u32, 0xa0a0_0002, 0xa0a0_0003];
        // Packets are built before counting; the send and receive buffers
        // stand for the ones the IO driver leases.
        let packets: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| rtp(ssrcs[i as usize % 3], 65000u16.wrapping_add(i as u16), 1200))
            .collect();
        let reports: Vec<Vec<u8>> = ssrcs.iter().map(|&s| rtcp(s)).collect();
        let mut send = vec![0u8; 1500];
        let mut recv = vec![0u8; 1500];

        let mut step = |i: usize, sfu: &mut SrtpSession, peer: &mut SrtpSession| {
            let n = sfu.encrypt_rtp_into(&packets[i], &mut send).unwrap();
            recv[..n].copy_from_slice(&send[..n]);
            let m = peer.decrypt_rtp_in_place(&mut recv[..n]).unwrap();
            assert_eq!(m, packets[i].len());
            let r = &reports[i % 3];
            let n = peer.encrypt_rtcp_into(r, &mut send).unwrap();
            recv[..n].copy_from_slice(&send[..n]);
            sfu.decrypt_rtcp_in_place(&mut recv[..n]).unwrap();
        };
        // Warm-up: every SSRC gets its state.
        for i in 0..30 {
            step(i, &mut sfu, &mut peer);
        }
        // Steady state, across the sequence number wrap.
        let ((), allocations) = counted(|| {
            for i in 30..packets.len() {
                step(i, &mut sfu, &mut peer);
            }
        });
        assert_eq!(allocations, 0, "{profile:?}: steady-state SRTP allocated");
    }
}

#[test]
fn rejecting_forged_packets_allocates_nothing() {
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let mut sfu = SrtpSession::new(&keys(profile, false)).unwrap();
        let mut forged = rtp(7, 1, 1200);
        forged.extend_from_slice(&[0; 16]);
        let mut junk = vec![0u8; 100];
        let ((), allocations) = counted(|| {
            for _ in 0..1000 {
                let mut buf = forged.clone_from_slice_free();
                assert!(sfu.decrypt_rtp_in_place(&mut buf[..]).is_err());
                assert!(sfu.decrypt_rtcp_in_place(&mut junk).is_err());
            }
        });
        assert_eq!(allocations, 0, "{profile:?}: rejection allocated");
    }
}

/// A copy into a fixed array, so that the loop above allocates nothing itself.
trait CloneFree {
    fn clone_from_slice_free(&self) -> [u8; 1216];
}

impl CloneFree for Vec<u8> {
    fn clone_from_slice_free(&self) -> [u8; 1216] {
        let mut a = [0u8; 1216];
        a.copy_from_slice(self);
        a
    }
}
