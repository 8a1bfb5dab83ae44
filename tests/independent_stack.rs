//! Weir against an independent WebRTC stack: webrtc-rs publishes VP8 + Opus
//! through the SDK and other webrtc-rs peers subscribe, all in-process over
//! 127.0.0.1 with no signaling server.
//!
//! webrtc-rs only hands out RTP that passed SRTP authentication, so a payload
//! that arrives byte-identical went through Weir's SRTP both ways intact.
//!
//! Run with `RUST_LOG=info,weir=debug cargo test --test independent_stack -- --nocapture`
//! for logs.

mod common;

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::media::{dump_head, verify_stream, SentPacket, StreamSummary};
use common::peers::{
    new_api, new_api_default_dtls_role, wait_connected, MediaConfig, PubPeer, SubPeer,
    TrackCollector,
};
use common::{free_base_port, run, within};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tracing::info;
use webrtc::api::API;
use weir::{
    MediaKind, PublishTransport, Publisher, Router, SubscribeTransport, Subscriber, TrackId,
    Worker, WorkerConfig,
};

const SDK_TIMEOUT: Duration = Duration::from_secs(10);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);
const TRACK_TIMEOUT: Duration = Duration::from_secs(15);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Video packets (≈ 2 s at 30 fps) and audio packets (2 s at 50 pps) each
/// subscriber must get.
const MIN_VIDEO: usize = 60;
const MIN_AUDIO: usize = 100;

async fn start_worker() -> Result<Worker> {
    let base = free_base_port(16);
    let config = WorkerConfig {
        media_ip: IpAddr::from([127, 0, 0, 1]),
        media_port: base,
        cores: 2,
        io_backend: common::io_backend_from_env(),
        ..Default::default()
    };
    info!(?config, "starting worker");
    let worker = within(SDK_TIMEOUT, "Worker::new", Worker::new(config))
        .await?
        .context("Worker::new")?;
    info!(addrs = ?worker.media_addrs(), "worker started");
    Ok(worker)
}

/// A webrtc-rs publisher with its Weir publish transport and two publishers.
struct Published {
    peer: PubPeer,
    transport: PublishTransport,
    video: Publisher,
    audio: Publisher,
}

impl Published {
    fn video_id(&self) -> TrackId {
        self.video.id().clone()
    }
    fn audio_id(&self) -> TrackId {
        self.audio.id().clone()
    }
}

async fn publish(router: &Router, api: &API, media: MediaConfig) -> Result<Published> {
    let mut peer = PubPeer::new(api).await?;
    let transport = within(
        SDK_TIMEOUT,
        "create_publish_transport",
        router.create_publish_transport(Default::default()),
    )
    .await?
    .context("create_publish_transport")?;
    let offer = peer.offer().await?;
    info!("publisher offer:\n{offer}");
    let answer = within(
        SDK_TIMEOUT,
        "PublishTransport::get_answer",
        transport.get_answer(&offer),
    )
    .await?
    .context("PublishTransport::get_answer")?;
    info!("Weir's answer to the publisher:\n{answer}");
    ensure!(
        answer.contains("a=ice-lite"),
        "Weir's answer is not ICE-lite:\n{answer}"
    );
    ensure!(
        answer.contains("a=candidate:"),
        "Weir's answer has no candidate:\n{answer}"
    );
    peer.set_answer(answer).await?;
    // publish() resolves on the first media packet, so media flows first.
    peer.start_media(media);
    wait_connected(&mut peer.state, "publisher").await?;

    let offered = transport.offered_tracks();
    info!(?offered, "offered tracks");
    ensure!(
        offered.len() == 2,
        "expected 2 offered tracks, got {offered:?}"
    );
    let mut video = None;
    let mut audio = None;
    for t in &offered {
        let p = within(
            PUBLISH_TIMEOUT,
            &format!("publish({}) ({})", t.mid, t.kind),
            transport.publish(&t.mid),
        )
        .await?
        .with_context(|| format!("publish({})", t.mid))?;
        let info = p.info();
        info!(?info, "published");
        ensure!(
            info.kind == t.kind,
            "track {} published as {} but offered as {}",
            info.id,
            info.kind,
            t.kind
        );
        ensure!(
            info.mid == t.mid,
            "track {} has mid {} but was published from mid {}",
            info.id,
            info.mid,
            t.mid
        );
        ensure!(
            &info.transport == transport.id(),
            "track {} belongs to transport {}",
            info.id,
            info.transport
        );
        match t.kind {
            MediaKind::Video => {
                ensure!(
                    info.codec.eq_ignore_ascii_case("VP8"),
                    "video codec {}",
                    info.codec
                );
                video = Some(p);
            }
            MediaKind::Audio => {
                ensure!(
                    info.codec.eq_ignore_ascii_case("opus"),
                    "audio codec {}",
                    info.codec
                );
                audio = Some(p);
            }
        }
    }
    let (video, audio) = (
        video.context("no video track offered")?,
        audio.context("no audio track offered")?,
    );
    let listed: Vec<_> = router.tracks().into_iter().map(|t| t.id).collect();
    ensure!(
        listed.contains(video.id()) && listed.contains(audio.id()),
        "router.tracks() = {listed:?} lacks {} or {}",
        video.id(),
        audio.id()
    );
    Ok(Published {
        peer,
        transport,
        video,
        audio,
    })
}

