//! The data plane's work without sockets: a [`Core`] with a connected
//! publisher and subscribers, fed in memory. Used by the criterion
//! benchmarks and by `weir-bench core-only`, which gives the share of the
//! per-packet cost that is not IO.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_dataplane::core::{Codec, Core};
use weir_dataplane::counters::{CoreCounters, TransportCounters};
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::srtp::SrtpProfile;
use weir_dataplane::{CoreInput, InboundSpec, Kind, SubscriberSpec};

use crate::media::{binding_request, keys, Vp8Source, PT, PUB_SSRC, TRACK};

/// A core with a connected publisher (id 1) and `n` connected subscribers.
pub fn room(n: usize, profile: SrtpProfile) -> (Core, Vp8Source, SocketAddr) {
    let now = Instant::now();
    let mut core = Core::new(
        0,
        Duration::from_secs(30),
        Arc::new(CoreCounters::default()),
        now,
    );
    let mut join = |id: u64, port: u16, seed: u8| {
        let creds = IceCredentials::generate();
        let (server, client) = keys(seed, profile);
        core.handle_input(
            now,
            CoreInput::AddSession {
                id,
                credentials: creds.clone(),
                counters: Arc::new(TransportCounters::default()),
            },
        );
        core.handle_input(
            now,
            CoreInput::InstallSrtp {
                id,
                keys: Box::new(server),
            },
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        core.handle_datagram(now, addr, &binding_request(&creds, [1; 12]));
        (addr, client)
    };
    let (pub_addr, pub_keys) = join(1, 5000, 1);
    for i in 0..n {
        join(100 + i as u64, 6000 + i as u16, (i + 2) as u8);
    }
    core.handle_input(
        now,
        CoreInput::AddInbound {
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
        },
    );
    for i in 0..n {
        core.handle_input(
            now,
            CoreInput::AddSubscriber {
                id: 100 + i as u64,
                spec: SubscriberSpec {
                    track: TRACK,
                    owner_core: 0,
                    kind: Kind::Video,
                    out_ssrc: 0x5000 + i as u32,
                    out_pt: PT,
                    first_seq: 0,
                    layers: None,
                },
            },
        );
        core.handle_input(
            now,
            CoreInput::AddFanout {
                track: TRACK,
                core: 0,
            },
        );
    }
    while core.poll_transmit().is_some() {}
    while core.poll_event().is_some() {}
    (core, Vp8Source::new(&pub_keys), pub_addr)
}

/// CPU time of the calling thread.
pub fn own_cpu() -> Duration {
    // SAFETY: all-zero is a valid timespec; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Feeds `packets` published packets (encrypted beforehand) to a core with
/// `subscribers` subscribers on the calling thread, draining its transmits.
/// Returns the datagrams out and the thread's CPU time spent.
pub fn core_only(subscribers: usize, profile: SrtpProfile, packets: usize) -> (u64, Duration) {
    let r = core_only_after(subscribers, profile, packets, None);
    (r.out, r.cpu)
}

/// What [`core_only_after`] measured.
#[derive(Debug, Clone, Copy)]
pub struct CoreOnly {
    /// Datagrams out.
    pub out: u64,
    /// The thread's CPU time while forwarding.
    pub cpu: Duration,
    /// Wall time while forwarding.
    pub wall: Duration,
}

/// As [`core_only`], but forwarding starts only once every thread sharing
/// `start` has prepared its room and its input (so that threads measured
/// together forward at the same time), and the wall time is returned too.
pub fn core_only_after(
    subscribers: usize,
    profile: SrtpProfile,
    packets: usize,
    start: Option<&std::sync::Barrier>,
) -> CoreOnly {
    let (mut core, mut source, from) = room(subscribers, profile);
    let input: Vec<Vec<u8>> = (0..packets)
        .map(|_| {
            let mut p = Vec::with_capacity(1500);
            source.next_packet(&mut p);
            p
        })
        .collect();
    if let Some(b) = start {
        b.wait();
    }
    let mut out = 0u64;
    let t0 = own_cpu();
    let wall = Instant::now();
    for chunk in input.chunks(64) {
        let now = Instant::now();
        for p in chunk {
            core.handle_datagram(now, from, p);
        }
        while let Some(t) = core.poll_transmit() {
            out += 1;
            std::hint::black_box(&t);
            // As the IO backends do: the buffer builds the next datagram.
            core.recycle_transmit(t);
        }
    }
    CoreOnly {
        out,
        cpu: own_cpu() - t0,
        wall: wall.elapsed(),
    }
}
