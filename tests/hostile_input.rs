//! Weir under hostile input, with a real `Worker` on 127.0.0.1.
//!
//! While a webrtc-rs publisher → Weir → webrtc-rs subscriber flow runs, an
//! attacker with its own UDP sockets sends forged STUN checks, DTLS and
//! SRTP/SRTCP look-alikes from addresses that passed no ICE check, and
//! garbage of many sizes to every media port. The attacker must get no STUN
//! success (nor anything but STUN errors), the subscriber's media must stay
//! intact and in order, and the worker's drop counters must account for each
//! kind of attack.
//!
//! The SDK side: malformed offers and answers fail with `InvalidSdp` and leave
//! the transport able to take the real one; unknown track ids fail with
//! `UnknownTrack`.
//!
//! Run with `RUST_LOG=info,weir=debug cargo test --test hostile_input -- --nocapture`
//! for logs. The attack's random bytes come from a seed printed at the start;
//! set `WEIR_HOSTILE_SEED` to replay one.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::attacker::{self, Attacker, Prng, Reply};
use common::media::{dump_head, verify_stream, Received};
use common::metrics::{growth, total, totals};
use common::peers::{new_api, wait_connected, MediaConfig, PubPeer, SubPeer, TrackCollector};
use common::sdp::{attribute, media_ssrc, without_lines};
use common::{free_base_port, run, within};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tracing::info;
use webrtc::api::API;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use weir::{
    ConnectionState, Error, MediaKind, PublishTransport, Publisher, Router, SubscribeTransport,
    Subscriber, TrackId, Worker, WorkerConfig,
};

const SDK_TIMEOUT: Duration = Duration::from_secs(10);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);
const TRACK_TIMEOUT: Duration = Duration::from_secs(15);
const MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
const TEST_LIMIT: Duration = Duration::from_secs(150);
/// How long the worker has to count an attack's datagrams.
const COUNTER_TIMEOUT: Duration = Duration::from_secs(5);
const COUNTER_POLL: Duration = Duration::from_millis(20);
/// After an attack, the attacker listens until nothing came for this long.
const REPLY_QUIET: Duration = Duration::from_millis(400);
const REPLY_LIMIT: Duration = Duration::from_secs(3);

/// ≈ 2 s of video (30 fps) and audio (50 pps).
const MIN_VIDEO: usize = 60;
const MIN_AUDIO: usize = 100;

const RX: &str = "weir_core_rx_datagrams_total";
const STUN_REJECTED: &str = "weir_core_drop_stun_rejected_total";
const UNCHECKED: &str = "weir_core_drop_unchecked_source_total";
const UNKNOWN_CLASS: &str = "weir_core_drop_unknown_class_total";
/// Datagrams larger than a receive buffer, dropped by the IO backend.
const TRUNCATED: &str = "weir_io_rx_truncated_total";

async fn start_worker() -> Result<Worker> {
    let config = WorkerConfig {
        media_ip: IpAddr::from([127, 0, 0, 1]),
        media_port: free_base_port(16),
        cores: 2,
        ..Default::default()
    };
    let worker = within(SDK_TIMEOUT, "Worker::new", Worker::new(config))
        .await?
        .context("Worker::new")?;
    info!(addrs = ?worker.media_addrs(), "worker started");
    Ok(worker)
}

fn is_invalid_sdp<T>(r: &weir::Result<T>) -> bool {
    matches!(r, Err(Error::InvalidSdp(_)))
}

fn describe<T>(r: &weir::Result<T>) -> String {
    match r {
        Ok(_) => "Ok".to_owned(),
        Err(e) => format!("Err({e:?})"),
    }
}

/// A webrtc-rs publisher sending VP8 + Opus, its transport and publishers.
struct Published {
    peer: PubPeer,
    transport: PublishTransport,
    video: Publisher,
    audio: Publisher,
    /// The peer's offer and Weir's answer.
    offer: String,
    answer: String,
}