/// A webrtc-rs subscriber with its Weir subscribe transport.
struct Subscribed {
    label: &'static str,
    peer: SubPeer,
    transport: SubscribeTransport,
    #[allow(dead_code)]
    video_sub: Subscriber,
    #[allow(dead_code)]
    audio_sub: Subscriber,
    video: TrackCollector,
    audio: TrackCollector,
    video_ssrc: u32,
    audio_ssrc: u32,
    closed: bool,
}

/// Subscribes to video (offer/answer), then to audio (a second offer with
/// both), and waits for both remote tracks.
async fn subscribe(
    router: &Router,
    api: &API,
    label: &'static str,
    video: &TrackId,
    audio: &TrackId,
) -> Result<Subscribed> {
    let mut peer = SubPeer::new(api, label).await?;
    let transport = within(
        SDK_TIMEOUT,
        "create_subscribe_transport",
        router.create_subscribe_transport(Default::default()),
    )
    .await?
    .context("create_subscribe_transport")?;

    let (video_sub, offer1) = within(SDK_TIMEOUT, "subscribe(video)", transport.subscribe(video))
        .await?
        .context("subscribe(video)")?;
    info!("{label}: Weir's first offer:\n{offer1}");
    ensure!(
        video_sub.track_id() == video,
        "{label}: subscriber for {} reports track {}",
        video,
        video_sub.track_id()
    );
    ensure!(
        video_sub.kind() == MediaKind::Video,
        "{label}: video subscriber kind {}",
        video_sub.kind()
    );
    // Video is offered with RTX (RFC 4588): an rtx format bound to VP8 and
    // an FID group pairing the media SSRC with the RTX one.
    let video_section = common::sdp::sections(&offer1)
        .into_iter()
        .find(|s| s.mid.as_deref() == Some(video_sub.mid()))
        .context("the first offer has the video m-section")?;
    let rtx_pt = video_section
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("a=rtpmap:")?.strip_suffix(" rtx/90000"))
        .with_context(|| format!("{label}: no RTX format offered:\n{offer1}"))?
        .to_owned();
    ensure!(
        video_section
            .lines
            .iter()
            .any(|l| l.starts_with(&format!("a=fmtp:{rtx_pt} apt="))),
        "{label}: the RTX format has no apt:\n{offer1}"
    );
    ensure!(
        video_section
            .lines
            .iter()
            .any(|l| l.starts_with("a=ssrc-group:FID ")),
        "{label}: no FID group for the RTX SSRC:\n{offer1}"
    );
    let answer1 = peer.answer(&offer1).await?;
    info!("{label}: first answer:\n{answer1}");
    let rtx_answered = answer1.contains(&format!("a=rtpmap:{rtx_pt} rtx/90000"));
    info!("{label}: webrtc-rs kept RTX in its answer: {rtx_answered}");
    within(SDK_TIMEOUT, "set_answer #1", transport.set_answer(&answer1))
        .await?
        .context("set_answer #1")?;

    let (audio_sub, offer2) = within(SDK_TIMEOUT, "subscribe(audio)", transport.subscribe(audio))
        .await?
        .context("subscribe(audio)")?;
    info!("{label}: Weir's second offer:\n{offer2}");
    ensure!(
        audio_sub.kind() == MediaKind::Audio,
        "{label}: audio subscriber kind {}",
        audio_sub.kind()
    );
    ensure!(
        audio_sub.mid() != video_sub.mid(),
        "{label}: audio and video share mid {}",
        audio_sub.mid()
    );
    let answer2 = peer.answer(&offer2).await?;
    info!("{label}: second answer:\n{answer2}");
    within(SDK_TIMEOUT, "set_answer #2", transport.set_answer(&answer2))
        .await?
        .context("set_answer #2")?;

    let video_ssrc = common::sdp::media_ssrc(&offer2, video_sub.mid()).with_context(|| {
        format!(
            "{label}: second offer has no SSRC for video mid {}:\n{offer2}",
            video_sub.mid()
        )
    })?;
    let audio_ssrc = common::sdp::media_ssrc(&offer2, audio_sub.mid()).with_context(|| {
        format!(
            "{label}: second offer has no SSRC for audio mid {}:\n{offer2}",
            audio_sub.mid()
        )
    })?;
    let first_video_ssrc = common::sdp::media_ssrc(&offer1, video_sub.mid());
    ensure!(
        first_video_ssrc == Some(video_ssrc),
        "{label}: video SSRC changed between offers: {first_video_ssrc:?} then {video_ssrc}"
    );
    for mid in [video_sub.mid(), audio_sub.mid()] {
        let dir = common::sdp::direction(&offer2, mid);
        ensure!(
            dir.as_deref() == Some("sendonly"),
            "{label}: mid {mid} in the offer is {dir:?}, not sendonly"
        );
    }
    let subs = transport.subscriptions();
    ensure!(subs.len() == 2, "{label}: subscriptions() = {subs:?}");

    wait_connected(&mut peer.state, label).await?;
    let (v, a) = peer.video_and_audio(TRACK_TIMEOUT).await?;
    for (c, sub, ssrc, mime) in [
        (&v, &video_sub, video_ssrc, "video/VP8"),
        (&a, &audio_sub, audio_ssrc, "audio/opus"),
    ] {
        ensure!(
            c.mid.as_deref() == Some(sub.mid()),
            "{label}: remote {} track on mid {:?}, Weir says {}",
            c.kind,
            c.mid,
            sub.mid()
        );
        ensure!(
            c.track.ssrc() == ssrc,
            "{label}: remote {} track SSRC {} but the offer announced {ssrc}",
            c.kind,
            c.track.ssrc()
        );
        let codec = c.track.codec().capability.mime_type;
        ensure!(
            codec.eq_ignore_ascii_case(mime),
            "{label}: remote {} track codec {codec}, expected {mime}",
            c.kind
        );
    }
    Ok(Subscribed {
        label,
        peer,
        transport,
        video_sub,
        audio_sub,
        video: v,
        audio: a,
        video_ssrc,
        audio_ssrc,
        closed: false,
    })
}

