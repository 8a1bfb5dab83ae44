//! Relay throughput: two Weir servers in one process, one relay connection
//! on 127.0.0.1 carrying N tracks of 1200-byte RTP packets.
//!
//! Server A holds N tracks fed by this program (remote tracks, so no
//! WebRTC client is needed); server B pulls them over the relay and taps
//! them, which is where packets are counted and their one-way latency
//! (stamped in the payload at A) measured. The path measured is the
//! relay's whole: A's data-plane core → tap → serve task → QUIC datagram
//! → B's datagram loop → B's data-plane core → tap.
//!
//! ```text
//! cargo run --release -p weir-relay --example throughput -- --seconds 5 --tracks 10 --rate 250000
//! ```
//!
//! `--bundle 0` sends one RTP packet per QUIC datagram; `--max-udp-payload
//! 1452` caps path MTU discovery as a 1,500-byte Ethernet path would.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_controlplane::{
    CodecParams, MediaKind, RemoteTrackSpec, RouterConfig, TransportId, Worker, WorkerConfig,
};
use weir_dataplane::packet::{LayerFacts, MediaPacket};
use weir_dataplane::packet_pool::PacketRef;
use weir_relay::{RelayConfig, RelayEndpoint};

struct Args {
    seconds: u64,
    tracks: usize,
    rate: u64,
    size: usize,
    max_udp_payload: u16,
    bundle: bool,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 5,
        tracks: 10,
        rate: 250_000,
        size: 1200,
        max_udp_payload: RelayConfig::new("", Vec::new()).max_udp_payload,
        bundle: true,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for pair in v.chunks(2) {
        let val = pair.get(1).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        match pair[0].as_str() {
            "--seconds" => a.seconds = val.max(1),
            "--tracks" => a.tracks = (val as usize).max(1),
            "--rate" => a.rate = val.max(1),
            "--size" => a.size = (val as usize).clamp(20, 1400),
            "--max-udp-payload" => a.max_udp_payload = val.clamp(1300, 65527) as u16,
            "--bundle" => a.bundle = val != 0,
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// This process's CPU time (user + system) from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn packet(seq: u16, ssrc: u32, size: usize, sent_ns: u64) -> MediaPacket {
    let mut data = vec![0u8; size];
    data[0] = 0x80;
    data[1] = 96;
    data[2..4].copy_from_slice(&seq.to_be_bytes());
    data[8..12].copy_from_slice(&ssrc.to_be_bytes());
    data[12..20].copy_from_slice(&sent_ns.to_be_bytes());
    MediaPacket {
        payload_offset: 12,
        payload_len: size - 12,
        seq,
        timestamp: 0,
        ssrc,
        marker: true,
        keyframe: false,
        layers: LayerFacts {
            frame_start: true,
            frame_end: true,
            ..LayerFacts::default()
        },
        sender_report: None,
        data,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let worker = |port| {
        Worker::new(WorkerConfig {
            media_port: port,
            cores: 1,
            ..WorkerConfig::default()
        })
    };
    let (wa, wb) = (worker(0).await?, worker(0).await?);
    let room = || RouterConfig {
        id: Some("room".into()),
    };
    let (ra, rb) = (wa.create_router(room()), wb.create_router(room()));
    let config = |id: &str| {
        RelayConfig::new(id, b"bench".to_vec())
            .with_max_udp_payload(args.max_udp_payload)
            .with_bundling(args.bundle)
    };
    let a = RelayEndpoint::bind(config("a")).await?;
    let b = RelayEndpoint::bind(config("b")).await?;
    a.serve_router(&ra);
    let peer = b.connect(a.local_addr()?).await?;

    let mut sources = Vec::new();
    let mut pulls = Vec::new();
    let received = Arc::new(AtomicU64::new(0));
    let latencies: Arc<std::sync::Mutex<Vec<u64>>> = Arc::default();
    let start = Instant::now();
    for i in 0..args.tracks {
        let id = format!("src{i}");
        sources.push(ra.add_remote_track(RemoteTrackSpec {
            id: id.as_str().into(),
            kind: MediaKind::Video,
            codec: CodecParams {
                name: "VP8".into(),
                clock_rate: 90_000,
                channels: None,
                fmtp: None,
                rtcp_fb: vec!["nack".into()],
            },
            encodings: 1,
            origin: TransportId("bench".into()),
        })?);
        pulls.push(peer.pull(ra.id(), &id.as_str().into(), &rb).await?);
        let mut tap = rb.tap_track(&id.as_str().into(), 1 << 16)?;
        let (received, latencies) = (received.clone(), latencies.clone());
        tokio::spawn(async move {
            let mut sample = Vec::new();
            while let Some(p) = tap.recv().await {
                let n = received.fetch_add(1, Ordering::Relaxed);
                if n % 64 == 0 {
                    let sent = u64::from_be_bytes(p.data[12..20].try_into().unwrap_or([0; 8]));
                    let now = start.elapsed().as_nanos() as u64;
                    sample.push(now.saturating_sub(sent));
                    if sample.len() >= 256 {
                        latencies.lock().unwrap().append(&mut sample);
                    }
                }
            }
            latencies.lock().unwrap().append(&mut sample);
        });
    }

    // Paced feed: every millisecond, the packets due by then.
    let total = args.rate * args.seconds;
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while sent < total {
        tick.tick().await;
        let due = ((t0.elapsed().as_secs_f64() * args.rate as f64) as u64).min(total);
        // One data-plane message per track per tick, as the relay's
        // receive side does.
        let mut batches: Vec<Vec<PacketRef>> = vec![Vec::new(); args.tracks];
        while sent < due {
            let track = (sent as usize) % args.tracks;
            let seq = (sent / args.tracks as u64) as u16;
            let now = start.elapsed().as_nanos() as u64;
            batches[track].push(PacketRef::from(packet(
                seq,
                1000 + track as u32,
                args.size,
                now,
            )));
            sent += 1;
        }
        for (source, batch) in sources.iter().zip(batches) {
            if !batch.is_empty() {
                source.push_batch(batch);
            }
        }
    }
    let feed_time = t0.elapsed();
    // Let the queues drain.
    let mut last = received.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = received.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let wall = t0.elapsed() - Duration::from_millis(200);
    let cpu = cpu_time() - cpu0;
    let got = received.load(Ordering::Relaxed);
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    let ca = a.counters();
    let cb = b.counters();
    println!(
        "relay throughput: {} tracks, {} B packets, offered {} pkt/s for {:.2} s, bundling {}, max UDP payload {}, max datagram now {:?}",
        args.tracks,
        args.size,
        args.rate,
        feed_time.as_secs_f64(),
        if args.bundle { "on" } else { "off" },
        args.max_udp_payload,
        a.peers().first().and_then(|p| p.max_datagram_size())
    );
    println!(
        "  sent {sent}, received {got} ({:.3} % lost), {:.0} pkt/s received ({:.0} Mbit/s of RTP)",
        100.0 * (sent - got.min(sent)) as f64 / sent as f64,
        got as f64 / wall.as_secs_f64(),
        got as f64 * args.size as f64 * 8.0 / wall.as_secs_f64() / 1e6
    );
    println!(
        "  one-way latency A core → B tap: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        lat.len()
    );
    println!(
        "  process CPU {:.2} s = {:.2} µs per relayed packet (both servers, the feeder and the tap readers)",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / got.max(1) as f64
    );
    let nz = |c: &weir_relay::RelayCounters| {
        c.snapshot()
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if let Some(pa) = a.peers().first() {
        let (sa, sb) = (pa.quic_stats(), peer.quic_stats());
        println!(
            "  QUIC: A sent {} datagram frames in {} UDP datagrams, lost {} packets, cwnd {} B, rtt {:?}; B got {} datagram frames",
            sa.frame_tx.datagram,
            sa.udp_tx.datagrams,
            sa.path.lost_packets,
            sa.path.cwnd,
            sa.path.rtt,
            sb.frame_rx.datagram
        );
    }
    println!("  A: {}", nz(ca));
    println!("  B: {}", nz(cb));
    drop(pulls);
    drop(sources);
    a.close().await;
    b.close().await;
    Ok(())
}