/// Offers `bad_offers` first, each of which must fail with `InvalidSdp` and
/// leave the transport with nothing accepted; then the peer's real offer,
/// which must be answered and publish both tracks.
async fn publish(router: &Router, api: &API, bad_offers: &[(&str, String)]) -> Result<Published> {
    let mut peer = PubPeer::new(api).await?;
    let transport = within(
        SDK_TIMEOUT,
        "create_publish_transport",
        router.create_publish_transport(Default::default()),
    )
    .await?
    .context("create_publish_transport")?;
    let offer = peer.offer().await?;
    for (what, bad) in bad_offers {
        let r = within(
            SDK_TIMEOUT,
            "get_answer(bad offer)",
            transport.get_answer(bad),
        )
        .await?;
        ensure!(
            is_invalid_sdp(&r),
            "get_answer with a malformed offer ({what}) gave {} instead of InvalidSdp; the offer was:\n{bad}",
            describe(&r)
        );
        info!(what, "bad offer rejected: {}", describe(&r));
        let offered = transport.offered_tracks();
        ensure!(
            offered.is_empty(),
            "the rejected offer ({what}) left accepted m-sections behind: {offered:?}"
        );
        let state = transport.connection_state();
        ensure!(
            state == ConnectionState::New,
            "the rejected offer ({what}) moved the transport to {state}"
        );
    }
    let answer = within(
        SDK_TIMEOUT,
        "get_answer(real offer)",
        transport.get_answer(&offer),
    )
    .await?
    .with_context(|| {
        format!(
            "get_answer(real offer) after {} rejected ones",
            bad_offers.len()
        )
    })?;
    peer.set_answer(answer.clone()).await?;
    peer.start_media(MediaConfig::default());
    wait_connected(&mut peer.state, "publisher").await?;

    let unknown = transport.publish("no-such-mid").await;
    ensure!(
        matches!(unknown, Err(Error::UnknownTrack(_))),
        "publish(\"no-such-mid\") gave {} instead of UnknownTrack",
        describe(&unknown)
    );
    let offered = transport.offered_tracks();
    ensure!(offered.len() == 2, "offered tracks {offered:?}");
    let (mut video, mut audio) = (None, None);
    for t in &offered {
        let p = within(
            PUBLISH_TIMEOUT,
            &format!("publish({})", t.mid),
            transport.publish(&t.mid),
        )
        .await?
        .with_context(|| format!("publish({})", t.mid))?;
        match t.kind {
            MediaKind::Video => video = Some(p),
            MediaKind::Audio => audio = Some(p),
        }
    }
    Ok(Published {
        peer,
        transport,
        video: video.context("no video track offered")?,
        audio: audio.context("no audio track offered")?,
        offer,
        answer,
    })
}

/// A webrtc-rs subscriber, its transport and what it receives.
struct Subscribed {
    label: &'static str,
    peer: SubPeer,
    transport: SubscribeTransport,
    _subscribers: Vec<Subscriber>,
    video: TrackCollector,
    audio: TrackCollector,
    video_ssrc: u32,
    audio_ssrc: u32,
    /// Weir's last offer and the peer's answer to it.
    offer: String,
    answer: String,
}