impl Subscribed {
    async fn wait_media(&mut self, video: usize, audio: usize) -> Result<()> {
        let label = self.label;
        self.video
            .wait_for(video, MEDIA_TIMEOUT, &format!("{label} video"))
            .await?;
        self.audio
            .wait_for(audio, MEDIA_TIMEOUT, &format!("{label} audio"))
            .await?;
        Ok(())
    }

    /// Runs every per-stream check; returns (video, audio) summaries.
    fn verify(&self, pubd: &Published) -> Result<(StreamSummary, StreamSummary)> {
        let label = self.label;
        let v = self.video.snapshot();
        let a = self.audio.snapshot();
        let sv = verify_stream(
            &format!("{label} video"),
            &v,
            &pubd.peer.sent.video(),
            self.video_ssrc,
            true,
        );
        let sa = verify_stream(
            &format!("{label} audio"),
            &a,
            &pubd.peer.sent.audio(),
            self.audio_ssrc,
            false,
        );
        info!(
            "{label}: video {} packets (counters {:?}..{:?}, first is keyframe: {}), audio {} packets (counters {:?}..{:?})",
            sv.packets, sv.first_counter, sv.last_counter, sv.first_is_keyframe, sa.packets, sa.first_counter, sa.last_counter
        );
        if !sv.ok() || !sa.ok() {
            bail!(
                "{label}: stream check failed:\n{}\n{}\nfirst video packets:\n{}first audio packets:\n{}",
                sv.problems.join("\n"),
                sa.problems.join("\n"),
                dump_head(&v, 12),
                dump_head(&a, 6)
            );
        }
        ensure!(
            sv.packets >= MIN_VIDEO && sa.packets >= MIN_AUDIO,
            "{label}: too few packets"
        );
        Ok((sv, sa))
    }

