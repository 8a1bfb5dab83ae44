//! SRTP per-packet cost: Weir's in-place implementation on each primitive
//! backend against webrtc-srtp 0.17 (what Weir used before) and rtc-srtp
//! 0.21 (webrtc-rs's sans-IO crate, ring provider).
//!
//! `cargo bench -p weir-dataplane --bench srtp [--features aws-lc-rs]`;
//! figures in `bench/RESULTS.md (SRTP section)`.
//! Each iteration is one packet; criterion's time is ns per packet.
//! `SRTP_BENCH=rounds` prints the min-of-rounds table instead (see [`rounds`]).

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use weir_dataplane::srtp::{Backend, SrtpKeys, SrtpProfile, SrtpSession};

/// Media packet size of the forwarding benchmarks.
const RTP_LEN: usize = 1200;
/// A compound RTCP packet (SR + SDES) of typical size.
const RTCP_LEN: usize = 100;
const REPLAY_WINDOW: usize = 1024;

const PROFILES: [(SrtpProfile, &str); 2] = [
    (SrtpProfile::AeadAes128Gcm, "gcm"),
    (SrtpProfile::Aes128CmHmacSha1_80, "cm_sha1_80"),
];

fn keys(profile: SrtpProfile) -> SrtpKeys {
    SrtpKeys {
        profile,
        local_key: vec![0x2b; profile.key_len()],
        local_salt: vec![0x7e; profile.salt_len()],
        remote_key: vec![0x2b; profile.key_len()],
        remote_salt: vec![0x7e; profile.salt_len()],
    }
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x90, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0x12, 0x34, 0x56, 0x78]);
    // An abs-send-time style one-byte extension, as browsers send.
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x32, 1, 2, 3]);
    p.resize(RTP_LEN, 0xa5);
    p
}

fn rtcp() -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6, 0x12, 0x34, 0x56, 0x78];
    p.resize(28, 0x11);
    p.extend_from_slice(&[0x81, 202, 0, 17, 0x12, 0x34, 0x56, 0x78]);
    p.resize(RTCP_LEN, 0x22);
    p
}

fn set_seq(p: &mut [u8], seq: u16) {
    p[2..4].copy_from_slice(&seq.to_be_bytes());
}

fn webrtc_profile(p: SrtpProfile) -> webrtc_srtp::protection_profile::ProtectionProfile {
    use webrtc_srtp::protection_profile::ProtectionProfile as P;
    if p == SrtpProfile::AeadAes128Gcm {
        P::AeadAes128Gcm
    } else {
        P::Aes128CmHmacSha1_80
    }
}

fn rtc_profile(p: SrtpProfile) -> rtc_srtp::protection_profile::ProtectionProfile {
    use rtc_srtp::protection_profile::ProtectionProfile as P;
    if p == SrtpProfile::AeadAes128Gcm {
        P::AeadAes128Gcm
    } else {
        P::Aes128CmHmacSha1_80
    }
}