/// Malformed answers to try before the real one, given Weir's offer, the
/// peer's real answer and the previous real answer (if any).
type BadAnswers = fn(&str, &str, Option<&str>) -> Vec<(&'static str, String)>;

fn no_bad_answers(_: &str, _: &str, _: Option<&str>) -> Vec<(&'static str, String)> {
    Vec::new()
}

/// Subscribes to video, then audio (two offer/answer rounds). Before each
/// real answer every answer of `bad_answers` must fail with `InvalidSdp`.
async fn subscribe(
    router: &Router,
    api: &API,
    label: &'static str,
    tracks: [&TrackId; 2],
    bad_answers: BadAnswers,
) -> Result<Subscribed> {
    let mut peer = SubPeer::new(api, label).await?;
    let transport = within(
        SDK_TIMEOUT,
        "create_subscribe_transport",
        router.create_subscribe_transport(Default::default()),
    )
    .await?
    .context("create_subscribe_transport")?;
    let mut subscribers = Vec::new();
    let mut previous: Option<String> = None;
    let mut last = (String::new(), String::new());
    for track in tracks {
        let (sub, offer) = within(SDK_TIMEOUT, "subscribe", transport.subscribe(track))
            .await?
            .with_context(|| format!("{label}: subscribe({track})"))?;
        let answer = peer.answer(&offer).await?;
        for (what, bad) in bad_answers(&offer, &answer, previous.as_deref()) {
            let r = within(SDK_TIMEOUT, "set_answer(bad)", transport.set_answer(&bad)).await?;
            ensure!(
                is_invalid_sdp(&r),
                "{label}: set_answer with a malformed answer ({what}) gave {} instead of InvalidSdp; the answer was:\n{bad}",
                describe(&r)
            );
            info!(label, what, "bad answer rejected: {}", describe(&r));
        }
        within(
            SDK_TIMEOUT,
            "set_answer(real)",
            transport.set_answer(&answer),
        )
        .await?
        .with_context(|| format!("{label}: set_answer(real answer) for {track}"))?;
        let again = within(
            SDK_TIMEOUT,
            "set_answer(again)",
            transport.set_answer(&answer),
        )
        .await?;
        ensure!(
            matches!(again, Err(Error::NoPendingOffer)),
            "{label}: answering an answered offer again gave {}",
            describe(&again)
        );
        subscribers.push(sub);
        previous = Some(answer.clone());
        last = (offer, answer);
    }
    let (offer, answer) = last;
    let ssrc_of = |kind: MediaKind| -> Result<u32> {
        let sub = subscribers
            .iter()
            .find(|s| s.kind() == kind)
            .with_context(|| format!("{label}: no {kind} subscriber"))?;
        media_ssrc(&offer, sub.mid())
            .with_context(|| format!("{label}: no SSRC for mid {} in\n{offer}", sub.mid()))
    };
    let (video_ssrc, audio_ssrc) = (ssrc_of(MediaKind::Video)?, ssrc_of(MediaKind::Audio)?);
    wait_connected(&mut peer.state, label).await?;
    let (video, audio) = peer.video_and_audio(TRACK_TIMEOUT).await?;
    Ok(Subscribed {
        label,
        peer,
        transport,
        _subscribers: subscribers,
        video,
        audio,
        video_ssrc,
        audio_ssrc,
        offer,
        answer,
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
            .await
    }

    /// Waits for `n` more video and audio packets than now.
    async fn wait_more(&mut self, n: usize) -> Result<()> {
        let (v, a) = (self.video.len(), self.audio.len());
        self.wait_media(v + n, a + n).await
    }

    /// The shared stream checks: every payload byte-identical to a sent
    /// one, counters increasing, sequence numbers continuous, SSRCs as
    /// offered, markers and timestamp deltas as sent.
    fn verify(&self, pubd: &Published) -> Result<(Vec<Received>, Vec<Received>)> {
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
        if !sv.ok() || !sa.ok() {
            bail!(
                "{label}: stream check failed:\n{}\n{}\nfirst video packets:\n{}",
                sv.problems.join("\n"),
                sa.problems.join("\n"),
                dump_head(&v, 12)
            );
        }
        info!(
            "{label}: video {} packets, audio {} packets, all intact and in order",
            sv.packets, sa.packets
        );
        Ok((v, a))
    }
}

async fn teardown(worker: &Worker, router: &Router, pubd: Published, subs: Vec<Subscribed>) {
    for s in subs {
        let _ = within(
            SDK_TIMEOUT,
            "SubscribeTransport::close",
            s.transport.close(),
        )
        .await;
        s.peer.close().await;
    }
    let Published {
        mut peer,
        transport,
        video,
        audio,
        ..
    } = pubd;
    let _ = within(SDK_TIMEOUT, "Publisher::close", async {
        video.close().await;
        audio.close().await;
    })
    .await;
    let _ = within(SDK_TIMEOUT, "PublishTransport::close", transport.close()).await;
    peer.close().await;
    let _ = within(SDK_TIMEOUT, "Router::close", router.close()).await;
    let _ = within(SDK_TIMEOUT, "Worker::close", worker.close()).await;
}

fn dump_metrics(worker: &Worker) {
    let text = worker.metrics_text();
    let nonzero: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
        .collect();
    eprintln!("worker metrics (non-zero):\n{}", nonzero.join("\n"));
}

/// Polls the worker's counters until `done` holds for their growth since
/// `before`, for at most [`COUNTER_TIMEOUT`]; returns the growth.
async fn wait_counters(
    worker: &Worker,
    before: &BTreeMap<String, u64>,
    what: &str,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) -> Result<BTreeMap<String, u64>> {
    let mut tick = tokio::time::interval(COUNTER_POLL);
    let polls = COUNTER_TIMEOUT.as_millis() / COUNTER_POLL.as_millis();
    let mut g = BTreeMap::new();
    for _ in 0..=polls {
        tick.tick().await;
        g = growth(before, &totals(&worker.metrics_text()));
        if done(&g) {
            return Ok(g);
        }
    }
    bail!("{what}: the counters did not get there within {COUNTER_TIMEOUT:?}; growth: {g:?}")
}

fn get(g: &BTreeMap<String, u64>, name: &str) -> u64 {
    g.get(name).copied().unwrap_or(0)
}

/// One kind of attack and the drop counter that must account for it.
struct Attack {
    name: &'static str,
    datagrams: Vec<Vec<u8>>,
    /// This counter must grow by at least `per_target × targets`.
    counter: &'static str,
    per_target: u64,
}

/// The ICE usernames (`<Weir ufrag>:<peer ufrag>`) of both transports.
fn usernames(pubd: &Published, sub: &Subscribed) -> Result<Vec<String>> {
    let get = |sdp: &str, who: &str| {
        attribute(sdp, "ice-ufrag").with_context(|| format!("no a=ice-ufrag in {who}:\n{sdp}"))
    };
    Ok(vec![
        format!(
            "{}:{}",
            get(&pubd.answer, "Weir's answer")?,
            get(&pubd.offer, "the publisher's offer")?
        ),
        format!(
            "{}:{}",
            get(&sub.offer, "Weir's offer")?,
            get(&sub.answer, "the subscriber's answer")?
        ),
    ])
}

fn attacks(pubd: &Published, sub: &Subscribed, rng: &mut Prng) -> Result<Vec<Attack>> {
    let names = usernames(pubd, sub)?;
    let mut no_integrity = Vec::new();
    let mut wrong_key = Vec::new();
    let mut unknown_ufrag = Vec::new();
    let mut truncated = Vec::new();
    for round in 0..5 {
        for u in &names {
            no_integrity.push(attacker::stun_check_without_integrity(u, rng.tid()));
            // Right username, wrong password; a random one and a near miss.
            wrong_key.push(attacker::stun_check_signed(u, &rng.bytes(24), rng.tid()));
            wrong_key.push(attacker::stun_check_signed(
                u,
                b"aaaaaaaaaaaaaaaaaaaaaaaa",
                rng.tid(),
            ));
            if round == 0 {
                truncated.extend(attacker::truncations(&attacker::stun_check_signed(
                    u,
                    b"not-the-password-at-all",
                    rng.tid(),
                )));
            }
        }
        let peer_ufrag = names[0].split_once(':').map_or("peer", |(_, p)| p);
        unknown_ufrag.push(attacker::stun_check_signed(
            &format!("Zq{round}x{:08x}:{peer_ufrag}", rng.next_u64() as u32),
            &rng.bytes(24),
            rng.tid(),
        ));
        unknown_ufrag.push(attacker::stun_check_without_integrity(
            &format!("{:016x}:{:08x}", rng.next_u64(), rng.next_u64() as u32),
            rng.tid(),
        ));
    }

    let mut dtls: Vec<Vec<u8>> = (0..10)
        .map(|i| attacker::dtls_client_hello(i, rng))
        .collect();
    dtls.extend(attacker::dtls_other_records(rng));

    let pub_video_ssrc = media_ssrc(&pubd.offer, &pubd.video.info().mid);
    let pub_audio_ssrc = media_ssrc(&pubd.offer, &pubd.audio.info().mid);
    let mut srtp = Vec::new();
    for i in 0..10u16 {
        // The publisher's own SSRCs (squatting) and random ones.
        let v = pub_video_ssrc.unwrap_or(0x1111_1111);
        let a = pub_audio_ssrc.unwrap_or(0x2222_2222);
        srtp.push(attacker::srtp_like(v, 40_000 + i, 96, i % 3 == 0, 200, rng));
        srtp.push(attacker::srtp_like(a, 50_000 + i, 111, false, 80, rng));
        srtp.push(attacker::srtp_like(
            rng.next_u64() as u32,
            i,
            100 + i as u8 % 27,
            false,
            1000,
            rng,
        ));
        srtp.extend(attacker::srtcp_like(
            rng.next_u64() as u32,
            sub.video_ssrc,
            rng,
        ));
    }
    srtp.push(attacker::srtp_like(7, 7, 96, false, 0, rng));

    let sizes: Vec<usize> = [
        0, 0, 0, 1, 1, 2, 3, 4, 5, 7, 8, 11, 12, 13, 16, 19, 20, 21, 23, 24, 28, 31, 32, 40, 64,
        100, 127, 128, 172, 200, 255, 256, 333, 500, 511, 512, 700, 1000, 1023, 1024, 1199, 1200,
        1280, 1400, 1460, 1472, 1500, 1501, 2000, 2047, 2048, 2049, 3000, 4096, 8192, 9000, 16_384,
        32_768, 65_507,
    ]
    .into_iter()
    .collect();
    let (garbage, surely_unknown) = attacker::garbage(&sizes, rng);

    let n = |v: &Vec<Vec<u8>>| v.len() as u64;
    Ok(vec![
        Attack {
            name: "STUN checks without MESSAGE-INTEGRITY",
            per_target: n(&no_integrity),
            datagrams: no_integrity,
            counter: STUN_REJECTED,
        },
        Attack {
            name: "STUN checks with a wrong integrity key",
            per_target: n(&wrong_key),
            datagrams: wrong_key,
            counter: STUN_REJECTED,
        },
        Attack {
            name: "STUN checks for an unknown ufrag",
            per_target: n(&unknown_ufrag),
            datagrams: unknown_ufrag,
            counter: STUN_REJECTED,
        },
        Attack {
            name: "truncated STUN",
            per_target: n(&truncated),
            datagrams: truncated,
            counter: STUN_REJECTED,
        },
        Attack {
            name: "DTLS ClientHellos and records from an unchecked address",
            per_target: n(&dtls),
            datagrams: dtls,
            counter: UNCHECKED,
        },
        Attack {
            name: "SRTP/SRTCP look-alikes from an unchecked address",
            per_target: n(&srtp),
            datagrams: srtp,
            counter: UNCHECKED,
        },
        Attack {
            name: "garbage of many sizes, empty datagrams included",
            per_target: surely_unknown,
            datagrams: garbage,
            counter: UNKNOWN_CLASS,
        },
    ])
}

fn seed() -> u64 {
    std::env::var("WEIR_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5EED)
        })
}

/// Packets of `r` that arrived in `[from, to]`.
fn arrived_between(r: &[Received], from: Instant, to: Instant) -> usize {
    r.iter().filter(|p| p.at >= from && p.at <= to).count()
}

/// Forged STUN, DTLS and SRTP from unchecked sources and garbage of every
/// size reach every media port while a publisher → subscriber flow runs.
/// No attack check succeeds, the attacker gets nothing but STUN errors, the
/// subscriber's streams stay intact and in order during and after the
/// attack, and each attack shows in its drop counter.
#[test]
fn attacks_on_media_ports_leave_the_flow_intact() {
    run(
        "attacks_on_media_ports_leave_the_flow_intact",
        TEST_LIMIT,
        || async {
            let seed = seed();
            eprintln!("attack seed: {seed} (set WEIR_HOSTILE_SEED to replay)");
            let worker = start_worker().await?;
            let router = worker.create_router(Default::default());
            let api = new_api()?;
            let pubd = publish(&router, &api, &[]).await?;
            let tracks = [pubd.video.id(), pubd.audio.id()];
            let mut sub = subscribe(&router, &api, "subscriber", tracks, no_bad_answers).await?;
            let res = attack_during_flow(&worker, &pubd, &mut sub, seed).await;
            if res.is_err() {
                dump_metrics(&worker);
            }
            teardown(&worker, &router, pubd, vec![sub]).await;
            res
        },
    );
}

async fn attack_during_flow(
    worker: &Worker,
    pubd: &Published,
    sub: &mut Subscribed,
    seed: u64,
) -> Result<()> {
    sub.wait_media(MIN_VIDEO, MIN_AUDIO).await?;
    sub.verify(pubd)?;
    let text = worker.metrics_text();
    for name in [RX, STUN_REJECTED, UNCHECKED, UNKNOWN_CLASS] {
        ensure!(total(&text, name).is_some(), "metrics lack {name}:\n{text}");
    }
    let sessions_before = total(&text, "weir_core_sessions");

    let targets = worker.media_addrs();
    ensure!(!targets.is_empty(), "the worker has no media address");
    let mut rng = Prng::new(seed);
    let attacks = attacks(pubd, sub, &mut rng)?;
    let attack_start = Instant::now();
    let mut report = Vec::new();
    for attack in &attacks {
        // A fresh source per attack: none of them ever passed a check.
        let attacker = Attacker::new(targets.clone()).await?;
        let before = totals(&worker.metrics_text());
        let sent = attacker.send_all(&attack.datagrams).await?;
        let expected = attack.per_target * targets.len() as u64;
        let g = wait_counters(worker, &before, attack.name, |g| {
            get(g, RX) + get(g, TRUNCATED) >= sent && get(g, attack.counter) >= expected
        })
        .await
        .with_context(|| {
            format!(
                "{}: sent {sent} datagrams from {}; {} must grow by {expected}",
                attack.name,
                attacker.local_addr(),
                attack.counter
            )
        })?;
        if attack.counter == UNKNOWN_CLASS {
            // Garbage of other first bytes lands in the STUN or unchecked
            // drops; datagrams over a receive buffer are dropped (and
            // counted) by the IO backend before the core sees them.
            let dropped = get(&g, STUN_REJECTED)
                + get(&g, UNCHECKED)
                + get(&g, UNKNOWN_CLASS)
                + get(&g, TRUNCATED);
            ensure!(
                dropped >= sent,
                "{}: {sent} datagrams sent but only {dropped} counted as dropped: {g:?}",
                attack.name
            );
        }
        let replies = attacker
            .collect_replies(REPLY_QUIET, REPLY_LIMIT, 10_000)
            .await;
        let successes = replies
            .iter()
            .filter(|(_, r)| *r == Reply::StunSuccess)
            .count();
        ensure!(
            successes == 0,
            "{}: the attacker got {successes} STUN success response(s); replies: {replies:?}",
            attack.name
        );
        let not_stun_errors: Vec<_> = replies
            .iter()
            .filter(|(_, r)| *r != Reply::StunError)
            .collect();
        ensure!(
            not_stun_errors.is_empty(),
            "{}: the attacker got datagrams other than STUN errors: {not_stun_errors:?}",
            attack.name
        );
        // The legitimate subscriber keeps receiving while under attack.
        sub.wait_more(5).await.with_context(|| {
            format!(
                "subscriber media stalled after the attack '{}'",
                attack.name
            )
        })?;
        let line = format!(
            "{:<58} sent {sent:>5}, replies {:>3}; grew: rx {:>5}, stun_rejected {:>5}, unchecked_source {:>5}, unknown_class {:>5}",
            attack.name,
            replies.len(),
            get(&g, RX),
            get(&g, STUN_REJECTED),
            get(&g, UNCHECKED),
            get(&g, UNKNOWN_CLASS),
        );
        info!("{line}");
        report.push(line);
    }
    let attack_end = Instant::now();
    eprintln!(
        "attacks on {targets:?} over {:?}:\n{}",
        attack_end - attack_start,
        report.join("\n")
    );

    // And after the attack, the flow goes on.
    sub.wait_more(MIN_AUDIO).await?;
    let (v, a) = sub.verify(pubd)?;
    let (v_in, a_in) = (
        arrived_between(&v, attack_start, attack_end),
        arrived_between(&a, attack_start, attack_end),
    );
    let window = (attack_end - attack_start).as_secs_f64();
    // Video runs at 30 and audio at 50 packets a second; a third of that
    // leaves room for a loaded machine but not for a stalled flow.
    ensure!(
        v_in as f64 >= window * 10.0 && a_in as f64 >= window * 16.0,
        "during the {window:.1} s attack the subscriber got only {v_in} video and {a_in} audio packets"
    );
    ensure!(
        v.last().is_some_and(|p| p.at > attack_end) && a.last().is_some_and(|p| p.at > attack_end),
        "no media after the attack"
    );
    for (who, state) in [
        ("publish", pubd.transport.connection_state()),
        ("subscribe", sub.transport.connection_state()),
    ] {
        ensure!(
            state == ConnectionState::Connected,
            "the {who} transport is {state} after the attack"
        );
    }
    for (who, state) in [
        ("publisher", *pubd.peer.state.borrow()),
        (sub.label, *sub.peer.state.borrow()),
    ] {
        ensure!(
            state == RTCPeerConnectionState::Connected,
            "the {who} peer is {state} after the attack"
        );
    }
    let sessions_after = total(&worker.metrics_text(), "weir_core_sessions");
    ensure!(
        sessions_after == sessions_before,
        "sessions went from {sessions_before:?} to {sessions_after:?} during the attack"
    );
    eprintln!(
        "during the attack the subscriber got {v_in} video and {a_in} audio packets; {} and {} in all, intact and in order",
        v.len(),
        a.len()
    );
    Ok(())
}

/// Malformed offers derived from the real one. Each must be refused.
fn bad_offers(offer: &str) -> Vec<(&'static str, String)> {
    let map_lines = |f: &dyn Fn(&str) -> String| -> String {
        offer.lines().map(|l| f(l.trim_end()) + "\r\n").collect()
    };
    vec![
        ("empty", String::new()),
        ("whitespace only", " \r\n\t \r\n".to_owned()),
        ("prose", "this is not an SDP offer, just words".to_owned()),
        (
            "control characters and stray unicode",
            "v=0\r\n\u{0}\u{0}\u{1}\u{202e}m=\u{fffd}\u{fffd}\r\n".to_owned(),
        ),
        (
            "its first 10 bytes",
            offer[..10.min(offer.len())].to_owned(),
        ),
        (
            "no m-sections",
            offer.split("\r\nm=").next().unwrap_or("").to_owned() + "\r\n",
        ),
        (
            "no a=fingerprint",
            without_lines(offer, |l| l.starts_with("a=fingerprint:")),
        ),
        (
            "a sha-1 fingerprint",
            offer.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-1 "),
        ),
        (
            "a fingerprint that is not hex",
            map_lines(&|l| {
                if l.starts_with("a=fingerprint:") {
                    "a=fingerprint:sha-256 ZZ:".to_owned() + &"00:".repeat(30) + "00"
                } else {
                    l.to_owned()
                }
            }),
        ),
        (
            "no a=ice-ufrag",
            without_lines(offer, |l| l.starts_with("a=ice-ufrag:")),
        ),
        (
            "a 3-character a=ice-pwd",
            map_lines(&|l| {
                if l.starts_with("a=ice-pwd:") {
                    "a=ice-pwd:abc".to_owned()
                } else {
                    l.to_owned()
                }
            }),
        ),
        (
            "no a=mid",
            without_lines(offer, |l| l.starts_with("a=mid:")),
        ),
        ("no a=rtcp-mux", without_lines(offer, |l| l == "a=rtcp-mux")),
        (
            "a non-numeric payload type",
            map_lines(&|l| {
                if l.starts_with("m=video") {
                    l.to_owned() + " banana"
                } else {
                    l.to_owned()
                }
            }),
        ),
        (
            "payload type 300",
            map_lines(&|l| {
                if l.starts_with("m=audio") {
                    l.to_owned() + " 300"
                } else {
                    l.to_owned()
                }
            }),
        ),
        (
            "a=setup:sideways",
            offer.replace("a=setup:actpass", "a=setup:sideways"),
        ),
    ]
}

/// Malformed answers to a subscribe offer. Each must be refused.
fn bad_answers(_offer: &str, answer: &str, previous: Option<&str>) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("empty", String::new()),
        ("garbage", "\u{1}\u{2}garbage\r\nm=nothing\r\n".to_owned()),
        (
            "other mids",
            answer
                .replace("a=mid:", "a=mid:x")
                .replace("BUNDLE ", "BUNDLE x"),
        ),
        (
            "a=setup:actpass",
            answer
                .replace("a=setup:active", "a=setup:actpass")
                .replace("a=setup:passive", "a=setup:actpass"),
        ),
        (
            "no a=fingerprint",
            without_lines(answer, |l| l.starts_with("a=fingerprint:")),
        ),
        (
            "no a=ice-pwd",
            without_lines(answer, |l| l.starts_with("a=ice-pwd:")),
        ),
    ];
    if let Some(prev) = previous {
        // An answer to the previous offer, which had fewer m-sections.
        out.push(("the previous answer again", prev.to_owned()));
        let ufrag = attribute(answer, "ice-ufrag").unwrap_or_default();
        out.push((
            "a new a=ice-ufrag (ICE restart)",
            answer.replace(
                &format!("a=ice-ufrag:{ufrag}"),
                "a=ice-ufrag:RESTARTEDufrag",
            ),
        ));
        let fp = attribute(answer, "fingerprint").unwrap_or_default();
        out.push((
            "another DTLS fingerprint",
            answer.replace(
                &format!("a=fingerprint:{fp}"),
                &format!("a=fingerprint:sha-256 {}AB", "AB:".repeat(31)),
            ),
        ));
    }
    out
}

