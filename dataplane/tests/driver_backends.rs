//! The driver over real UDP on 127.0.0.1, once per IO backend: ICE answers,
//! batches from many sockets, GSO-split datagrams, backend choice and
//! shutdown. io_uring cases are skipped, with the probe's reason, where the
//! kernel or sandbox does not allow it.
mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::srtp_keys;
use weir_dataplane::core::Codec;
use weir_dataplane::counters::TransportCounters;
use weir_dataplane::driver::{DataPlaneConfig, IoBackendChoice, IoOptions};
use weir_dataplane::ice::stun::{write_binding_request, IceRoleAttr, StunClass, StunMessage};
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::io::detect;
use weir_dataplane::srtp::{SrtpProfile, SrtpSession};
use weir_dataplane::{CoreInput, DataPlane, InboundSpec, Kind, SessionEvent, SubscriberSpec};

const WAIT: Duration = Duration::from_secs(5);

/// Whether the io_uring cases run with multishot receive (the default) or
/// with single-shot `recvmsg`; set per test module.
#[derive(Clone, Copy)]
struct Variant {
    backend: IoBackendChoice,
    multishot: bool,
}

fn start(v: Variant, cores: usize, gso: bool) -> Option<DataPlane> {
    if v.backend == IoBackendChoice::IoUring {
        if let Err(why) = &detect::features().io_uring {
            eprintln!("skipping io_uring case: {why}");
            return None;
        }
    }
    let mut io_options = IoOptions::default();
    io_options.gso = gso;
    io_options.multishot_recv = v.multishot;
    let config = DataPlaneConfig {
        base_port: 0,
        cores,
        io_backend: v.backend,
        io_options,
        ..DataPlaneConfig::default()
    };
    Some(DataPlane::start(config).expect("data plane starts"))
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s
}

fn binding_request(server: &IceCredentials, tid: [u8; 12]) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let username = format!("{}:client", server.ufrag());
    let n = write_binding_request(
        &mut buf,
        tid,
        &username,
        1,
        true,
        IceRoleAttr::Controlling(7),
        server.pwd().as_bytes(),
    )
    .unwrap();
    buf[..n].to_vec()
}

