//! Two Weir servers in one process, relayed over QUIC on 127.0.0.1: a
//! webrtc-rs publisher on server A, a webrtc-rs subscriber on server B.
//!
//! Checked: media arrives intact and decrypts; a PLI from B's subscriber
//! reaches A's publisher; NACK recovery across the relay with datagrams
//! dropped in A's relay sender; a lost relay connection ends the relayed
//! tracks on B within 3 s with nothing left behind.
//!
//! Run with `RUST_LOG=info,weir_relay=debug cargo test --test relay -- --nocapture`
//! for logs.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::media::{counter_of, dump_head, verify_stream};
use common::peers::{new_api, wait_connected, MediaConfig, PubPeer, SubPeer, TrackCollector};
use common::relay::{counter, cuttable_path, relay_server, RelayServer as Server};
use common::{run, until, within};
use tokio::sync::broadcast;
use webrtc::api::API;
use weir::relay::{PulledTrack, RelayConfig, RelayPeer};
use weir::{
    MediaKind, PublishTransport, Publisher, Router, RouterEvent, SubscribeTransport, TrackId,
};

const SDK_TIMEOUT: Duration = Duration::from_secs(10);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
const TEST_LIMIT: Duration = Duration::from_secs(120);
const SECRET: &[u8] = b"relay test cluster secret";

/// One "server": a worker with one router, and a relay endpoint.
async fn server(id: &str, drop_every_nth_rtp: u64) -> Result<Server> {
    relay_server(RelayConfig::new(id, SECRET.to_vec()).with_drop_every_nth_rtp(drop_every_nth_rtp))
        .await
}

struct Published {
    peer: PubPeer,
    transport: PublishTransport,
    video: Publisher,
    audio: Publisher,
}

async fn publish(router: &Router, api: &API) -> Result<Published> {
    let mut peer = PubPeer::new(api).await?;
    let transport = router
        .create_publish_transport(Default::default())
        .await
        .context("create_publish_transport")?;
    let answer = transport.get_answer(&peer.offer().await?).await?;
    peer.set_answer(answer).await?;
    peer.start_media(MediaConfig::default());
    wait_connected(&mut peer.state, "publisher").await?;
    let (mut video, mut audio) = (None, None);
    for t in transport.offered_tracks() {
        let p = within(SDK_TIMEOUT, "publish", transport.publish(&t.mid)).await??;
        match t.kind {
            MediaKind::Video => video = Some(p),
            MediaKind::Audio => audio = Some(p),
        }
    }
    Ok(Published {
        peer,
        transport,
        video: video.context("no video")?,
        audio: audio.context("no audio")?,
    })
}

struct Subscribed {
    peer: SubPeer,
    transport: SubscribeTransport,
    video: TrackCollector,
    audio: TrackCollector,
    video_ssrc: u32,
    audio_ssrc: u32,
    offers: Arc<Mutex<Vec<String>>>,
}

async fn subscribe(
    router: &Router,
    api: &API,
    video: &TrackId,
    audio: &TrackId,
) -> Result<Subscribed> {
    let mut peer = SubPeer::new(api, "sub-on-b").await?;
    let transport = router
        .create_subscribe_transport(Default::default())
        .await
        .context("create_subscribe_transport")?;
    let offers: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let offers = offers.clone();
        transport.on_negotiation_needed(move |o| offers.lock().unwrap().push(o));
    }
    let (vs, offer) = transport
        .subscribe(video)
        .await
        .context("subscribe(video)")?;
    transport.set_answer(&peer.answer(&offer).await?).await?;
    let (aus, offer) = transport
        .subscribe(audio)
        .await
        .context("subscribe(audio)")?;
    transport.set_answer(&peer.answer(&offer).await?).await?;
    let video_ssrc = common::sdp::media_ssrc(&offer, vs.mid()).context("video ssrc")?;
    let audio_ssrc = common::sdp::media_ssrc(&offer, aus.mid()).context("audio ssrc")?;
    wait_connected(&mut peer.state, "sub-on-b").await?;
    let (v, a) = peer.video_and_audio(MEDIA_TIMEOUT).await?;
    Ok(Subscribed {
        peer,
        transport,
        video: v,
        audio: a,
        video_ssrc,
        audio_ssrc,
        offers,
    })
}

