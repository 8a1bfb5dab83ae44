//! Downstream wanted layers across the relay (real QUIC on 127.0.0.1): a
//! synthetic VP8 simulcast track of three encodings on server A, pulled by
//! server B, where a webrtc-rs subscriber prefers the lowest encoding.
//!
//! Checked: B tells A what its subscriber wants, and A stops relaying the
//! two upper encodings (its `rtp_sent` grows by encoding 0's packets only,
//! the rest counted in `layers_filtered`). When the subscriber switches up,
//! A asks its publisher for a keyframe of the encoding turned back on,
//! relays it from that keyframe on, and the subscriber's first packet of
//! that encoding starts a keyframe: a decodable switch. The feeder sends
//! keyframes only at the start and when asked, so the switch can only
//! have come from the request the wanted layers caused. Last, A sees B's
//! summary of its subscriber's receiver reports and bandwidth.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::media::{counter_of, vp8_frame, vp8_is_keyframe_start, VIDEO_TS_STEP};
use common::peers::{new_api, wait_connected, SubPeer, TrackCollector};
use common::relay::relay_server;
use common::{run, within};
use weir::relay::{RelayConfig, RelayEndpoint};
use weir::{CodecParams, MediaKind, RemoteTrackSpec, Router, TrackId, TransportId, Worker};
use weir_dataplane::packet::{LayerFacts, MediaPacket};
use weir_dataplane::packet_pool::PacketRef;
use weir_dataplane::RelayFeedback;

const SECRET: &[u8] = b"relay layers test secret";
const TIMEOUT: Duration = Duration::from_secs(20);
const TEST_LIMIT: Duration = Duration::from_secs(120);
const ENCODINGS: u8 = 3;
/// Counters of encoding `e`'s payloads start at `e * COUNTER_BASE`, so a
/// received payload names its encoding.
const COUNTER_BASE: u32 = 1_000_000;

async fn server(id: &str) -> Result<(Worker, Router, RelayEndpoint)> {
    let s = relay_server(RelayConfig::new(id, SECRET.to_vec())).await?;
    Ok((s.worker, s.router, s.relay))
}

/// One RTP packet of encoding `e`.
fn packet(
    e: u8,
    seq: u16,
    ts: u32,
    payload: &[u8],
    keyframe: bool,
    start: bool,
    end: bool,
) -> PacketRef {
    let ssrc = 0x5000 + u32::from(e);
    let mut data = vec![0x80, if end { 0x80 | 96 } else { 96 }];
    data.extend_from_slice(&seq.to_be_bytes());
    data.extend_from_slice(&ts.to_be_bytes());
    data.extend_from_slice(&ssrc.to_be_bytes());
    data.extend_from_slice(payload);
    PacketRef::from(MediaPacket {
        payload_offset: 12,
        payload_len: payload.len(),
        seq,
        timestamp: ts,
        ssrc,
        marker: end,
        keyframe,
        layers: LayerFacts {
            encoding: e,
            frame_start: start,
            frame_end: end,
            switching_point: true,
            ..LayerFacts::default()
        },
        sender_report: None,
        data,
    })
}

/// What the feeder did, per encoding.
#[derive(Default)]
struct Fed {
    packets: [AtomicU64; ENCODINGS as usize],
    keyframes_asked: [AtomicU64; ENCODINGS as usize],
}