/// Sends checks (as an ICE agent retransmits them) until the answer comes.
fn connect(sock: &UdpSocket, server: &IceCredentials, to: SocketAddr) -> Vec<u8> {
    let tid = [9u8; 12];
    let req = binding_request(server, tid);
    let give_up = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    while Instant::now() < give_up {
        sock.send_to(&req, to).unwrap();
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            assert_eq!(from, to);
            return buf[..n].to_vec();
        }
    }
    panic!("no STUN answer within {WAIT:?}");
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let give_up = Instant::now() + WAIT;
    while Instant::now() < give_up {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

fn stun_binding_is_answered(backend: Variant) {
    let Some(dp) = start(backend, 1, true) else {
        return;
    };
    let core = &dp.cores()[0];
    let server = IceCredentials::generate();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    assert!(core.add_session(
        1,
        server.clone(),
        Arc::new(TransportCounters::default()),
        events_tx
    ));
    let sock = client();
    let answer = connect(&sock, &server, core.local_addr());
    let msg = StunMessage::parse(&answer).expect("a STUN message");
    assert_eq!(msg.class(), StunClass::SuccessResponse);
    assert_eq!(msg.transaction_id(), [9u8; 12]);
    msg.verify_integrity(server.pwd().as_bytes())
        .expect("answer carries our integrity");
    assert_eq!(msg.xor_mapped_address(), Some(sock.local_addr().unwrap()));
    let mut connected = None;
    assert!(wait_for(|| {
        if let Ok((1, ev)) = events.try_recv() {
            connected = Some(ev);
        }
        connected.is_some()
    }));
    assert_eq!(
        connected,
        Some(SessionEvent::IceConnected(sock.local_addr().unwrap()))
    );
    assert!(core.counters().stun_answered.get() >= 1);
    dp.shutdown();
}

fn many_sockets_all_received(backend: Variant) {
    let Some(dp) = start(backend, 1, true) else {
        return;
    };
    let core = &dp.cores()[0];
    let to = core.local_addr();
    let socks: Vec<UdpSocket> = (0..50).map(|_| client()).collect();
    for round in 0..20u8 {
        for (i, s) in socks.iter().enumerate() {
            // First byte 0xff matches no protocol: counted, then dropped.
            let d = [0xff, round, i as u8, 0, 0, 0, 0, 0];
            s.send_to(&d, to).unwrap();
        }
    }
    let c = core.counters().clone();
    assert!(
        wait_for(|| c.rx_datagrams.get() >= 1000),
        "received {} of 1000",
        c.rx_datagrams.get()
    );
    assert_eq!(c.rx_datagrams.get(), 1000);
    assert_eq!(c.drop_unknown_class.get(), 1000);
    let io = core.io_counters();
    assert_eq!(io.rx_batch_datagrams.get(), 1000);
    assert!(io.rx_batches.get() >= 1);
    eprintln!(
        "{}: 1000 datagrams in {} receive batches",
        dp.backend_name(),
        io.rx_batches.get()
    );
    dp.shutdown();
}

/// Equal-size datagrams to one peer in one turn leave as a GSO message;
/// the peer must still see separate datagrams, in order.
fn burst_to_one_peer_arrives_as_separate_datagrams(backend: Variant, gso: bool) {
    let Some(dp) = start(backend, 1, gso) else {
        return;
    };
    let core = &dp.cores()[0];
    let server = IceCredentials::generate();
    let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
    core.add_session(
        1,
        server.clone(),
        Arc::new(TransportCounters::default()),
        events_tx,
    );
    let sock = client();
    connect(&sock, &server, core.local_addr());
    const N: usize = 40;
    for i in 0..N {
        let mut data = vec![0x17u8; 1000];
        data[1] = i as u8;
        if i == N - 1 {
            data.truncate(300);
        }
        core.send(CoreInput::SendDtls { id: 1, data });
    }
    let mut buf = [0u8; 65536];
    for i in 0..N {
        let (n, _) = sock.recv_from(&mut buf).expect("datagram arrives");
        assert_eq!(
            n,
            if i == N - 1 { 300 } else { 1000 },
            "datagram {i} keeps its size"
        );
        assert_eq!(buf[1], i as u8, "in order");
    }
    let io = core.io_counters();
    eprintln!(
        "{} gso={gso}: {} GSO messages carrying {} datagrams, {} fallbacks",
        dp.backend_name(),
        io.tx_gso_messages.get(),
        io.tx_gso_segments.get(),
        io.gso_fallbacks.get()
    );
    if !gso {
        assert_eq!(io.tx_gso_messages.get(), 0);
    }
    dp.shutdown();
}

fn shutdown_joins_threads(backend: Variant) {
    let Some(dp) = start(backend, 2, true) else {
        return;
    };
    let t = Instant::now();
    dp.shutdown();
    assert!(t.elapsed() < WAIT, "shutdown took {:?}", t.elapsed());
    // The threads dropped their mailboxes on exit.
    for c in dp.cores() {
        assert!(
            !c.send(CoreInput::RemoveSession { id: 1 }),
            "core {} still running",
            c.index()
        );
    }
}

/// A publisher on core 0 and a subscriber on core 1: packets cross cores
/// through the mailbox and its eventfd wake-up, and reach the subscriber
/// re-encrypted with its keys and SSRC.
fn forwards_across_cores(backend: Variant) {
    let Some(dp) = start(backend, 2, true) else {
        return;
    };
    let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
    let join = |id: u64, core: usize, seed: u8| {
        let c = &dp.cores()[core];
        let creds = IceCredentials::generate();
        let (server, client) = srtp_keys(seed, SrtpProfile::AeadAes128Gcm);
        c.add_session(
            id,
            creds.clone(),
            Arc::new(TransportCounters::default()),
            events_tx.clone(),
        );
        c.send(CoreInput::InstallSrtp {
            id,
            keys: Box::new(server),
        });
        let sock = self::client();
        connect(&sock, &creds, c.local_addr());
        (sock, SrtpSession::new(&client).unwrap())
    };
    let (publisher, mut pub_srtp) = join(1, 0, 10);
    let (subscriber, mut sub_srtp) = join(2, 1, 20);
    dp.cores()[0].send(CoreInput::AddInbound {
        id: 1,
        spec: InboundSpec {
            track: 7,
            mid: "0".into(),
            kind: Kind::Video,
            codec: Codec::Vp8,
            payload_type: 96,
            ssrcs: vec![1234],
            mid_ext_id: None,
        },
    });
    dp.cores()[1].send(CoreInput::AddSubscriber {
        id: 2,
        spec: SubscriberSpec {
            track: 7,
            owner_core: 0,
            kind: Kind::Video,
            out_ssrc: 4321,
            out_pt: 100,
            first_seq: 1,
            layers: None,
        },
    });
    dp.cores()[0].send(CoreInput::AddFanout { track: 7, core: 1 });
    let give_up = Instant::now() + WAIT;
    let mut buf = [0u8; 2048];
    let mut seq = 1u16;
    let forwarded = loop {
        assert!(Instant::now() < give_up, "nothing forwarded across cores");
        // A VP8 keyframe's first packet, again and again.
        let mut p = vec![0x80, 96];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&[
            0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 0xaa,
        ]);
        seq += 1;
        let mut sealed = Vec::new();
        pub_srtp.encrypt_rtp(&p, &mut sealed).unwrap();
        publisher
            .send_to(&sealed, dp.cores()[0].local_addr())
            .unwrap();
        if let Ok((n, from)) = subscriber.recv_from(&mut buf) {
            assert_eq!(
                from,
                dp.cores()[1].local_addr(),
                "sent from the subscriber's core"
            );
            let mut plain = Vec::new();
            sub_srtp
                .decrypt_rtp(&buf[..n], &mut plain)
                .expect("subscriber authenticates it");
            break plain;
        }
    };
    assert_eq!(&forwarded[8..12], &4321u32.to_be_bytes(), "rewritten SSRC");
    assert!(dp.cores()[0].counters().cross_core_sent.get() >= 1);
    dp.shutdown();
}