    async fn close(self) {
        if self.closed {
            return;
        }
        if let Err(e) = within(
            SDK_TIMEOUT,
            "SubscribeTransport::close",
            self.transport.close(),
        )
        .await
        {
            tracing::warn!("{e}");
        }
        self.peer.close().await;
    }
}

/// Closes everything, bounded in time; problems are only logged.
async fn teardown(worker: &Worker, router: &Router, mut pubd: Published, subs: Vec<Subscribed>) {
    for s in subs {
        s.close().await;
    }
    let _ = within(SDK_TIMEOUT, "Publisher::close", async {
        pubd.video.close().await;
        pubd.audio.close().await;
    })
    .await;
    let _ = within(
        SDK_TIMEOUT,
        "PublishTransport::close",
        pubd.transport.close(),
    )
    .await;
    pubd.peer.close().await;
    let _ = within(SDK_TIMEOUT, "Router::close", router.close()).await;
    let _ = within(SDK_TIMEOUT, "Worker::close", worker.close()).await;
}

fn dump_metrics(worker: &Worker) {
    let text = worker.metrics_text();
    let interesting: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
        .collect();
    eprintln!("worker metrics (non-zero):\n{}", interesting.join("\n"));
}

/// First keyframe request arriving at or after `since`.
fn keyframe_request_after(peer: &PubPeer, since: Instant) -> Option<Instant> {
    peer.keyframe_request_times()
        .into_iter()
        .find(|t| *t >= since)
}

fn sent_for_counter(sent: &BTreeMap<u32, SentPacket>, c: Option<u32>) -> Option<SentPacket> {
    c.and_then(|c| sent.get(&c).cloned())
}