/// The SDK refuses malformed SDP and unknown ids, and each refused call
/// leaves its object usable: the publish transport then takes the real
/// offer, the subscribe transport the real answers, and media flows intact.
#[test]
fn sdk_refuses_malformed_sdp_and_unknown_tracks_then_works() {
    run(
        "sdk_refuses_malformed_sdp_and_unknown_tracks_then_works",
        TEST_LIMIT,
        || async {
            let worker = start_worker().await?;
            let router = worker.create_router(Default::default());
            let api = new_api()?;
            // The offer publish() sends is the peer's real one; the bad ones
            // are derived from an offer of an identical throwaway peer, made
            // before, so the real peer's ICE/DTLS state is untouched.
            let template = {
                let mut p = PubPeer::new(&api).await?;
                let o = p.offer().await?;
                p.close().await;
                o
            };
            let bad = bad_offers(&template);
            let pubd = publish(&router, &api, &bad).await?;
            eprintln!("{} malformed offers refused with InvalidSdp; the real offer was then answered and published", bad.len());
            let res = async {
                let transport = within(
                    SDK_TIMEOUT,
                    "create_subscribe_transport",
                    router.create_subscribe_transport(Default::default()),
                )
                .await??;
                let unknown: Vec<TrackId> = vec![
                    TrackId::from("no-such-track"),
                    TrackId::from(""),
                    TrackId::from(format!("{}x", pubd.video.id())),
                    TrackId::from(pubd.video.id().as_str().to_uppercase()),
                    TrackId::from("\u{0}\u{202e}".repeat(200)),
                    TrackId::from("t".repeat(10_000)),
                ];
                for id in &unknown {
                    let r =
                        within(SDK_TIMEOUT, "subscribe(unknown)", transport.subscribe(id)).await?;
                    ensure!(
                        matches!(r, Err(Error::UnknownTrack(_))),
                        "subscribe({:?}) gave {} instead of UnknownTrack",
                        id.as_str().chars().take(40).collect::<String>(),
                        describe(&r)
                    );
                    let u = within(
                        SDK_TIMEOUT,
                        "unsubscribe(unknown)",
                        transport.unsubscribe(id),
                    )
                    .await?;
                    ensure!(
                        matches!(u, Err(Error::UnknownTrack(_))),
                        "unsubscribe(unknown) gave {}",
                        describe(&u)
                    );
                }
                ensure!(
                    transport.subscriptions().is_empty(),
                    "refused subscriptions left {:?}",
                    transport.subscriptions()
                );
                let r = within(
                    SDK_TIMEOUT,
                    "set_answer(no offer)",
                    transport.set_answer("v=0\r\n"),
                )
                .await?;
                ensure!(
                    matches!(r, Err(Error::NoPendingOffer)),
                    "after refused subscriptions set_answer gave {} instead of NoPendingOffer",
                    describe(&r)
                );
                transport.close().await;
                eprintln!(
                    "{} unknown track ids refused with UnknownTrack",
                    unknown.len()
                );

                let tracks = [pubd.video.id(), pubd.audio.id()];
                let mut sub = subscribe(&router, &api, "subscriber", tracks, bad_answers).await?;
                let r = async {
                    sub.wait_media(MIN_VIDEO, MIN_AUDIO).await?;
                    sub.verify(&pubd)?;
                    Ok::<_, anyhow::Error>(())
                }
                .await;
                teardown_sub(sub).await;
                r
            }
            .await;
            if res.is_err() {
                dump_metrics(&worker);
            }
            teardown(&worker, &router, pubd, vec![]).await;
            res
        },
    );
}