/// Commands from several threads, in bursts with pauses that let the core
/// fall asleep in between: none may be left unhandled in the mailbox.
fn concurrent_senders_never_lose_a_wakeup(backend: Variant) {
    let Some(dp) = start(backend, 1, true) else {
        return;
    };
    let core = &dp.cores()[0];
    let server = IceCredentials::generate();
    let (events_tx, _events) = tokio::sync::mpsc::unbounded_channel();
    core.add_session(
        1,
        server.clone(),
        Arc::new(TransportCounters::default()),
        events_tx,
    );
    let sock = client();
    connect(&sock, &server, core.local_addr());
    let before = core.counters().tx_datagrams.get();
    const THREADS: usize = 4;
    const BURSTS: usize = 50;
    const PER_BURST: usize = 20;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for b in 0..BURSTS {
                    for _ in 0..PER_BURST {
                        assert!(core.send(CoreInput::SendDtls {
                            id: 1,
                            data: vec![0x16, t as u8, b as u8]
                        }));
                    }
                    std::thread::sleep(Duration::from_micros(((t * 37 + b * 11) % 300) as u64));
                }
            });
        }
    });
    let expected = (THREADS * BURSTS * PER_BURST) as u64;
    let c = core.counters().clone();
    assert!(
        wait_for(|| c.tx_datagrams.get() - before >= expected),
        "sent {} of {expected}",
        c.tx_datagrams.get() - before
    );
    eprintln!(
        "{}: {} wake-ups for {expected} commands",
        dp.backend_name(),
        core.io_counters().wakeups.get()
    );
    dp.shutdown();
}

macro_rules! per_backend {
    ($name:ident, $backend:expr, $multishot:expr) => {
        mod $name {
            use super::*;

            const V: Variant = Variant {
                backend: $backend,
                multishot: $multishot,
            };

            #[test]
            fn stun_binding_is_answered() {
                super::stun_binding_is_answered(V);
            }

            #[test]
            fn thousand_datagrams_from_fifty_sockets_all_received() {
                super::many_sockets_all_received(V);
            }

            #[test]
            fn gso_burst_arrives_as_separate_datagrams() {
                super::burst_to_one_peer_arrives_as_separate_datagrams(V, true);
            }

            #[test]
            fn burst_without_gso() {
                super::burst_to_one_peer_arrives_as_separate_datagrams(V, false);
            }

            #[test]
            fn concurrent_senders_never_lose_a_wakeup() {
                super::concurrent_senders_never_lose_a_wakeup(V);
            }

            #[test]
            fn forwards_across_cores() {
                super::forwards_across_cores(V);
            }

            #[test]
            fn shutdown_joins_threads() {
                super::shutdown_joins_threads(V);
            }
        }
    };
}

per_backend!(mmsg, IoBackendChoice::Mmsg, true);
per_backend!(io_uring, IoBackendChoice::IoUring, true);
per_backend!(io_uring_single_shot_recv, IoBackendChoice::IoUring, false);

const AUTO: Variant = Variant {
    backend: IoBackendChoice::Auto,
    multishot: true,
};
const MMSG: Variant = Variant {
    backend: IoBackendChoice::Mmsg,
    multishot: true,
};

#[test]
fn auto_picks_io_uring_when_available() {
    let f = detect::features();
    eprintln!("detected: io_uring {:?}, gso {:?}", f.io_uring, f.gso);
    let dp = start(AUTO, 1, true).unwrap();
    let expected = if f.io_uring_available() {
        "io_uring"
    } else {
        "mmsg"
    };
    assert_eq!(dp.backend_name(), expected);
}

#[test]
fn asking_for_unusable_io_uring_fails_with_the_reason() {
    let f = detect::features();
    let Err(why) = &f.io_uring else {
        eprintln!("io_uring is usable here; nothing to check");
        return;
    };
    let config = DataPlaneConfig {
        base_port: 0,
        cores: 1,
        io_backend: IoBackendChoice::IoUring,
        ..DataPlaneConfig::default()
    };
    let err = DataPlane::start(config).unwrap_err();
    assert!(err.to_string().contains(why.as_str()));
}

#[test]
fn mmsg_is_chosen_when_configured() {
    let dp = start(MMSG, 1, true).unwrap();
    assert_eq!(dp.backend_name(), "mmsg");
}
