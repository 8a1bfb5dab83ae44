//! Forwarding: one fake publisher sends SRTP VP8-like packets to a
//! [`DataPlane`] that forwards each to N subscriber sessions over loopback.
//! Sessions are set up through [`weir_dataplane::driver::CoreHandle`]
//! commands, as the control plane would after ICE and DTLS.
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_dataplane::core::Codec;
use weir_dataplane::counters::TransportCounters;
use weir_dataplane::driver::{DataPlaneConfig, IoBackendChoice, IoOptions};
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::srtp::{SrtpProfile, SrtpSession};
use weir_dataplane::{CoreInput, DataPlane, InboundSpec, Kind, SubscriberSpec};

use crate::cpu::{pin, thread_cpu};
use crate::media::{binding_request, keys, Vp8Source, PT, PUB_SSRC, TRACK};
use crate::sink::Sink;

/// What to measure.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Subscriber sessions (each a socket of its own).
    pub subscribers: usize,
    /// Measurement time.
    pub seconds: f64,
    /// Data-plane cores.
    pub cores: usize,
    /// IO backend.
    pub backend: IoBackendChoice,
    /// UDP GSO on or off.
    pub gso: bool,
    /// io_uring multishot receive on or off.
    pub multishot: bool,
    /// SRTP profile of every session.
    pub profile: SrtpProfile,
    /// Most published packets not yet received by the data plane (0: no
    /// pacing, the publisher sends as fast as it can).
    pub window: u64,
}