/// B pulls A's two tracks into its router, which lists them at once.
async fn pull_both(
    a: &Server,
    b: &Server,
    peer: &RelayPeer,
    pubd: &Published,
) -> Result<(PulledTrack, PulledTrack)> {
    let v = within(
        SDK_TIMEOUT,
        "pull video",
        peer.pull(a.router.id(), pubd.video.id(), &b.router),
    )
    .await??;
    let au = within(
        SDK_TIMEOUT,
        "pull audio",
        peer.pull(a.router.id(), pubd.audio.id(), &b.router),
    )
    .await??;
    let listed = b.router.tracks();
    for (id, codec) in [(pubd.video.id(), "VP8"), (pubd.audio.id(), "opus")] {
        let t = listed
            .iter()
            .find(|t| &t.id == id)
            .with_context(|| format!("B's router lacks {id}: {listed:?}"))?;
        ensure!(
            t.codec.eq_ignore_ascii_case(codec),
            "{id}: codec {}",
            t.codec
        );
        ensure!(
            t.transport.as_str() == "relay:a",
            "{id}: transport {}",
            t.transport
        );
    }
    Ok((v, au))
}

#[test]
fn a_track_published_on_a_is_received_on_b_and_ends_when_the_relay_dies() {
    run("relay end to end", TEST_LIMIT, || async {
        let api = new_api()?;
        let a = server("a", 0).await?;
        let b = server("b", 0).await?;
        let (via, cut) = cuttable_path(a.relay.local_addr()?).await?;
        let peer = within(SDK_TIMEOUT, "relay connect", b.relay.connect(via)).await??;
        ensure!(peer.server_id() == "a");

        let mut pubd = publish(&a.router, &api).await?;
        let (pv, pa) = pull_both(&a, &b, &peer, &pubd).await?;
        let mut b_events = b.router.events();
        let mut sub = subscribe(&b.router, &api, pubd.video.id(), pubd.audio.id()).await?;

        // Media: intact (webrtc-rs only hands out SRTP-authenticated RTP),
        // in order, continuous, from a keyframe.
        sub.video.wait_for(90, MEDIA_TIMEOUT, "video on B").await?;
        sub.audio.wait_for(100, MEDIA_TIMEOUT, "audio on B").await?;
        let v = sub.video.snapshot();
        let sv = verify_stream("B video", &v, &pubd.peer.sent.video(), sub.video_ssrc, true);
        let sa = verify_stream(
            "B audio",
            &sub.audio.snapshot(),
            &pubd.peer.sent.audio(),
            sub.audio_ssrc,
            false,
        );
        ensure!(
            sv.ok() && sa.ok(),
            "{:?}\n{:?}\n{}",
            sv.problems,
            sa.problems,
            dump_head(&v, 12)
        );
        ensure!(
            sv.first_is_keyframe,
            "B's video does not start with a keyframe"
        );
        ensure!(counter(&a.relay, "rtp_sent") > 0 && counter(&b.relay, "rtp_received") > 0);
        ensure!(counter(&a.relay, "datagram_too_large") == 0);

        // A PLI from B's subscriber reaches A's publisher. The origin
        // throttles keyframe requests, so ask until one gets through.
        let before = pubd.peer.keyframe_request_times().len();
        let kf_before = counter(&a.relay, "keyframe_requests");
        let mut kf = pubd.peer.keyframe_requests.clone();
        within(Duration::from_secs(5), "the PLI at A's publisher", async {
            loop {
                use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
                sub.peer
                    .pc
                    .write_rtcp(&[Box::new(PictureLossIndication {
                        sender_ssrc: 1,
                        media_ssrc: sub.video_ssrc,
                    })])
                    .await?;
                let got =
                    tokio::time::timeout(Duration::from_millis(500), kf.wait_for(|n| *n > before))
                        .await;
                if let Ok(r) = got {
                    r.map_err(|_| anyhow!("RTCP reader ended"))?;
                    return Ok::<_, anyhow::Error>(());
                }
            }
        })
        .await??;
        ensure!(
            counter(&a.relay, "keyframe_requests") > kf_before,
            "the PLI did not cross the relay"
        );
        ensure!(
            counter(&b.relay, "feedback_sent") > 0 && counter(&a.relay, "feedback_received") > 0
        );

        // The relay path dies: B ends the relayed tracks within 3 s and
        // its subscriber is offered them as ended.
        while b_events.try_recv().is_ok() {}
        let offers_before = sub.offers.lock().unwrap().len();
        cut.store(true, Ordering::Relaxed);
        let cut_at = Instant::now();
        let mut ended = Vec::new();
        within(
            Duration::from_secs(3),
            "relayed tracks ending on B",
            async {
                while ended.len() < 2 {
                    match b_events.recv().await {
                        Ok(RouterEvent::TrackClosed(id)) => ended.push(id),
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(e) => return Err(anyhow!("router events: {e}")),
                    }
                }
                Ok(())
            },
        )
        .await??;
        eprintln!(
            "relayed tracks ended on B {:?} after the cut",
            cut_at.elapsed()
        );
        ensure!(
            ended.contains(pubd.video.id()) && ended.contains(pubd.audio.id()),
            "ended {ended:?}"
        );
        ensure!(
            b.router.tracks().is_empty(),
            "B still lists {:?}",
            b.router.tracks()
        );
        until(SDK_TIMEOUT, "B's renegotiation without the tracks", || {
            sub.offers.lock().unwrap().len() > offers_before
        })
        .await?;
        let offer = sub
            .offers
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default();
        ensure!(
            !offer.contains("a=sendonly"),
            "an ended track is still sent:\n{offer}"
        );
        // Nothing left behind on either side; A's publisher goes on.
        until(SDK_TIMEOUT, "relay state released", || {
            counter(&b.relay, "live_peers") == 0
                && counter(&b.relay, "live_pulled_tracks") == 0
                && counter(&a.relay, "live_peers") == 0
                && counter(&a.relay, "live_served_tracks") == 0
        })
        .await
        .with_context(|| {
            format!(
                "A {:?}\nB {:?}",
                a.relay.counters().snapshot(),
                b.relay.counters().snapshot()
            )
        })?;
        ensure!(counter(&b.relay, "peers_timed_out") == 1);
        ensure!(
            a.router.tracks().len() == 2,
            "A lost its tracks: {:?}",
            a.router.tracks()
        );
        drop((pv, pa));
        pubd.peer.wait_frames(10, SDK_TIMEOUT).await?;

        sub.transport.close().await;
        sub.peer.close().await;
        pubd.transport.close().await;
        pubd.peer.close().await;
        for s in [&a, &b] {
            s.relay.close().await;
            s.worker.close().await;
        }
        Ok(())
    });
}

