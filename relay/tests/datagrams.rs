//! The relay's data path without WebRTC clients: server A holds a track
//! fed by the test (a remote track, as a relay would feed it), server B
//! pulls it and taps it. Checks what arrives, and that a packet too large
//! for the connection's datagrams is counted, not silently lost.
use std::time::Duration;

use weir_controlplane::{
    CodecParams, MediaKind, RemoteTrackSpec, RouterConfig, TrackId, TransportId, Worker,
    WorkerConfig,
};
use weir_dataplane::packet::{LayerFacts, MediaPacket};
use weir_dataplane::packet_pool::PacketRef;
use weir_relay::{RelayConfig, RelayEndpoint};

const LIMIT: Duration = Duration::from_secs(10);

fn packet(seq: u16, size: usize, keyframe: bool, temporal: u8) -> PacketRef {
    let mut data = vec![0u8; size];
    data[0] = 0x80;
    data[1] = 0x80 | 96; // marker
    data[2..4].copy_from_slice(&seq.to_be_bytes());
    data[4..8].copy_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    data[8..12].copy_from_slice(&77u32.to_be_bytes());
    for (i, b) in data[12..].iter_mut().enumerate() {
        *b = (i as u8) ^ (seq as u8);
    }
    PacketRef::from(MediaPacket {
        payload_offset: 12,
        payload_len: size - 12,
        seq,
        timestamp: u32::from(seq) * 3000,
        ssrc: 77,
        marker: true,
        keyframe,
        layers: LayerFacts {
            temporal,
            frame_start: true,
            frame_end: true,
            switching_point: true,
            ..LayerFacts::default()
        },
        sender_report: Some((0x1234_5678_9abc_def0, 42)),
        data,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_cross_with_their_facts_and_oversized_ones_are_counted() {
    let worker = || {
        Worker::new(WorkerConfig {
            media_port: 0,
            cores: 2,
            ..WorkerConfig::default()
        })
    };
    let (wa, wb) = (worker().await.unwrap(), worker().await.unwrap());
    let room = || RouterConfig {
        id: Some("room".into()),
    };
    let (ra, rb) = (wa.create_router(room()), wb.create_router(room()));
    // A 1,500-byte path's worth of datagram, without discovery raising
    // it mid-test: the oversized packet below stays oversized.
    let config = |id: &str| RelayConfig::new(id, b"k".to_vec()).with_max_udp_payload(1300);
    let a = RelayEndpoint::bind(config("a")).await.unwrap();
    let b = RelayEndpoint::bind(config("b")).await.unwrap();
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
                fmtp: Some("max-fr=30".into()),
                rtcp_fb: vec!["nack".into(), "nack pli".into()],
            },
            encodings: 1,
            origin: TransportId("test".into()),
        })
        .unwrap();
    let peer = b.connect(a.local_addr().unwrap()).await.unwrap();

    // Pulling a track the origin does not have fails cleanly.
    let missing = peer.pull(ra.id(), &"nope".into(), &rb).await;
    assert!(missing.is_err(), "{missing:?}");

    let pulled = peer.pull(ra.id(), &id, &rb).await.unwrap();
    let listed = rb.tracks();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].kind, MediaKind::Video);
    assert_eq!(listed[0].transport.as_str(), "relay:a");
    let mut tap = rb.tap_track(&id, 64).unwrap();

    let max = peer.max_datagram_size().unwrap();
    // 1200-byte packets fit; one larger than the connection's datagrams
    // cannot and is counted.
    let sent: Vec<PacketRef> = (0..10u16)
        .map(|i| packet(1000 + i, 1200, i == 0, (i % 3) as u8))
        .collect();
    for (i, p) in sent.iter().enumerate() {
        source.push(p.clone());
        if i == 4 {
            source.push(packet(5000, max + 100, false, 0));
        }
    }
    for want in &sent {
        let got = tokio::time::timeout(LIMIT, tap.recv())
            .await
            .expect("packet in time")
            .expect("tap open");
        assert_eq!(got.data, want.data, "bytes of {}", want.seq);
        assert_eq!(
            (got.seq, got.ssrc, got.timestamp, got.marker),
            (want.seq, want.ssrc, want.timestamp, want.marker)
        );
        assert_eq!(got.keyframe, want.keyframe);
        assert_eq!(got.layers, want.layers);
        assert_eq!(got.sender_report, want.sender_report);
        assert_eq!(got.payload(), want.payload());
    }
    assert_eq!(a.counters().get("datagram_too_large"), Some(1));
    assert_eq!(a.counters().get("rtp_sent"), Some(10));
    assert_eq!(b.counters().get("rtp_received"), Some(10));

    // The origin ends the track: B's copy ends too, and the tap with it.
    let mut events = rb.events();
    drop(source);
    let ended = tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(weir_controlplane::RouterEvent::TrackClosed(t)) = events.recv().await {
                return t;
            }
        }
    })
    .await
    .expect("track ended on B");
    assert_eq!(ended, id);
    assert!(rb.tracks().is_empty());
    assert!(tokio::time::timeout(LIMIT, tap.recv())
        .await
        .unwrap()
        .is_none());
    drop(pulled);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while (a.counters().get("live_served_tracks") != Some(0)
        || b.counters().get("live_pulled_tracks") != Some(0))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.counters().get("live_served_tracks"), Some(0));
    assert_eq!(b.counters().get("live_pulled_tracks"), Some(0));
    a.close().await;
    b.close().await;
    wa.close().await;
    wb.close().await;
}

