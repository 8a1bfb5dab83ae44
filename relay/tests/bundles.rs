//! Bundles: RTP packets a served track has queued share one QUIC datagram
//! once path MTU discovery has grown the datagrams (loopback lets it), and
//! a peer that does not take bundles (bundling off: its hello offers none,
//! as a server from before them) still gets every packet, one per datagram.
use std::time::Duration;

use weir_controlplane::{
    CodecParams, MediaKind, RemoteTrackSpec, Router, RouterConfig, TrackId, TransportId, Worker,
    WorkerConfig,
};
use weir_dataplane::packet::{LayerFacts, MediaPacket};
use weir_dataplane::packet_pool::PacketRef;
use weir_relay::{RelayConfig, RelayEndpoint};

const LIMIT: Duration = Duration::from_secs(10);

fn packet(seq: u16) -> PacketRef {
    let mut data = vec![0u8; 1200];
    data[0] = 0x80;
    data[1] = 96;
    data[2..4].copy_from_slice(&seq.to_be_bytes());
    data[8..12].copy_from_slice(&5u32.to_be_bytes());
    for (i, b) in data[12..].iter_mut().enumerate() {
        *b = (i as u8) ^ (seq as u8);
    }
    PacketRef::from(MediaPacket {
        payload_offset: 12,
        payload_len: 1188,
        seq,
        timestamp: 0,
        ssrc: 5,
        marker: false,
        keyframe: false,
        layers: LayerFacts {
            frame_start: true,
            frame_end: true,
            ..LayerFacts::default()
        },
        // Changes every 10 packets: the report rides on some records only.
        sender_report: Some((u64::from(seq / 10), u32::from(seq / 10))),
        data,
    })
}

async fn world() -> (Worker, Worker, Router, Router) {
    let worker = || {
        Worker::new(WorkerConfig {
            media_port: 0,
            cores: 1,
            ..WorkerConfig::default()
        })
    };
    let (wa, wb) = (worker().await.unwrap(), worker().await.unwrap());
    let room = || RouterConfig {
        id: Some("room".into()),
    };
    let (ra, rb) = (wa.create_router(room()), wb.create_router(room()));
    (wa, wb, ra, rb)
}

/// What one run of [`relay`] saw.
struct Run {
    /// A's `bundles_sent` and B's `bundles_received`.
    bundles: (u64, u64),
    /// Packets pushed at A, and packets B's tap got (intact, in order).
    pushed: u64,
    got: u64,
    /// QUIC packets A's connection declared lost, and black holes it
    /// detected (each drops the queued datagrams that no longer fit).
    quic_lost: u64,
}

/// Relays batches of 50 packets from A to B until `done` holds for A's
/// counters (at most 20 batches); checks every packet B gets is intact and
/// newer than the last. QUIC datagrams are not retransmitted: on a loaded
/// machine loopback can lose one (a full socket buffer, or a loss burst
/// that quinn takes for a black hole and answers by dropping the queued
/// bundles), so a batch ends at its last packet or after a quiet second,
/// and the caller checks any gap against A's QUIC loss.
async fn relay(b_bundles: bool, done: impl Fn(&RelayEndpoint) -> bool) -> Run {
    let (wa, wb, ra, rb) = world().await;
    let a = RelayEndpoint::bind(RelayConfig::new("a", b"k".to_vec()))
        .await
        .unwrap();
    let b = RelayEndpoint::bind(RelayConfig::new("b", b"k".to_vec()).with_bundling(b_bundles))
        .await
        .unwrap();
    a.serve_router(&ra);
    let id = TrackId::from("cam");
    let source = ra
        .add_remote_track(RemoteTrackSpec {
            id: id.clone(),
            kind: MediaKind::Video,
            codec: CodecParams {
                name: "VP8".into(),
                clock_rate: 90_000,
                channels: None,
                fmtp: None,
                rtcp_fb: vec![],
            },
            encodings: 1,
            origin: TransportId("test".into()),
        })
        .unwrap();
    let peer = b.connect(a.local_addr().unwrap()).await.unwrap();
    let _pulled = peer.pull(ra.id(), &id, &rb).await.unwrap();
    let mut tap = rb.tap_track(&id, 4096).unwrap();
    // Discovery grows A's datagrams past two RTP packets.
    tokio::time::timeout(LIMIT, async {
        loop {
            let max = a.peers().first().and_then(|p| p.max_datagram_size());
            if max.is_some_and(|m| m > 2 * 1250) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("path MTU discovery grew the datagrams");
    let mut seq = 0u16;
    let mut got = 0u64;
    let mut last: Option<u16> = None;
    for _ in 0..20 {
        let batch: Vec<PacketRef> = (0..50).map(|i| packet(seq + i)).collect();
        source.push_batch(batch);
        let end = seq + 49;
        while last.is_none_or(|l| l < end) {
            let Ok(p) = tokio::time::timeout(Duration::from_secs(1), tap.recv()).await else {
                break;
            };
            let p = p.expect("tap open");
            assert!(last.is_none_or(|l| p.seq > l), "{} after {last:?}", p.seq);
            let sent = packet(p.seq);
            assert_eq!(p.data, sent.data, "packet {} intact", p.seq);
            assert_eq!(p.sender_report, sent.sender_report);
            last = Some(p.seq);
            got += 1;
        }
        seq += 50;
        if done(&a) {
            break;
        }
    }
    let stats = a.peers().first().map(|p| p.quic_stats()).expect("A's peer");
    let run = Run {
        bundles: (
            a.counters().get("bundles_sent").unwrap_or(0),
            b.counters().get("bundles_received").unwrap_or(0),
        ),
        pushed: u64::from(seq),
        got,
        quic_lost: stats.path.lost_packets + stats.path.black_holes_detected,
    };
    assert_eq!(b.counters().get("rtp_received"), Some(got));
    // Sent counts what quinn took; a datagram that no longer fits after a
    // black hole is refused, not sent.
    let sent = a.counters().get("rtp_sent").unwrap_or(0);
    assert!((got..=run.pushed).contains(&sent), "{sent} sent, {got} got");
    assert_eq!(b.counters().get("malformed"), Some(0));
    drop(source);
    a.close().await;
    b.close().await;
    wa.close().await;
    wb.close().await;
    run
}

/// Checks `run` lost nothing, or only what QUIC reports lost.
fn check_loss(run: &Run) {
    assert!(run.got > 0);
    if run.got < run.pushed {
        assert!(
            run.quic_lost > 0,
            "{} of {} packets missing without QUIC loss",
            run.pushed - run.got,
            run.pushed
        );
        assert!(
            run.got * 10 >= run.pushed * 9,
            "{} of {} arrived",
            run.got,
            run.pushed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_packets_share_datagrams() {
    let run = relay(true, |a| {
        a.counters().get("bundles_sent").is_some_and(|n| n > 0)
    })
    .await;
    check_loss(&run);
    let (sent, received) = run.bundles;
    assert!(sent > 0, "no bundle in 1,000 queued packets");
    if run.got == run.pushed {
        assert_eq!(sent, received);
    } else {
        assert!(received <= sent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_bundles_gets_one_packet_per_datagram() {
    let run = relay(false, |_| false).await;
    check_loss(&run);
    assert_eq!(run.bundles, (0, 0));
}