#[test]
fn nack_recovery_across_the_relay() {
    run("relay NACK recovery", TEST_LIMIT, || async {
        let api = new_api()?;
        // A's relay drops every 7th RTP datagram it sends for the first time.
        let a = server("a", 7).await?;
        let b = server("b", 0).await?;
        let peer = within(
            SDK_TIMEOUT,
            "relay connect",
            b.relay.connect(a.relay.local_addr()?),
        )
        .await??;
        let mut pubd = publish(&a.router, &api).await?;
        let (_pv, _pa) = pull_both(&a, &b, &peer, &pubd).await?;
        let mut sub = subscribe(&b.router, &api, pubd.video.id(), pubd.audio.id()).await?;
        sub.video.wait_for(240, MEDIA_TIMEOUT, "video on B").await?;
        let v = sub.video.snapshot();
        let mut counters: Vec<u32> = v.iter().filter_map(|r| counter_of(&r.payload)).collect();
        counters.sort_unstable();
        counters.dedup();
        let (first, last) = (counters[0], counters[counters.len() - 1]);
        // The newest packets may still be in recovery: judge all but them.
        let settled = last.saturating_sub(30);
        let missing: Vec<u32> = (first..=settled)
            .filter(|c| counters.binary_search(c).is_err())
            .collect();
        let (drops, retransmits) = (
            counter(&a.relay, "emulated_drops"),
            counter(&a.relay, "retransmits_sent"),
        );
        eprintln!(
            "video counters {first}..{last}: {} received, {} missing before {settled}; relay dropped {drops}, retransmitted {retransmits}, B's NACKs {}",
            counters.len(),
            missing.len(),
            counter(&b.relay, "feedback_sent"),
        );
        ensure!(drops > 20, "the relay dropped only {drops} datagrams");
        ensure!(retransmits > 0, "nothing was retransmitted");
        ensure!(
            missing.is_empty(),
            "video packets never recovered: {missing:?}"
        );
        // Every payload that arrived is one the publisher sent.
        let sent = pubd.peer.sent.video();
        for r in &v {
            let c = counter_of(&r.payload).context("payload without counter")?;
            ensure!(
                sent.get(&c).is_some_and(|s| s.payload == r.payload),
                "payload {c} differs"
            );
        }
        sub.transport.close().await;
        sub.peer.close().await;
        pubd.transport.close().await;
        pubd.peer.close().await;
        for s in [&a, &b] {
            s.relay.close().await;
            s.worker.close().await;
        }
        Ok(())
    });
}