/// A → B → C: B serves a track it pulled itself. Packets reach C, and a
/// keyframe request on C travels back to the track's source on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_track_can_be_relayed_on_and_feedback_goes_all_the_way_back() {
    let room = || RouterConfig {
        id: Some("room".into()),
    };
    let mut servers = Vec::new();
    for id in ["a", "b", "c"] {
        let w = Worker::new(WorkerConfig {
            media_port: 0,
            cores: 1,
            ..WorkerConfig::default()
        })
        .await
        .unwrap();
        let r = w.create_router(room());
        let e = RelayEndpoint::bind(RelayConfig::new(id, b"k".to_vec()))
            .await
            .unwrap();
        e.serve_router(&r);
        servers.push((w, r, e));
    }
    let (ra, ea) = (&servers[0].1, &servers[0].2);
    let (rb, eb) = (&servers[1].1, &servers[1].2);
    let (rc, ec) = (&servers[2].1, &servers[2].2);
    let id = TrackId::from("cam");
    let mut source = ra
        .add_remote_track(RemoteTrackSpec {
            id: id.clone(),
            kind: MediaKind::Video,
            codec: CodecParams {
                name: "VP8".into(),
                clock_rate: 90_000,
                channels: None,
                fmtp: None,
                rtcp_fb: vec!["nack pli".into()],
            },
            encodings: 1,
            origin: TransportId("test".into()),
        })
        .unwrap();
    let mut source_feedback = source.take_feedback().unwrap();
    let b_to_a = eb.connect(ea.local_addr().unwrap()).await.unwrap();
    let _ab = b_to_a.pull(ra.id(), &id, rb).await.unwrap();
    let c_to_b = ec.connect(eb.local_addr().unwrap()).await.unwrap();
    let _bc = c_to_b.pull(rb.id(), &id, rc).await.unwrap();
    assert_eq!(rc.tracks()[0].transport.as_str(), "relay:b");
    let mut tap = rc.tap_track(&id, 64).unwrap();

    for seq in 0..5u16 {
        source.push(packet(seq, 1200, seq == 0, 0));
    }
    for seq in 0..5u16 {
        let got = tokio::time::timeout(LIMIT, tap.recv())
            .await
            .expect("packet at C in time")
            .expect("tap open");
        assert_eq!(got.seq, seq);
        assert_eq!(got.data, packet(seq, 1200, seq == 0, 0).data);
    }

    // A keyframe request on C (as a subscriber's PLI would make) reaches
    // the source on A through B.
    tap.request_keyframe(None);
    let fb = tokio::time::timeout(LIMIT, source_feedback.recv())
        .await
        .expect("feedback at A in time")
        .expect("feedback channel open");
    assert_eq!(
        fb,
        weir_dataplane::RelayFeedback::KeyframeRequest { encoding: None }
    );
    assert!(eb.counters().get("keyframe_requests").unwrap() >= 1);
    assert!(ea.counters().get("keyframe_requests").unwrap() >= 1);
    for (w, _, e) in &servers {
        e.close().await;
        w.close().await;
    }
}