/// Publish VP8 + Opus, then one subscriber takes video, then audio, and gets
/// both intact and in order. The video sequence numbers the publisher uses
/// wrap around 65535 early in the stream.
#[test]
fn publish_and_subscribe_vp8_opus() {
    run("publish_and_subscribe_vp8_opus", TEST_LIMIT, || async {
        let worker = start_worker().await?;
        let router = worker.create_router(Default::default());
        let api = new_api()?;
        let pubd = publish(
            &router,
            &api,
            MediaConfig {
                video_seq_start: 65_470,
                ..Default::default()
            },
        )
        .await?;
        let mut sub = subscribe(
            &router,
            &api,
            "subscriber",
            &pubd.video_id(),
            &pubd.audio_id(),
        )
        .await?;
        let res = async {
            sub.wait_media(MIN_VIDEO, MIN_AUDIO).await?;
            let (sv, _) = sub.verify(&pubd)?;
            if !sv.first_is_keyframe {
                eprintln!("note: the subscriber's first video packet (counter {:?}) does not start a keyframe", sv.first_counter);
            }
            // Per-stream statistics through the SDK and in the metrics.
            let stat = |s: &[(&'static str, u64)], name: &str| {
                s.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
            };
            for (what, stats) in [
                ("published video", pubd.video.stats()),
                ("published audio", pubd.audio.stats()),
                ("subscribed video", sub.video_sub.stats()),
                ("subscribed audio", sub.audio_sub.stats()),
            ] {
                eprintln!("{what} stats: {stats:?}");
                ensure!(
                    stat(&stats, "packets").unwrap_or(0) > 0 && stat(&stats, "bytes").unwrap_or(0) > 0,
                    "{what}: no packets counted: {stats:?}"
                );
            }
            let text = worker.metrics_text();
            let video_in = format!(
                "weir_stream_packets_total{{direction=\"in\",transport=\"{}\",track=\"{}\",kind=\"video\"}}",
                pubd.transport.id(),
                pubd.video_id()
            );
            ensure!(text.contains(&video_in), "no {video_in} in:\n{text}");
            ensure!(
                text.contains("# TYPE weir_stream_rtt_us gauge")
                    && text.matches("weir_stream_packets_total{direction=\"out\"").count() == 2,
                "stream metrics missing:\n{text}"
            );
            Ok::<_, anyhow::Error>(())
        }
        .await;
        eprintln!("publisher RTCP seen: {:?}", pubd.peer.rtcp_kinds());
        if res.is_err() {
            dump_metrics(&worker);
        }
        teardown(&worker, &router, pubd, vec![sub]).await;
        res
    });
}

/// The subscriber joins ~1.5 s after publishing started (the only keyframe so
/// far was the first frame): Weir must ask the publisher for a keyframe (PLI
/// or FIR reaches the webrtc-rs sender) and the subscriber's video must start
/// with the keyframe sent in response, then continue in order.
#[test]
fn late_subscriber_starts_with_requested_keyframe() {
    run(
        "late_subscriber_starts_with_requested_keyframe",
        TEST_LIMIT,
        || async {
            let worker = start_worker().await?;
            let router = worker.create_router(Default::default());
            let api = new_api()?;
            let mut pubd = publish(&router, &api, MediaConfig::default()).await?;
            pubd.peer.wait_frames(45, Duration::from_secs(10)).await?;
            let join = Instant::now();
            let requests_before = pubd.peer.keyframe_request_times().len();
            let video_counter_at_join = pubd
                .peer
                .sent
                .video()
                .keys()
                .next_back()
                .copied()
                .unwrap_or(0);
            info!(
                requests_before,
                video_counter_at_join, "late subscriber joins"
            );

            let mut sub = subscribe(
                &router,
                &api,
                "late-subscriber",
                &pubd.video_id(),
                &pubd.audio_id(),
            )
            .await?;
            let res = async {
            let mut kf = pubd.peer.keyframe_requests.clone();
            within(Duration::from_secs(10), "a keyframe request (PLI/FIR) at the publisher after the subscriber joined", async {
                kf.wait_for(|n| *n > requests_before).await.map(|_| ())
            })
            .await?
            .map_err(|_| anyhow!("RTCP reader ended"))?;
            let req_at = keyframe_request_after(&pubd.peer, join).context("keyframe request time")?;
            info!("keyframe request reached the publisher {:?} after the join", req_at - join);

            sub.wait_media(MIN_VIDEO, MIN_AUDIO).await?;
            let (sv, _) = sub.verify(&pubd)?;
            let sent = pubd.peer.sent.video();
            let first = sent_for_counter(&sent, sv.first_counter).context("first video packet not in the sent log")?;
            ensure!(
                sv.first_is_keyframe && first.keyframe_start,
                "the late subscriber's first video packet (counter {}, seq {}) is not the start of a keyframe; first packets:\n{}",
                first.counter,
                first.seq,
                dump_head(&sub.video.snapshot(), 12)
            );
            ensure!(
                first.counter > video_counter_at_join,
                "the late subscriber's first keyframe (counter {}) was sent before it joined (last counter then {video_counter_at_join})",
                first.counter
            );
            ensure!(
                first.sent_at >= req_at,
                "the late subscriber's first keyframe was written {:?} before the keyframe request arrived",
                req_at - first.sent_at
            );
            let answered = pubd.peer.keyframe_request_times().into_iter().filter(|t| *t <= first.sent_at).max().unwrap_or(req_at);
            let requests_after_join = pubd.peer.keyframe_request_times().iter().filter(|t| **t >= join).count();
            eprintln!(
                "late subscriber: {requests_after_join} keyframe request(s) after the join, first at +{:?}; its first video packet is the keyframe written at +{:?}, answering the request of +{:?}",
                req_at - join,
                first.sent_at - join,
                answered - join
            );
            Ok::<_, anyhow::Error>(())
        }
        .await;
            eprintln!("publisher RTCP seen: {:?}", pubd.peer.rtcp_kinds());
            if res.is_err() {
                dump_metrics(&worker);
            }
            teardown(&worker, &router, pubd, vec![sub]).await;
            res
        },
    );
}

/// Two subscribers in one router both get media; closing the first leaves
/// the second's streams flowing, continuous and in order.
#[test]
fn two_subscribers_and_closing_one() {
    run("two_subscribers_and_closing_one", TEST_LIMIT, || async {
        let worker = start_worker().await?;
        let router = worker.create_router(Default::default());
        let api = new_api()?;
        let pubd = publish(&router, &api, MediaConfig::default()).await?;
        let (vid, aid) = (pubd.video_id(), pubd.audio_id());
        let mut a = subscribe(&router, &api, "subscriber-a", &vid, &aid).await?;
        let mut b = subscribe(&router, &api, "subscriber-b", &vid, &aid).await?;
        ensure!(
            a.transport.id() != b.transport.id(),
            "two subscribe transports share id {}",
            a.transport.id()
        );
        let res = async {
            a.wait_media(MIN_VIDEO, MIN_AUDIO).await?;
            b.wait_media(MIN_VIDEO, MIN_AUDIO).await?;
            a.verify(&pubd)?;
            b.verify(&pubd)?;

            // Close A (Weir side first, then the peer).
            let closed_at = Instant::now();
            within(
                SDK_TIMEOUT,
                "SubscribeTransport::close (A)",
                a.transport.close(),
            )
            .await?;
            let state = a.transport.connection_state();
            ensure!(
                state == weir::ConnectionState::Closed,
                "A's transport is {state} after close()"
            );
            a.peer.close().await;
            a.closed = true;
            let (bv, ba) = (b.video.len(), b.audio.len());
            info!(
                bv,
                ba, "subscriber A closed; waiting for B to keep receiving"
            );
            b.wait_media(bv + MIN_VIDEO, ba + MIN_AUDIO).await?;
            let (sv, sa) = b.verify(&pubd)?;
            let last_v = b
                .video
                .snapshot()
                .last()
                .map(|r| r.at)
                .context("no video")?;
            ensure!(last_v > closed_at, "B got no video after A closed");
            info!(
                "B after closing A: video {} audio {} packets, all in order",
                sv.packets, sa.packets
            );
            Ok::<_, anyhow::Error>(())
        }
        .await;
        eprintln!("publisher RTCP seen: {:?}", pubd.peer.rtcp_kinds());
        if res.is_err() {
            dump_metrics(&worker);
        }
        teardown(&worker, &router, pubd, vec![a, b]).await;
        res
    });
}

/// Harness self-check, no Weir involved: the webrtc-rs publisher offers
/// straight to a webrtc-rs subscriber, and the same payload and order checks
/// pass. When a Weir test fails and this one passes, the harness's peers,
/// payloads and checks are not the cause.
#[test]
fn harness_self_check_direct_webrtc_rs() {
    run(
        "harness_self_check_direct_webrtc_rs",
        TEST_LIMIT,
        || async {
            let api = new_api()?;
            let mut publisher = PubPeer::new(&api).await?;
            let mut receiver = SubPeer::new(&api, "direct-receiver").await?;
            let offer = publisher.offer().await?;
            let answer = receiver.answer(&offer).await?;
            publisher.set_answer(answer).await?;
            publisher.start_media(MediaConfig {
                video_seq_start: 65_470,
                ..Default::default()
            });
            wait_connected(&mut publisher.state, "publisher").await?;
            wait_connected(&mut receiver.state, "direct-receiver").await?;
            let (mut v, mut a) = receiver.video_and_audio(TRACK_TIMEOUT).await?;
            v.wait_for(MIN_VIDEO, MEDIA_TIMEOUT, "direct video").await?;
            a.wait_for(MIN_AUDIO, MEDIA_TIMEOUT, "direct audio").await?;
            let v_ssrc = common::sdp::media_ssrc(&offer, v.mid.as_deref().unwrap_or_default())
                .context("video ssrc in offer")?;
            let a_ssrc = common::sdp::media_ssrc(&offer, a.mid.as_deref().unwrap_or_default())
                .context("audio ssrc in offer")?;
            let sv = verify_stream(
                "direct video",
                &v.snapshot(),
                &publisher.sent.video(),
                v_ssrc,
                true,
            );
            let sa = verify_stream(
                "direct audio",
                &a.snapshot(),
                &publisher.sent.audio(),
                a_ssrc,
                false,
            );
            ensure!(
                sv.ok() && sa.ok(),
                "{:?}\n{:?}\n{}",
                sv.problems,
                sa.problems,
                dump_head(&v.snapshot(), 12)
            );
            // (The first keyframe is usually written before the direct receiver's
            // SRTP is up, so the stream need not start with it here.)
            // A PLI from the receiver reaches the publisher and yields a keyframe.
            let before = publisher.keyframe_request_times().len();
            let asked = Instant::now();
            use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
            receiver
                .pc
                .write_rtcp(&[Box::new(PictureLossIndication {
                    sender_ssrc: 1,
                    media_ssrc: v_ssrc,
                })])
                .await?;
            let mut kf = publisher.keyframe_requests.clone();
            within(Duration::from_secs(5), "PLI at the publisher", async {
                kf.wait_for(|n| *n > before).await.map(|_| ())
            })
            .await?
            .map_err(|_| anyhow!("RTCP reader ended"))?;
            let n = v.len();
            v.wait_for(n + 10, MEDIA_TIMEOUT, "direct video after PLI")
                .await?;
            let got_kf = v
                .snapshot()
                .iter()
                .any(|r| r.at > asked && common::media::vp8_is_keyframe_start(&r.payload));
            ensure!(got_kf, "direct: no keyframe after the PLI");
            eprintln!(
                "direct: video {} audio {} packets ok; publisher RTCP seen: {:?}",
                sv.packets,
                sa.packets,
                publisher.rtcp_kinds()
            );
            receiver.close().await;
            publisher.close().await;
            Ok(())
        },
    );
}

/// The checks themselves catch reordering, duplicates, gaps, corruption and
/// a wrong SSRC (pure, no network).
#[test]
fn stream_checks_catch_faults() {
    use common::media::{opus_packet, Received};
    let mut ctr = 0u32;
    let mut sent = BTreeMap::new();
    let mut recv = Vec::new();
    let now = Instant::now();
    for i in 0..10u16 {
        let payload = opus_packet(&mut ctr);
        let c = common::media::counter_of(&payload).unwrap();
        let (seq, ts) = (65_530u16.wrapping_add(i), 960 * i as u32);
        sent.insert(
            c,
            SentPacket {
                counter: c,
                payload: payload.clone(),
                seq,
                timestamp: ts,
                marker: false,
                keyframe_start: false,
                sent_at: now,
            },
        );
        recv.push(Received {
            seq: seq.wrapping_add(100),
            timestamp: ts + 5,
            ssrc: 42,
            payload_type: 111,
            marker: false,
            payload,
            at: now,
        });
    }
    assert!(
        verify_stream("clean", &recv, &sent, 42, false).ok(),
        "{:?}",
        verify_stream("clean", &recv, &sent, 42, false).problems
    );
    type Fault = Box<dyn Fn(&mut Vec<Received>)>;
    let faults: Vec<(&str, Fault)> = vec![
        ("swap", Box::new(|r: &mut Vec<Received>| r.swap(3, 4))),
        (
            "dup",
            Box::new(|r: &mut Vec<Received>| {
                let x = r[5].clone();
                r.insert(6, x)
            }),
        ),
        (
            "gap",
            Box::new(|r: &mut Vec<Received>| {
                r.remove(2);
            }),
        ),
        (
            "corrupt",
            Box::new(|r: &mut Vec<Received>| {
                let mut b = r[7].payload.to_vec();
                b[3] ^= 1;
                r[7].payload = b.into()
            }),
        ),
        ("ssrc", Box::new(|r: &mut Vec<Received>| r[1].ssrc = 43)),
        (
            "timestamp",
            Box::new(|r: &mut Vec<Received>| r[8].timestamp += 1),
        ),
    ];
    for (name, f) in faults {
        let mut r = recv.clone();
        f(&mut r);
        assert!(
            !verify_stream(name, &r, &sent, 42, false).ok(),
            "fault {name} not detected"
        );
    }
}

/// Interop with an unconfigured webrtc-rs/pion subscriber: given an ICE-lite
/// offer with `a=setup:actpass`, it answers `a=setup:passive` (allowed by
/// RFC 5763; JSEP only says SHOULD be active), so Weir must take the DTLS
/// client role on that transport.
#[test]
fn subscriber_with_webrtc_rs_default_dtls_role() {
    run(
        "subscriber_with_webrtc_rs_default_dtls_role",
        TEST_LIMIT,
        || async {
            let worker = start_worker().await?;
            let router = worker.create_router(Default::default());
            let pubd = publish(&router, &new_api()?, MediaConfig::default()).await?;
            let res = async {
                let mut sub = subscribe(
                    &router,
                    &new_api_default_dtls_role()?,
                    "default-role-subscriber",
                    &pubd.video_id(),
                    &pubd.audio_id(),
                )
                .await?;
                sub.wait_media(MIN_VIDEO, MIN_AUDIO).await?;
                sub.verify(&pubd)?;
                sub.close().await;
                Ok::<_, anyhow::Error>(())
            }
            .await;
            teardown(&worker, &router, pubd, vec![]).await;
            res
        },
    );
}