/// The catalog: B learns of A's tracks without asking (the ones already
/// published when the connection starts, then each change), never hears
/// its own relayed copies announced back by A, and sees every track of A
/// end when the connection ends.
#[test]
fn peers_learn_each_others_tracks_from_the_catalog() {
    run("relay catalog", TEST_LIMIT, || async {
        let api = new_api()?;
        let a = server("a", 0).await?;
        let b = server("b", 0).await?;
        let pubd = publish(&a.router, &api).await?;
        let mut catalog = b.relay.catalog();
        let peer = within(
            SDK_TIMEOUT,
            "relay connect",
            b.relay.connect(a.relay.local_addr()?),
        )
        .await??;
        let want = [pubd.video.id().clone(), pubd.audio.id().clone()];
        let mut live = Vec::new();
        within(SDK_TIMEOUT, "catalog snapshot", async {
            while live.len() < 2 {
                let ev = catalog.recv().await?;
                ensure!(
                    ev.peer == "a" && ev.router == *a.router.id() && ev.live,
                    "{ev:?}"
                );
                // The peer is listed before its first catalog event, so an
                // application can pull through it at once.
                ensure!(
                    b.relay.peers().iter().any(|p| p.server_id() == ev.peer),
                    "a catalog event from {} before the peer is listed",
                    ev.peer
                );
                live.push(ev.track);
            }
            Ok::<_, anyhow::Error>(())
        })
        .await??;
        live.sort();
        let mut sorted = want.to_vec();
        sorted.sort();
        ensure!(live == sorted, "catalog {live:?}, published {sorted:?}");
        let mut listed = peer.remote_tracks(a.router.id());
        listed.sort();
        ensure!(listed == sorted, "remote_tracks {listed:?}");

        // B's relayed copies are not announced back to A.
        let (pv, pa) = pull_both(&a, &b, &peer, &pubd).await?;
        let a_side = a.relay.peers();
        ensure!(a_side.len() == 1, "A has {} peers", a_side.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(
            a_side[0].remote_tracks(b.router.id()).is_empty(),
            "B announced relayed tracks back: {:?}",
            a_side[0].remote_tracks(b.router.id())
        );

        // The video ends at A: B hears it.
        pubd.video.close().await;
        let ev = within(SDK_TIMEOUT, "video ended", catalog.recv()).await??;
        ensure!(ev.track == want[0] && !ev.live, "{ev:?}");

        // The connection ends: the rest of A's tracks end for B.
        peer.close();
        let ev = within(SDK_TIMEOUT, "audio ended", catalog.recv()).await??;
        ensure!(ev.track == want[1] && !ev.live, "{ev:?}");
        ensure!(peer.remote_tracks(a.router.id()).is_empty());
        drop((pv, pa, pubd));
        a.worker.close().await;
        b.worker.close().await;
        Ok(())
    });
}