fn webrtc_ctx(p: SrtpProfile, inbound: bool) -> webrtc_srtp::context::Context {
    use webrtc_srtp::option::*;
    let k = keys(p);
    let (a, b) = if inbound {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    webrtc_srtp::context::Context::new(&k.local_key, &k.local_salt, webrtc_profile(p), a, b)
        .unwrap()
}

fn rtc_ctx(p: SrtpProfile, inbound: bool) -> rtc_srtp::context::Context {
    use rtc_srtp::option::*;
    let k = keys(p);
    let (a, b) = if inbound {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    let crypto = rtc_srtp::crypto::providers::RingCrypto;
    rtc_srtp::context::Context::new(&k.local_key, &k.local_salt, rtc_profile(p), a, b, &crypto)
        .unwrap()
}

/// Weir's backends; aws-lc-rs only with `--features aws-lc-rs`.
fn weir_backends() -> Vec<(Backend, &'static str)> {
    #[allow(unused_mut)]
    let mut v = vec![
        (Backend::Ring, "weir_ring"),
        (Backend::RustCrypto, "weir_rustcrypto"),
    ];
    #[cfg(feature = "aws-lc-rs")]
    v.push((Backend::AwsLc, "weir_aws_lc"));
    v
}

/// Seals the next packet of a fresh stream, so that each receiver under
/// test starts at ROC 0 and sees every packet once, in order.
fn rtp_source(profile: SrtpProfile) -> impl FnMut() -> Vec<u8> {
    let mut sender = SrtpSession::new(&keys(profile)).unwrap();
    let mut plain = rtp(0);
    let mut seq = 0u16;
    move || {
        seq = seq.wrapping_add(1);
        set_seq(&mut plain, seq);
        let mut v = Vec::with_capacity(1500);
        sender.encrypt_rtp(&plain, &mut v).unwrap();
        v
    }
}

fn rtcp_source(profile: SrtpProfile) -> impl FnMut() -> Vec<u8> {
    let mut sender = SrtpSession::new(&keys(profile)).unwrap();
    let plain = rtcp();
    move || {
        let mut v = Vec::with_capacity(256);
        sender.encrypt_rtcp(&plain, &mut v).unwrap();
        v
    }
}

fn rtp_encrypt(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_encrypt_rtp_1200");
    g.throughput(Throughput::Elements(1));
    for (profile, name) in PROFILES {
        for (backend, bname) in weir_backends() {
            let mut s = SrtpSession::with_backend(&keys(profile), backend).unwrap();
            let mut plain = rtp(0);
            let mut out = vec![0u8; 1500];
            let mut seq = 0u16;
            g.bench_function(format!("{name}/{bname}"), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    set_seq(&mut plain, seq);
                    s.encrypt_rtp_into(&plain, &mut out).unwrap()
                })
            });
        }
        let mut ctx = webrtc_ctx(profile, false);
        let mut plain = rtp(0);
        let mut seq = 0u16;
        g.bench_function(format!("{name}/webrtc_srtp_0.17"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                set_seq(&mut plain, seq);
                ctx.encrypt_rtp(&plain).unwrap()
            })
        });
        let mut ctx = rtc_ctx(profile, false);
        g.bench_function(format!("{name}/rtc_srtp_0.21"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                set_seq(&mut plain, seq);
                ctx.encrypt_rtp(&plain).unwrap()
            })
        });
    }
    g.finish();
}