async fn teardown_sub(s: Subscribed) {
    let _ = within(
        SDK_TIMEOUT,
        "SubscribeTransport::close",
        s.transport.close(),
    )
    .await;
    s.peer.close().await;
}

/// The harness's own detectors, no network: a STUN success response is
/// recognised as one (so "no success arrived" means something), errors and
/// requests are not, and metrics are summed over cores.
#[test]
fn reply_and_metrics_checks_detect_what_they_must() {
    use weir_dataplane::ice::stun::{write_binding_error, write_binding_success};
    let mut buf = [0u8; 256];
    let from = "127.0.0.1:5000".parse().expect("address");
    let n = write_binding_success(&mut buf, [3; 12], from, b"pwd").expect("success response");
    assert_eq!(Reply::classify(&buf[..n]), Reply::StunSuccess);
    let n = write_binding_error(&mut buf, [3; 12], 401, "Unauthenticated", b"pwd")
        .expect("error response");
    assert_eq!(Reply::classify(&buf[..n]), Reply::StunError);
    let req = attacker::stun_check_signed("a:b", b"k", [1; 12]);
    assert_eq!(Reply::classify(&req), Reply::StunOther);
    assert!(matches!(
        Reply::classify(&[0x80, 96, 0, 1]),
        Reply::Other {
            first: Some(0x80),
            len: 4
        }
    ));
    assert!(matches!(
        Reply::classify(&[]),
        Reply::Other {
            first: None,
            len: 0
        }
    ));

    let text = "# TYPE weir_core_drop_unknown_class_total counter\n\
                weir_core_drop_unknown_class_total{core=\"0\"} 3\n\
                weir_core_drop_unknown_class_total{core=\"1\"} 4\n\
                weir_routers 1\n";
    assert_eq!(total(text, UNKNOWN_CLASS), Some(7));
    assert_eq!(total(text, "weir_routers"), Some(1));
    assert_eq!(total(text, STUN_REJECTED), None);
}