/// What was measured.
#[derive(Debug, Clone)]
pub struct ForwardResult {
    /// The backend that ran.
    pub backend: &'static str,
    /// Packets the data plane sent in the window (all cores).
    pub out: u64,
    /// Packets the data plane received in the window (all cores).
    pub rx: u64,
    /// Packets the publisher sent in the window.
    pub published: u64,
    /// Packets the subscriber sockets got in the window.
    pub delivered: u64,
    /// Wall time of the window.
    pub wall: Duration,
    /// CPU time of each data-plane thread in the window.
    pub cpu: Vec<Duration>,
    /// GSO messages and the datagrams in them, in the window.
    pub gso_messages: u64,
    /// Datagrams sent inside GSO messages.
    pub gso_segments: u64,
    /// GSO refusals.
    pub gso_fallbacks: u64,
    /// Mean receive batch of the data plane.
    pub rx_batch: f64,
    /// Packets the data plane sent over the whole run (setup included).
    pub total_out: u64,
    /// IO counters of core 0 over the whole run, by name.
    pub io_totals: Vec<(&'static str, u64)>,
    /// Drop counters of the data plane that are not zero, over the whole run.
    pub drops: Vec<(&'static str, u64)>,
}

impl ForwardResult {
    /// Packets out per wall-clock second and per data-plane core.
    pub fn pps_per_core_wall(&self) -> f64 {
        self.out as f64 / self.wall.as_secs_f64() / self.cpu.len().max(1) as f64
    }

    /// Packets out per CPU-second of the data-plane threads.
    pub fn pps_cpu(&self) -> f64 {
        let cpu: f64 = self.cpu.iter().map(Duration::as_secs_f64).sum();
        self.out as f64 / cpu.max(1e-9)
    }

    /// Mean CPU load of the data-plane threads over the window (1.0 = a full core).
    pub fn load(&self) -> f64 {
        let cpu: f64 = self.cpu.iter().map(Duration::as_secs_f64).sum();
        cpu / self.wall.as_secs_f64() / self.cpu.len().max(1) as f64
    }
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// Sends checks until the server answers, as an ICE agent would.
fn connect(sock: &UdpSocket, server: &IceCredentials, to: SocketAddr) {
    let req = binding_request(server, [3; 12]);
    let mut buf = [0u8; 1500];
    let give_up = Instant::now() + Duration::from_secs(5);
    while Instant::now() < give_up {
        sock.send_to(&req, to).expect("send check");
        if sock.recv_from(&mut buf).is_ok() {
            return;
        }
    }
    panic!("no STUN answer from {to}");
}

fn snapshot(dp: &DataPlane) -> (u64, u64, Vec<Duration>, u64, u64, u64, u64, u64) {
    let out = dp
        .cores()
        .iter()
        .map(|c| c.counters().tx_datagrams.get())
        .sum();
    let rx = dp
        .cores()
        .iter()
        .map(|c| c.counters().rx_datagrams.get())
        .sum();
    let cpu = (0..dp.cores().len())
        .map(|i| thread_cpu(&format!("weir-dp-{i}")).unwrap_or_default())
        .collect();
    let io = |f: fn(&weir_dataplane::io::IoCounters) -> u64| {
        dp.cores().iter().map(|c| f(c.io_counters())).sum()
    };
    (
        out,
        rx,
        cpu,
        io(|c| c.tx_gso_messages.get()),
        io(|c| c.tx_gso_segments.get()),
        io(|c| c.gso_fallbacks.get()),
        io(|c| c.rx_batches.get()),
        io(|c| c.rx_batch_datagrams.get()),
    )
}

/// Runs the scenario.
pub fn run(cfg: &ForwardConfig) -> std::io::Result<ForwardResult> {
    let cores = cfg.cores.max(1);
    let mut io_options = IoOptions::default();
    io_options.gso = cfg.gso;
    io_options.multishot_recv = cfg.multishot;
    let dp = DataPlane::start(DataPlaneConfig {
        base_port: 0,
        cores,
        io_backend: cfg.backend,
        io_options,
        ..DataPlaneConfig::default()
    })?;
    let (events, _events_rx) = tokio::sync::mpsc::unbounded_channel();
    let session = |id: u64, core: usize, seed: u8| {
        let c = &dp.cores()[core];
        let creds = IceCredentials::generate();
        let (server_keys, client_keys) = keys(seed, cfg.profile);
        c.add_session(
            id,
            creds.clone(),
            Arc::new(TransportCounters::default()),
            events.clone(),
        );
        c.send(CoreInput::InstallSrtp {
            id,
            keys: Box::new(server_keys),
        });
        let sock = client();
        connect(&sock, &creds, c.local_addr());
        (sock, client_keys)
    };
    let (publisher, pub_keys) = session(1, 0, 1);
    dp.cores()[0].send(CoreInput::AddInbound {
        id: 1,
        spec: InboundSpec {
            track: TRACK,
            mid: "0".into(),
            kind: Kind::Video,
            codec: Codec::Vp8,
            payload_type: PT,
            ssrcs: vec![PUB_SSRC],
            mid_ext_id: None,
        },
    });
    let mut subs = Vec::with_capacity(cfg.subscribers);
    let mut first_sub_keys = None;
    for i in 0..cfg.subscribers {
        let core = i % cores;
        let id = 100 + i as u64;
        let (sock, k) = session(id, core, (i + 2) as u8);
        dp.cores()[core].send(CoreInput::AddSubscriber {
            id,
            spec: SubscriberSpec {
                track: TRACK,
                owner_core: 0,
                kind: Kind::Video,
                out_ssrc: 0x5000 + i as u32,
                out_pt: PT,
                first_seq: 0,
                layers: None,
            },
        });
        dp.cores()[0].send(CoreInput::AddFanout { track: TRACK, core });
        if i == 0 {
            first_sub_keys = Some(k);
        }
        subs.push(sock);
    }
    let server = dp.cores()[0].local_addr();
    let mut source = Vp8Source::new(&pub_keys);
    let mut pkt = Vec::with_capacity(1500);
    // Publish until the first subscriber gets a packet it can authenticate:
    // the commands above are asynchronous and video waits for a keyframe.
    if let (Some(k), Some(first)) = (first_sub_keys, subs.first()) {
        let mut srtp = SrtpSession::new(&k).expect("keys");
        let mut buf = [0u8; 2048];
        let give_up = Instant::now() + Duration::from_secs(10);
        'wait: loop {
            assert!(
                Instant::now() < give_up,
                "no forwarded packet reached the first subscriber"
            );
            for _ in 0..40 {
                source.next_packet(&mut pkt);
                publisher.send_to(&pkt, server)?;
            }
            while let Ok(n) = first.recv(&mut buf) {
                let mut plain = Vec::new();
                if srtp.decrypt_rtp(&buf[..n], &mut plain).is_ok() && plain.len() > 12 {
                    break 'wait;
                }
            }
        }
    }
    let sink = Sink::start(subs, crate::cpu::cores() - 1, "weir-fwd-rx");
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (p2, s2) = (published.clone(), stop.clone());
    let ingress = dp.cores()[0].counters().clone();
    let window = cfg.window;
    let pub_thread = std::thread::Builder::new()
        .name("weir-fwd-pub".into())
        .spawn(move || {
            pin(crate::cpu::cores() - 1);
            let mut pkt = Vec::with_capacity(1500);
            let mut sent = 0u64;
            let base = ingress.rx_datagrams.get();
            while !s2.load(Ordering::Relaxed) {
                // Credit-based pacing: at most `window` packets on their way
                // into the data plane, so it runs saturated without the
                // socket dropping most of the input.
                if window > 0 && sent.saturating_sub(ingress.rx_datagrams.get() - base) >= window {
                    std::thread::sleep(Duration::from_micros(50));
                    continue;
                }
                source.next_packet(&mut pkt);
                sent += 1;
                if publisher.send_to(&pkt, server).is_ok() {
                    p2.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .expect("spawn publisher");
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let a = snapshot(&dp);
    let (pub0, del0) = (published.load(Ordering::Relaxed), sink.received());
    std::thread::sleep(Duration::from_secs_f64(cfg.seconds));
    let b = snapshot(&dp);
    let (pub1, del1) = (published.load(Ordering::Relaxed), sink.received());
    let wall = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = pub_thread.join();
    sink.stop();
    let backend = dp.backend_name();
    let total_out = dp
        .cores()
        .iter()
        .map(|c| c.counters().tx_datagrams.get())
        .sum();
    let io_totals = dp.cores()[0].io_counters().snapshot();
    let mut drops: Vec<(&'static str, u64)> = Vec::new();
    for c in dp.cores() {
        for (name, v) in c.counters().snapshot() {
            if v > 0 && (name.starts_with("drop_") || name == "tx_errors") {
                match drops.iter_mut().find(|(n, _)| *n == name) {
                    Some(d) => d.1 += v,
                    None => drops.push((name, v)),
                }
            }
        }
    }
    dp.shutdown();
    let batches = (b.6 - a.6).max(1);
    Ok(ForwardResult {
        backend,
        out: b.0 - a.0,
        rx: b.1 - a.1,
        published: pub1 - pub0,
        delivered: del1 - del0,
        wall,
        cpu: b
            .2
            .iter()
            .zip(&a.2)
            .map(|(y, x)| y.saturating_sub(*x))
            .collect(),
        gso_messages: b.3 - a.3,
        gso_segments: b.4 - a.4,
        gso_fallbacks: b.5 - a.5,
        rx_batch: (b.7 - a.7) as f64 / batches as f64,
        drops,
        total_out,
        io_totals,
    })
}