/// Decryption needs a fresh packet each time (replay protection), so a
/// sender outside the timed part seals the next sequence number.
fn rtp_decrypt(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_decrypt_rtp_1200");
    g.throughput(Throughput::Elements(1));
    for (profile, name) in PROFILES {
        for (backend, bname) in weir_backends() {
            let mut s = SrtpSession::with_backend(&keys(profile), backend).unwrap();
            let mut src = rtp_source(profile);
            g.bench_function(format!("{name}/{bname}"), |b| {
                b.iter_batched_ref(
                    &mut src,
                    |p| s.decrypt_rtp_in_place(p).unwrap(),
                    BatchSize::SmallInput,
                )
            });
        }
        let mut ctx = webrtc_ctx(profile, true);
        let mut src = rtp_source(profile);
        g.bench_function(format!("{name}/webrtc_srtp_0.17"), |b| {
            b.iter_batched_ref(
                &mut src,
                |p| ctx.decrypt_rtp(p).unwrap(),
                BatchSize::SmallInput,
            )
        });
        let mut ctx = rtc_ctx(profile, true);
        let mut src = rtp_source(profile);
        g.bench_function(format!("{name}/rtc_srtp_0.21"), |b| {
            b.iter_batched_ref(
                &mut src,
                |p| ctx.decrypt_rtp(p).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn rtcp_both(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtcp_100");
    g.throughput(Throughput::Elements(1));
    for (profile, name) in PROFILES {
        let plain = rtcp();
        for (backend, bname) in weir_backends() {
            let mut s = SrtpSession::with_backend(&keys(profile), backend).unwrap();
            let mut out = vec![0u8; 1500];
            g.bench_function(format!("encrypt/{name}/{bname}"), |b| {
                b.iter(|| s.encrypt_rtcp_into(&plain, &mut out).unwrap())
            });
        }
        let mut ctx = webrtc_ctx(profile, false);
        g.bench_function(format!("encrypt/{name}/webrtc_srtp_0.17"), |b| {
            b.iter(|| ctx.encrypt_rtcp(&plain).unwrap())
        });
        let mut ctx = rtc_ctx(profile, false);
        g.bench_function(format!("encrypt/{name}/rtc_srtp_0.21"), |b| {
            b.iter(|| ctx.encrypt_rtcp(&plain).unwrap())
        });

        for (backend, bname) in weir_backends() {
            let mut s = SrtpSession::with_backend(&keys(profile), backend).unwrap();
            let mut src = rtcp_source(profile);
            g.bench_function(format!("decrypt/{name}/{bname}"), |b| {
                b.iter_batched_ref(
                    &mut src,
                    |p| s.decrypt_rtcp_in_place(p).unwrap(),
                    BatchSize::SmallInput,
                )
            });
        }
        let mut ctx = webrtc_ctx(profile, true);
        let mut src = rtcp_source(profile);
        g.bench_function(format!("decrypt/{name}/webrtc_srtp_0.17"), |b| {
            b.iter_batched_ref(
                &mut src,
                |p| ctx.decrypt_rtcp(p).unwrap(),
                BatchSize::SmallInput,
            )
        });
        let mut ctx = rtc_ctx(profile, true);
        let mut src = rtcp_source(profile);
        g.bench_function(format!("decrypt/{name}/rtc_srtp_0.21"), |b| {
            b.iter_batched_ref(
                &mut src,
                |p| ctx.decrypt_rtcp(p).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A packet operation under test: runs `n` packets, returns the time taken.
type Timed = Box<dyn FnMut(usize) -> std::time::Duration>;

fn encrypt_variant(mut op: impl FnMut(&[u8]) + 'static) -> Timed {
    let mut plain = rtp(0);
    let mut seq = 0u16;
    Box::new(move |n| {
        let start = std::time::Instant::now();
        for _ in 0..n {
            seq = seq.wrapping_add(1);
            set_seq(&mut plain, seq);
            op(&plain);
        }
        start.elapsed()
    })
}

fn decrypt_variant(profile: SrtpProfile, mut op: impl FnMut(&mut Vec<u8>) + 'static) -> Timed {
    let mut src = rtp_source(profile);
    Box::new(move |n| {
        let mut packets: Vec<Vec<u8>> = (0..n).map(|_| src()).collect();
        let start = std::time::Instant::now();
        for p in &mut packets {
            op(p);
        }
        start.elapsed()
    })
}

/// `SRTP_BENCH=rounds`: the variants take turns in short rounds and each
/// keeps its fastest round. On a shared machine, where criterion's means
/// move with the neighbours' load, the minimum is the stable figure.
fn rounds() {
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 2000;
    for (profile, name) in PROFILES {
        let mut variants: Vec<(String, Timed)> = Vec::new();
        for (backend, bname) in weir_backends() {
            let mut s = SrtpSession::with_backend(&keys(profile), backend).unwrap();
            let mut out = vec![0u8; 1500];
            variants.push((
                format!("encrypt/{name}/{bname}"),
                encrypt_variant(move |p| {
                    s.encrypt_rtp_into(p, &mut out).unwrap();
                }),
            ));
        }
        let mut ctx = webrtc_ctx(profile, false);
        variants.push((
            format!("encrypt/{name}/webrtc_srtp_0.17"),
            encrypt_variant(move |p| {
                ctx.encrypt_rtp(p).unwrap();
            }),
        ));
        let mut ctx = rtc_ctx(profile, false);
        variants.push((
            format!("encrypt/{name}/rtc_srtp_0.21"),
            encrypt_variant(move |p| {
                ctx.encrypt_rtp(p).unwrap();
            }),
        ));
        for (backend, bname) in weir_backends() {
            let mut s = SrtpSession::with_backend(&keys(profile), backend).unwrap();
            variants.push((
                format!("decrypt/{name}/{bname}"),
                decrypt_variant(profile, move |p| {
                    s.decrypt_rtp_in_place(p).unwrap();
                }),
            ));
        }
        let mut ctx = webrtc_ctx(profile, true);
        variants.push((
            format!("decrypt/{name}/webrtc_srtp_0.17"),
            decrypt_variant(profile, move |p| {
                ctx.decrypt_rtp(p).unwrap();
            }),
        ));
        let mut ctx = rtc_ctx(profile, true);
        variants.push((
            format!("decrypt/{name}/rtc_srtp_0.21"),
            decrypt_variant(profile, move |p| {
                ctx.decrypt_rtp(p).unwrap();
            }),
        ));
        let mut best = vec![f64::INFINITY; variants.len()];
        for _ in 0..ROUNDS {
            for (i, (_, v)) in variants.iter_mut().enumerate() {
                let ns = v(PER_ROUND).as_nanos() as f64 / PER_ROUND as f64;
                best[i] = best[i].min(ns);
            }
        }
        for ((label, _), ns) in variants.iter().zip(best) {
            println!("{label:<40} {ns:>8.0} ns/packet (min of {ROUNDS} rounds of {PER_ROUND})");
        }
    }
}

criterion_group!(benches, rtp_encrypt, rtp_decrypt, rtcp_both);

fn main() {
    if std::env::var("SRTP_BENCH").as_deref() == Ok("rounds") {
        rounds();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