/// Feeds A's track at 30 frames/s per encoding; a keyframe first, then
/// only when A's data plane asks (a keyframe request reaching the source).
fn feed(
    source: weir::RemoteTrack,
    mut feedback: tokio::sync::mpsc::Receiver<RelayFeedback>,
    fed: Arc<Fed>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seq = [0u16; ENCODINGS as usize];
        let mut counter: Vec<u32> = (0..u32::from(ENCODINGS))
            .map(|e| e * COUNTER_BASE)
            .collect();
        let mut want_key = [true; ENCODINGS as usize];
        let mut ts = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            while let Ok(fb) = feedback.try_recv() {
                if let RelayFeedback::KeyframeRequest { encoding } = fb {
                    for e in 0..ENCODINGS {
                        if encoding.is_none_or(|x| x == e) {
                            want_key[usize::from(e)] = true;
                            fed.keyframes_asked[usize::from(e)].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            ts = ts.wrapping_add(VIDEO_TS_STEP);
            for e in 0..ENCODINGS {
                let i = usize::from(e);
                let key = std::mem::take(&mut want_key[i]);
                let frame = vp8_frame(key, &mut counter[i]);
                let n = frame.len();
                for (k, (payload, start, key_start)) in frame.into_iter().enumerate() {
                    // Higher encodings cost more, as real ones do (the
                    // allocator ranks them by rate): filler before the
                    // counter, which stays last.
                    let (body, counter_bytes) = payload.split_at(payload.len() - 4);
                    let mut padded = body.to_vec();
                    padded.extend(std::iter::repeat_n(0x5a, 150 * usize::from(e)));
                    padded.extend_from_slice(counter_bytes);
                    let payload = padded;
                    let p = packet(e, seq[i], ts, &payload, key_start, start, k + 1 == n);
                    seq[i] = seq[i].wrapping_add(1);
                    source.push(p);
                    fed.packets[i].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}

fn counter(e: &RelayEndpoint, name: &str) -> u64 {
    e.counters().get(name).unwrap_or(0)
}

/// The encoding of each packet the subscriber received, in order.
fn encodings(video: &TrackCollector) -> Vec<(u8, bool)> {
    video
        .snapshot()
        .iter()
        .filter_map(|p| {
            let c = counter_of(&p.payload)?;
            Some(((c / COUNTER_BASE) as u8, vp8_is_keyframe_start(&p.payload)))
        })
        .collect()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    within(TIMEOUT, what, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[test]
fn the_origin_relays_only_the_layers_downstream_subscribers_want() {
    run("relay_layers", TEST_LIMIT, || async {
        let (wa, ra, a) = server("a").await?;
        let (wb, rb, b) = server("b").await?;
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
                    rtcp_fb: vec!["nack".into(), "nack pli".into(), "ccm fir".into()],
                },
                encodings: ENCODINGS,
                origin: TransportId("test-source".into()),
            })
            .context("add_remote_track on A")?;
        let feedback = source.take_feedback().context("source feedback")?;
        let peer = b.connect(a.local_addr()?).await?;
        let _pulled = peer.pull(ra.id(), &id, &rb).await?;

        let fed = Arc::new(Fed::default());
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = feed(source, feedback, fed.clone(), stop.clone());

        // A webrtc-rs subscriber on B that prefers the lowest encoding.
        let api = new_api()?;
        let mut sub = SubPeer::new(&api, "sub-on-b").await?;
        let transport = rb
            .create_subscribe_transport(Default::default())
            .await
            .context("create_subscribe_transport")?;
        let (vs, offer) = transport.subscribe(&id).await.context("subscribe")?;
        vs.set_preferred_layers(0, 2);
        transport.set_answer(&sub.answer(&offer).await?).await?;
        wait_connected(&mut sub.state, "sub-on-b").await?;
        let mut video = sub.next_track(TIMEOUT).await?;
        video.wait_for(20, TIMEOUT, "subscriber on B").await?;

        // B told A, and A filters the upper encodings.
        until("A to hear B's wanted layers", || {
            counter(&a, "layer_updates_received") > 0 && counter(&a, "layers_filtered") > 20
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent0 = counter(&a, "rtp_sent");
        let filtered0 = counter(&a, "layers_filtered");
        let fed0: Vec<u64> = fed
            .packets
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = counter(&a, "rtp_sent") - sent0;
        let filtered = counter(&a, "layers_filtered") - filtered0;
        let fed_now: Vec<u64> = fed
            .packets
            .iter()
            .zip(&fed0)
            .map(|(n, f)| n.load(Ordering::Relaxed) - f)
            .collect();
        // Packets in the tap at the window's edges: a frame's worth of slack.
        let slack = 4;
        ensure!(
            sent.abs_diff(fed_now[0]) <= slack,
            "A relayed {sent} packets while encoding 0 had {} (fed {fed_now:?})",
            fed_now[0]
        );
        ensure!(
            filtered.abs_diff(fed_now[1] + fed_now[2]) <= slack,
            "A filtered {filtered} packets while encodings 1 and 2 had {} (fed {fed_now:?})",
            fed_now[1] + fed_now[2]
        );
        let got = encodings(&video);
        ensure!(
            got.iter().all(|(e, _)| *e == 0),
            "the subscriber got other encodings than 0: {:?}",
            got.iter()
                .filter(|(e, _)| *e != 0)
                .take(5)
                .collect::<Vec<_>>()
        );

        // Up to the top encoding: a keyframe is asked for, relayed, and the
        // subscriber's first packet of encoding 2 starts it.
        let asked = fed.keyframes_asked[2].load(Ordering::Relaxed);
        let before = video.len();
        vs.set_preferred_layers(2, 2);
        until("the subscriber to get encoding 2", || {
            encodings(&video)[before..].iter().any(|(e, _)| *e == 2)
        })
        .await?;
        ensure!(
            fed.keyframes_asked[2].load(Ordering::Relaxed) > asked,
            "no keyframe of encoding 2 was asked for"
        );
        let first = encodings(&video)[before..]
            .iter()
            .copied()
            .find(|(e, _)| *e == 2);
        ensure!(
            first == Some((2, true)),
            "the first packet of encoding 2 does not start a keyframe: {first:?}"
        );
        // And A relays all three encodings again (the subscriber's wanted
        // spatial layer covers them).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let filtered0 = counter(&a, "layers_filtered");
        tokio::time::sleep(Duration::from_millis(500)).await;
        ensure!(
            counter(&a, "layers_filtered") - filtered0 <= slack,
            "A still filters after the switch up"
        );
        ensure!(counter(&b, "malformed") == 0, "malformed datagrams on B");

        // B sums up its subscriber's receiver reports and bandwidth for A
        // (about once a second): A sees them per relayed track.
        let reported = || {
            a.peers()
                .iter()
                .flat_map(|p| p.downstream_reports())
                .find(|r| r.track == id && r.updated.is_some())
        };
        until("A to get B's report on the track", || {
            reported().is_some_and(|r| r.bandwidth_bps.is_some())
        })
        .await?;
        let report = reported().context("report")?;
        ensure!(
            report.router == *ra.id(),
            "reported for the wrong router: {report:?}"
        );
        // The synthetic source sends no sender reports, so B sends none to
        // its subscriber and the subscriber's reports carry no RTT.
        ensure!(
            report.rtt.is_none(),
            "an RTT without sender reports: {report:?}"
        );
        ensure!(
            report.fraction_lost == 0 && report.cumulative_lost == 0,
            "nothing is lost on loopback: {report:?}"
        );
        ensure!(
            report.bandwidth_bps.is_some_and(|bps| bps > 0),
            "B gives its subscriber some bandwidth for the track: {report:?}"
        );

        stop.store(true, Ordering::Relaxed);
        let _ = feeder.await;
        sub.close().await;
        drop(transport);
        a.close().await;
        b.close().await;
        wa.close().await;
        wb.close().await;
        Ok(())
    });
}
