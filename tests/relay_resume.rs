//! A pulled track survives a lost relay connection that comes back within
//! the resume window: server B pulls a track of server A through a UDP
//! path the test can cut; the path is cut until the connection times out,
//! restored, and B connects and pulls again. The track must never end in
//! B's router (its taps and subscribers stay), packets must flow again,
//! and A's publisher must get a keyframe request. Cut again without a new
//! pull, the track ends once the window is over.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure};
use common::relay::{counter, cuttable_path};
use common::{run, until, within};
use weir::relay::{RelayConfig, RelayEndpoint};
use weir::{
    CodecParams, MediaKind, RemoteTrackSpec, RouterConfig, RouterEvent, TrackId, TransportId,
    Worker, WorkerConfig,
};
use weir_dataplane::packet::{LayerFacts, MediaPacket};
use weir_dataplane::packet_pool::PacketRef;
use weir_dataplane::RelayFeedback;

const SECRET: &[u8] = b"relay resume test secret";
const TIMEOUT: Duration = Duration::from_secs(15);
const WINDOW: Duration = Duration::from_secs(4);

fn packet(seq: u16) -> PacketRef {
    let mut data = vec![0u8; 200];
    data[0] = 0x80;
    data[1] = 96;
    data[2..4].copy_from_slice(&seq.to_be_bytes());
    data[8..12].copy_from_slice(&777u32.to_be_bytes());
    PacketRef::from(MediaPacket {
        payload_offset: 12,
        payload_len: 188,
        seq,
        timestamp: u32::from(seq) * 3000,
        ssrc: 777,
        marker: true,
        keyframe: seq == 0,
        layers: LayerFacts {
            frame_start: true,
            frame_end: true,
            ..LayerFacts::default()
        },
        sender_report: None,
        data,
    })
}

#[test]
fn a_pulled_track_resumes_after_the_connection_comes_back() {
    run("relay resume", Duration::from_secs(90), || async {
        let worker = || {
            Worker::new(WorkerConfig {
                media_port: 0,
                cores: 1,
                ..WorkerConfig::default()
            })
        };
        let (wa, wb) = (worker().await?, worker().await?);
        let room = || RouterConfig {
            id: Some("room".into()),
        };
        let (ra, rb) = (wa.create_router(room()), wb.create_router(room()));
        let liveness = (Duration::from_millis(200), Duration::from_millis(1000));
        let a = RelayEndpoint::bind(
            RelayConfig::new("a", SECRET.to_vec()).with_liveness(liveness.0, liveness.1),
        )
        .await?;
        let b = RelayEndpoint::bind(
            RelayConfig::new("b", SECRET.to_vec())
                .with_liveness(liveness.0, liveness.1)
                .with_resume_window(WINDOW),
        )
        .await?;
        a.serve_router(&ra);
        let (path, cut) = cuttable_path(a.local_addr()?).await?;
        let mut source = ra.add_remote_track(RemoteTrackSpec {
            id: "cam".into(),
            kind: MediaKind::Video,
            codec: CodecParams {
                name: "VP8".into(),
                clock_rate: 90_000,
                channels: None,
                fmtp: None,
                rtcp_fb: vec!["nack".into(), "nack pli".into()],
            },
            encodings: 1,
            origin: TransportId("test".into()),
        })?;
        let mut keyframe_requests = source.take_feedback().expect("feedback");
        let source = Arc::new(source);
        // The publisher: a packet every 10 ms until the test ends.
        let feeding = Arc::new(AtomicBool::new(true));
        {
            let (source, feeding) = (source.clone(), feeding.clone());
            tokio::spawn(async move {
                let mut seq = 0u16;
                while feeding.load(Ordering::Relaxed) {
                    source.push(packet(seq));
                    seq = seq.wrapping_add(1);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }

        let peer = within(TIMEOUT, "connect", b.connect(path)).await??;
        let first = within(TIMEOUT, "pull", peer.pull(ra.id(), &"cam".into(), &rb)).await??;
        ensure!(!first.resumed());
        let mut events = rb.events();
        let cam = TrackId::from("cam");
        let mut tap = rb.tap_track(&"cam".into(), 4096)?;
        let before = within(TIMEOUT, "a packet on B", tap.recv()).await?;
        ensure!(before.is_some());
        // Requests from the first subscription, if any, are not this test's.
        while keyframe_requests.try_recv().is_ok() {}

        // The path dies: the connection times out, the track waits.
        cut.store(true, Ordering::Relaxed);
        until(TIMEOUT, "B to notice the dead connection", || {
            counter(&b, "peers_timed_out") == 1
        })
        .await?;
        drop(first);
        ensure!(
            rb.tracks().iter().any(|t| t.id == cam),
            "the track waits in B's router"
        );
        // What was queued before the cut.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), tap.recv()).await {}

        // The path comes back; B connects and pulls again: resumed.
        cut.store(false, Ordering::Relaxed);
        let peer = within(TIMEOUT, "reconnect", b.connect(path)).await??;
        let again = within(
            TIMEOUT,
            "pull again",
            peer.pull(ra.id(), &"cam".into(), &rb),
        )
        .await??;
        ensure!(
            again.resumed(),
            "the second pull takes the waiting track over"
        );
        ensure!(counter(&b, "tracks_resumed") == 1);
        within(TIMEOUT, "a packet after the resume", tap.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the tap ended"))?;
        match within(
            TIMEOUT,
            "A's publisher asked for a keyframe",
            keyframe_requests.recv(),
        )
        .await?
        {
            Some(RelayFeedback::KeyframeRequest { .. }) => {}
            other => bail!("expected a keyframe request, got {other:?}"),
        }
        // The router never saw the track end.
        while let Ok(ev) = events.try_recv() {
            ensure!(
                !matches!(ev, RouterEvent::TrackClosed(_)),
                "the track ended in B's router: {ev:?}"
            );
        }

        // Cut again and do not pull: the track ends after the window.
        cut.store(true, Ordering::Relaxed);
        until(TIMEOUT, "the second timeout", || {
            counter(&b, "peers_timed_out") == 2
        })
        .await?;
        drop(again);
        ensure!(
            rb.tracks().iter().any(|t| t.id == cam),
            "the track waits again"
        );
        within(TIMEOUT, "the track to end", async {
            loop {
                match events.recv().await {
                    Ok(RouterEvent::TrackClosed(t)) if t == cam => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(anyhow::anyhow!("events: {e}")),
                }
            }
        })
        .await??;
        ensure!(counter(&b, "live_pulled_tracks") == 0);

        feeding.store(false, Ordering::Relaxed);
        a.close().await;
        b.close().await;
        wa.close().await;
        wb.close().await;
        Ok(())
    });
}
