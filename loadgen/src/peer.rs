//! One simulated participant: a publisher (sends audio and/or video on its
//! publish transport) or a subscriber (subscribes to every track of its
//! room and measures what arrives on its subscribe transport).
//!
//! Each peer goes through the stages signaling → ICE → DTLS → media and
//! joins when media flows: for a publisher when the server confirms every
//! track with `published`, for a subscriber when its first media packet
//! arrives. A peer that misses its deadline fails with the cause of the
//! stage it was in; a run that ends first leaves it pending.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use weir_codecs::extensions::{Extensions, TransportSequenceNumber};
use weir_codecs::RtpHeader;
use weir_dataplane::rtcp::nack::{write_nack, NackGenerator};
use weir_dataplane::rtcp::receiver::{ReceiveStats, ReportBlock};
use weir_dataplane::rtcp::report::{
    rtp_time_at, write_rr, write_sdes_cname, write_sr, NtpClock, SenderInfo,
};
use weir_dataplane::rtcp::twcc::TwccRecorder;

use crate::config::{AudioCodec, Scenario, VideoCodec, Vp8Frames};
use crate::media::{
    mid_rid_extensions, read_trailer, split_counter, wants_keyframe, OpusSource, Vp8Source,
    SIMULCAST_LAYERS,
};
use crate::pacer::Pacer;
use crate::sdp::{self, LocalParams, LocalTrack, MediaKind};
use crate::signaling::{self, Signaling, SignalingError};
use crate::stats::{FailCause, Jitter, Stage, Stats, StreamTracker};
use crate::transport::{self, Identity, Inbound, Transport};

/// Payload types we offer.
const VP8_PT: u8 = 96;
const OPUS_PT: u8 = 111;
/// RTX payload type paired with [`VP8_PT`], as Chromium numbers it.
const RTX_PT: u8 = 97;
/// Forced keyframes are at least this far apart, however often the server asks.
const MIN_FORCED_KEYFRAME_GAP: Duration = Duration::from_millis(300);
/// Time allowed for `leave` and DTLS close_notify at the end.
const GOODBYE: Duration = Duration::from_millis(1000);

/// What every peer shares.
pub(crate) struct Ctx {
    pub(crate) scenario: Scenario,
    pub(crate) stats: Arc<Stats>,
    pub(crate) identity: Identity,
}

/// Which participant to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Publisher,
    Subscriber,
}

/// Runs one peer until `stop` turns true, recording its join or failure.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    role: Role,
    room: String,
    index: usize,
    stop: watch::Receiver<bool>,
) {
    let result = match role {
        Role::Publisher => publisher(&ctx, &room, index, stop).await,
        Role::Subscriber => subscriber(&ctx, &room, index, stop).await,
    };
    if let Err(Some(cause)) = result {
        ctx.stats.record_failure(cause);
    }
}

/// `Err(Some(cause))`: failed to join; `Err(None)`: stopped before joining.
type PeerResult = Result<(), Option<FailCause>>;

/// Awaits `fut` until `deadline`; a timeout or an error fails with `cause`.
async fn step<T, E>(
    deadline: Instant,
    cause: FailCause,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, FailCause> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) | Err(_) => Err(cause),
    }
}

/// Reads messages until one `pick` accepts; `error` replies fail.
async fn wait_for<T>(
    sig: &mut Signaling,
    mut pick: impl FnMut(&Value) -> Option<T>,
) -> Result<T, SignalingError> {
    loop {
        let msg = sig.next().await?;
        if signaling::kind(&msg) == "error" {
            return Err(signaling::server_error(&msg));
        }
        if let Some(v) = pick(&msg) {
            return Ok(v);
        }
    }
}

async fn join(
    ctx: &Ctx,
    url: &str,
    room: &str,
    name: &str,
    hidden: bool,
    deadline: Instant,
) -> Result<(Signaling, Value), FailCause> {
    let mut sig = step(deadline, FailCause::Signaling, Signaling::connect(url)).await?;
    step(
        deadline,
        FailCause::Signaling,
        sig.request(json!({"type": "join", "room": room, "name": name, "hidden": hidden})),
    )
    .await?;
    let joined = step(
        deadline,
        FailCause::Signaling,
        wait_for(&mut sig, |m| {
            (signaling::kind(m) == "joined").then(|| m.clone())
        }),
    )
    .await?;
    let _ = ctx;
    Ok((sig, joined))
}

/// Packets a publisher keeps for retransmission, per SSRC (a power of
/// two: slots are indexed by sequence number). 512 packets are ~0.5 s of
/// 1 Mbit/s video, more than the server asks for before giving up.
const HISTORY: usize = 512;
/// NACKed packets queued between the receive task and the media task.
const NACK_QUEUE: usize = 1024;

/// One SSRC a publisher sends: its last [`HISTORY`] plain RTP packets, for
/// NACKs, and what its sender reports say.
struct History {
    ssrc: u32,
    /// (sequence number, packet); buffers are reused once allocated.
    slots: Vec<(Option<u16>, Vec<u8>)>,
    /// RTP clock rate.
    clock: u32,
    /// Packets and payload octets sent (RFC 3550 §6.4.1: wrapping).
    packets: u32,
    octets: u32,
    /// The newest RTP timestamp and when its first packet was sent: the
    /// report's RTP time is extrapolated from it.
    timestamp: Option<(u32, std::time::Instant)>,
}

/// How often a publisher sends sender reports: libwebrtc's interval for
/// video (audio's is 5 s; one interval keeps the loadgen simple).
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(1);

impl History {
    fn new(ssrc: u32, clock: u32) -> Self {
        Self {
            ssrc,
            slots: (0..HISTORY).map(|_| (None, Vec::new())).collect(),
            clock,
            packets: 0,
            octets: 0,
            timestamp: None,
        }
    }

    /// Keeps a first transmission and counts it.
    fn put(&mut self, h: &RtpHeader<'_>, packet: &[u8]) {
        let seq = h.sequence_number();
        let slot = &mut self.slots[usize::from(seq) % HISTORY];
        slot.0 = Some(seq);
        slot.1.clear();
        slot.1.extend_from_slice(packet);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(h.payload().len() as u32);
        if self.timestamp.is_none_or(|(ts, _)| ts != h.timestamp()) {
            self.timestamp = Some((h.timestamp(), std::time::Instant::now()));
        }
    }

    /// The stream's sender information at `now`.
    fn sender_info(&self, ntp: &NtpClock, now: std::time::Instant) -> Option<SenderInfo> {
        let (ts, at) = self.timestamp?;
        Some(SenderInfo {
            ssrc: self.ssrc,
            ntp: ntp.ntp(now),
            rtp_timestamp: rtp_time_at(ts, at, now, self.clock),
            packets: self.packets,
            octets: self.octets,
        })
    }

    fn get(&self, seq: u16) -> Option<&[u8]> {
        let slot = &self.slots[usize::from(seq) % HISTORY];
        (slot.0 == Some(seq)).then_some(slot.1.as_slice())
    }
}

/// Publisher side of the keyframe request and NACK paths.
struct PublisherInbound {
    ctx: Arc<Ctx>,
    keyframe: Arc<AtomicBool>,
    /// (media SSRC, sequence number) the server asked for again.
    nacks: tokio::sync::mpsc::Sender<(u32, u16)>,
}

impl Inbound for PublisherInbound {
    fn on_rtp(&mut self, _packet: &[u8], _wire_len: usize, _arrival_us: u64) {}

    fn on_rtcp(&mut self, packet: &[u8]) {
        for item in weir_dataplane::rtcp::walk(packet).flatten() {
            if let weir_dataplane::rtcp::RtcpItem::Nack { media_ssrc, fci } = item {
                self.ctx
                    .stats
                    .nacks_received
                    .fetch_add(1, Ordering::Relaxed);
                for seq in weir_dataplane::rtcp::nack::nacked_seqs(fci) {
                    // A full queue drops the request, as a busy sender would.
                    let _ = self.nacks.try_send((media_ssrc, seq));
                }
            }
        }
        if wants_keyframe(packet) {
            self.ctx
                .stats
                .keyframe_requests
                .fetch_add(1, Ordering::Relaxed);
            self.keyframe.store(true, Ordering::Relaxed);
        }
    }
}

async fn publisher(
    ctx: &Arc<Ctx>,
    room: &str,
    index: usize,
    mut stop: watch::Receiver<bool>,
) -> PeerResult {
    let started = Instant::now();
    let deadline = started + ctx.scenario.join_timeout;
    let name = format!("pub-{index}");
    let setup = async {
        let (mut sig, _joined) =
            join(ctx, &ctx.scenario.publish_ws, room, &name, false, deadline).await?;
        let local = LocalParams::generate(&ctx.identity.fingerprint);
        let mut tracks = Vec::new();
        let stream = format!("{name}-{}", local.ufrag);
        if ctx.scenario.audio == AudioCodec::Opus {
            tracks.push(LocalTrack {
                mid: tracks.len().to_string(),
                kind: MediaKind::Audio,
                pt: OPUS_PT,
                ssrc: rand::random(),
                stream: stream.clone(),
                track: format!("{stream}-audio"),
                simulcast: false,
                rtx: None,
            });
        }
        if ctx.scenario.video == VideoCodec::Vp8 {
            tracks.push(LocalTrack {
                mid: tracks.len().to_string(),
                kind: MediaKind::Video,
                pt: VP8_PT,
                ssrc: rand::random(),
                stream: stream.clone(),
                track: format!("{stream}-video"),
                simulcast: ctx.scenario.simulcast,
                rtx: (!ctx.scenario.simulcast).then(|| (RTX_PT, rand::random())),
            });
        }
        let offer = sdp::publish_offer(&local, &tracks);
        step(
            deadline,
            FailCause::Signaling,
            sig.request(json!({"type": "publish", "sdp": offer})),
        )
        .await?;
        let answer = step(
            deadline,
            FailCause::Signaling,
            wait_for(&mut sig, |m| {
                (signaling::kind(m) == "answer" && signaling::field(m, "transport") == "publish")
                    .then(|| signaling::field(m, "sdp").to_owned())
            }),
        )
        .await?;
        let remote = sdp::parse(&answer).map_err(|_| FailCause::Signaling)?;
        // Retransmissions go out as RTX only where the answer kept it.
        for t in &mut tracks {
            if !t.rtx_accepted(&remote) {
                t.rtx = None;
            }
        }
        let keyframe = Arc::new(AtomicBool::new(false));
        let (nacks_tx, nacks) = tokio::sync::mpsc::channel(NACK_QUEUE);
        let inbound = PublisherInbound {
            ctx: ctx.clone(),
            keyframe: keyframe.clone(),
            nacks: nacks_tx,
        };
        ctx.stats.record_stage(Stage::Signaling, started.elapsed());
        let connecting = transport::connect(
            &remote,
            &local.ufrag,
            &ctx.identity,
            &ctx.stats,
            inbound,
            deadline,
        );
        let transport = drain_while(&mut sig, connecting).await?;
        let connected = Instant::now();
        Ok::<_, FailCause>((sig, transport, tracks, keyframe, nacks, connected))
    };
    let (mut sig, transport, tracks, keyframe, nacks, connected) = tokio::select! {
        r = setup => r.map_err(Some)?,
        _ = stopped(&mut stop) => return Err(None),
    };

    // Media flows from here on; the server confirms each track when its
    // first packet arrives.
    let (media_stop_tx, media_stop) = watch::channel(false);
    let media = tokio::spawn(send_media(
        ctx.clone(),
        transport,
        tracks.clone(),
        keyframe,
        nacks,
        media_stop,
        index as u64,
    ));
    let mut published = 0;
    let confirmed = async {
        while published < tracks.len() {
            let msg = sig.next().await.map_err(|_| FailCause::Signaling)?;
            match signaling::kind(&msg) {
                "published" => published += 1,
                "error" => return Err(FailCause::Signaling),
                _ => {}
            }
        }
        Ok(())
    };
    let joined = tokio::select! {
        r = tokio::time::timeout_at(deadline, confirmed) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(c)) => Err(Some(c)),
            Err(_) => Err(Some(FailCause::MediaTimeout)),
        },
        _ = stopped(&mut stop) => Err(None),
    };
    if joined.is_ok() {
        ctx.stats.record_stage(Stage::Media, connected.elapsed());
        ctx.stats
            .record_join(started.elapsed().as_secs_f64() * 1000.0);
        steady(ctx, &mut sig, &mut stop, |_, _| Vec::new()).await;
    }
    let _ = media_stop_tx.send(true);
    if let Ok(t) = media.await {
        let _ = tokio::time::timeout(GOODBYE, t.close()).await;
    }
    let _ = tokio::time::timeout(GOODBYE, sig.leave()).await;
    joined
}

/// Awaits `fut` while reading (and ignoring) signaling, so that the
/// server's queue for us never fills.
async fn drain_while<T>(
    sig: &mut Signaling,
    fut: impl Future<Output = Result<T, FailCause>>,
) -> Result<T, FailCause> {
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return r,
            m = sig.next() => {
                let m = m.map_err(|_| FailCause::Signaling)?;
                if signaling::kind(&m) == "error" {
                    return Err(FailCause::Signaling);
                }
            }
        }
    }
}

/// After joining: reads signaling until `stop`, handing each message to
/// `on_message`, which returns requests to send.
async fn steady(
    ctx: &Ctx,
    sig: &mut Signaling,
    stop: &mut watch::Receiver<bool>,
    mut on_message: impl FnMut(&Value, &Ctx) -> Vec<Value>,
) {
    loop {
        tokio::select! {
            _ = stopped(stop) => return,
            m = sig.next() => match m {
                Ok(m) => {
                    for req in on_message(&m, ctx) {
                        if sig.request(req).await.is_err() {
                            ctx.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
                Err(_) => {
                    ctx.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// Sends the publisher's media until `stop`, then hands the transport back.
async fn send_media(
    ctx: Arc<Ctx>,
    mut transport: Transport,
    tracks: Vec<LocalTrack>,
    keyframe: Arc<AtomicBool>,
    mut nacks: tokio::sync::mpsc::Receiver<(u32, u16)>,
    mut stop: watch::Receiver<bool>,
    seed: u64,
) -> Transport {
    let s = &ctx.scenario;
    let fps = 30.0;
    let key_every = (s.keyframe_interval.as_secs_f64() * fps).round().max(1.0) as u64;
    let mut video: Vec<Vp8Source> = Vec::new();
    // The captures are embedded and checked by tests; a failure here
    // leaves the synthetic frames, so the run still measures.
    let replay = |rid: Option<&str>, v: Vp8Source| match s.vp8_frames {
        Vp8Frames::Captured => match crate::captured::frames(rid) {
            Ok(frames) => v.replaying(frames),
            Err(_) => v,
        },
        Vp8Frames::Synthetic => v,
    };
    if let Some(t) = tracks.iter().find(|t| t.kind == MediaKind::Video) {
        if t.simulcast {
            for (i, layer) in SIMULCAST_LAYERS.iter().enumerate() {
                let bps = (u64::from(s.video_bps) * u64::from(layer.share_permille) / 1000) as u32;
                let ext = mid_rid_extensions(sdp::MID_EXT_ID, &t.mid, sdp::RID_EXT_ID, layer.rid);
                let v = Vp8Source::new(rand::random(), t.pt, bps, key_every, rand::random())
                    .simulcast(i as u8, layer, ext);
                video.push(replay(Some(layer.rid), v));
            }
        } else {
            let v = Vp8Source::new(t.ssrc, t.pt, s.video_bps, key_every, rand::random());
            video.push(replay(None, v));
        }
    }
    let mut audio = tracks
        .iter()
        .find(|t| t.kind == MediaKind::Audio)
        .map(|t| OpusSource::new(t.ssrc, t.pt, rand::random()));
    let mut rng = SmallRng::seed_from_u64(seed ^ rand::random::<u64>());
    let mut video_tick = tokio::time::interval(Duration::from_micros(33_333));
    let mut audio_tick = tokio::time::interval(Duration::from_millis(20));
    video_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    audio_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut plain = Vec::with_capacity(1500);
    let mut sealed = Vec::with_capacity(1500);
    let mut resealed = Vec::with_capacity(1500);
    let mut last_forced: Option<Instant> = None;
    let mut rtx: Vec<RtxSender> = tracks
        .iter()
        .filter_map(|t| t.rtx.map(|(pt, ssrc)| RtxSender::new(t.ssrc, pt, ssrc)))
        .collect();
    let mut wrapped = Vec::with_capacity(1500);
    let loss = s.loss;
    let stats = &ctx.stats;
    let mut history: Vec<History> = Vec::new();
    let ntp = NtpClock::new(std::time::Instant::now());
    let mut report_tick = tokio::time::interval_at(
        Instant::now() + SENDER_REPORT_INTERVAL,
        SENDER_REPORT_INTERVAL,
    );
    let mut rtcp_plain = Vec::with_capacity(1500);
    let mut rtcp_sealed = Vec::with_capacity(1500);
    let mut send = |plain: &mut Vec<u8>,
                    transport: &mut Transport,
                    rng: &mut SmallRng,
                    history: &mut Vec<History>| {
        // Kept before the loss: a packet the uplink "dropped" can be
        // repaired, and the sender report counts it as sent.
        if let Ok(h) = RtpHeader::parse(plain) {
            let i = match history.iter().position(|x| x.ssrc == h.ssrc()) {
                Some(i) => i,
                None => {
                    let clock = if h.payload_type() == OPUS_PT {
                        48_000
                    } else {
                        90_000
                    };
                    history.push(History::new(h.ssrc(), clock));
                    history.len() - 1
                }
            };
            history[i].put(&h, plain);
        }
        if loss > 0.0 && rng.gen::<f64>() < loss {
            stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if transport.srtp.encrypt_rtp(plain, &mut sealed).is_err() {
            return;
        }
        // A full socket buffer drops the packet, as a congested link would.
        if transport.socket.try_send(&sealed).is_ok() {
            stats.tx_packets.fetch_add(1, Ordering::Relaxed);
            stats
                .tx_bytes
                .fetch_add(sealed.len() as u64, Ordering::Relaxed);
        }
    };
    // Paced like libwebrtc, so keyframes reach the server as browsers send
    // them; audio and retransmissions are not paced (libwebrtc sends them
    // first).
    let mut pacer = (s.pacing_factor > 0.0 && !video.is_empty()).then(|| {
        Pacer::new(
            s.pacing_factor * f64::from(s.video_bps),
            Instant::now().into_std(),
        )
    });
    let v_replays = matches!(s.vp8_frames, Vp8Frames::Captured);
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = video_tick.tick(), if !video.is_empty() => {
                let now = Instant::now();
                let force = keyframe.load(Ordering::Relaxed)
                    && last_forced.is_none_or(|t| now - t >= MIN_FORCED_KEYFRAME_GAP);
                if force {
                    keyframe.store(false, Ordering::Relaxed);
                    last_forced = Some(now);
                }
                // A keyframe request refreshes every encoding: the
                // server asks for the one it needs, but a switch may follow.
                for v in &mut video {
                    let f = match pacer.as_mut() {
                        Some(pacer) => v.frame(force, &mut plain, |p| {
                            let trailer = v_has_trailer(v_replays, p);
                            let mut b = pacer.buffer();
                            b.extend_from_slice(p);
                            pacer.push(b, trailer);
                        }),
                        None => v.frame(force, &mut plain, |p| {
                            send(p, &mut transport, &mut rng, &mut history)
                        }),
                    };
                    if f.keyframe {
                        stats.tx_keyframes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some(pacer) = pacer.as_mut() {
                    release(pacer, &mut |p| send(p, &mut transport, &mut rng, &mut history));
                }
            }
            _ = paced(pacer.as_ref()) => {
                if let Some(pacer) = pacer.as_mut() {
                    release(pacer, &mut |p| send(p, &mut transport, &mut rng, &mut history));
                }
            }
            _ = report_tick.tick(), if !history.is_empty() => {
                // One compound packet: a sender report per stream, then
                // the CNAME (RFC 3550 §6.1), as browsers send every second.
                let n = sender_reports(&history, &ntp, std::time::Instant::now(), &mut rtcp_plain);
                if n > 0
                    && transport.srtp.encrypt_rtcp(&rtcp_plain, &mut rtcp_sealed).is_ok()
                    && transport.socket.try_send(&rtcp_sealed).is_ok()
                {
                    stats
                        .sender_reports_sent
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            _ = audio_tick.tick(), if audio.is_some() => {
                if let Some(a) = audio.as_mut() {
                    a.packet(&mut plain);
                    send(&mut plain, &mut transport, &mut rng, &mut history);
                }
            }
            Some((ssrc, seq)) = nacks.recv() => {
                // A plain retransmission (same SSRC and sequence number):
                // the loss is injected before encryption, so the server
                // has not seen this SRTP index yet. Not subject to --loss.
                let Some(p) = history.iter().find(|h| h.ssrc == ssrc).and_then(|h| h.get(seq)) else {
                    continue;
                };
                // As RTX where negotiated (RFC 4588), else plain.
                let (p, as_rtx) = match rtx.iter_mut().find(|r| r.media_ssrc == ssrc) {
                    Some(r) => match r.wrap(p, &mut wrapped) {
                        Some(()) => (wrapped.as_slice(), true),
                        None => continue,
                    },
                    None => (p, false),
                };
                if transport.srtp.encrypt_rtp(p, &mut resealed).is_ok()
                    && transport.socket.try_send(&resealed).is_ok()
                {
                    stats.retransmitted.fetch_add(1, Ordering::Relaxed);
                    if as_rtx {
                        stats.retransmitted_rtx.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
    transport
}

/// Writes into `out` a compound RTCP packet of one sender report per stream
/// of `streams` and an SDES CNAME; returns the number of reports.
fn sender_reports(
    streams: &[History],
    ntp: &NtpClock,
    now: std::time::Instant,
    out: &mut Vec<u8>,
) -> usize {
    out.clear();
    let mut n = 0;
    for info in streams.iter().filter_map(|s| s.sender_info(ntp, now)) {
        let at = out.len();
        out.resize(at + 28, 0);
        match write_sr(&mut out[at..], &info) {
            Some(len) => {
                out.truncate(at + len);
                n += 1;
            }
            None => out.truncate(at),
        }
    }
    if let Some(first) = streams.first().filter(|_| n > 0) {
        let at = out.len();
        out.resize(at + 64, 0);
        match write_sdes_cname(&mut out[at..], first.ssrc, "weir-loadgen") {
            Some(len) => out.truncate(at + len),
            None => out.truncate(at),
        }
    }
    n
}

/// One track's RTX stream (RFC 4588 §4): retransmissions on their own SSRC,
/// payload type and sequence numbers, the original sequence number first
/// in the payload.
struct RtxSender {
    media_ssrc: u32,
    pt: u8,
    ssrc: u32,
    seq: u16,
}

impl RtxSender {
    fn new(media_ssrc: u32, pt: u8, ssrc: u32) -> Self {
        Self {
            media_ssrc,
            pt,
            ssrc,
            seq: rand::random(),
        }
    }

    /// Writes the RTX packet repairing the plain RTP `packet` into `out`;
    /// `None` if `packet` does not parse.
    fn wrap(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let header = RtpHeader::parse(packet).ok()?.header_len();
        let (head, payload) = packet.split_at_checked(header)?;
        out.clear();
        out.extend_from_slice(head);
        // Same marker bit, timestamp and extensions; RTX's type, number
        // and SSRC.
        out[1] = (out[1] & 0x80) | self.pt;
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&packet[2..4]);
        out.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        Some(())
    }
}

/// Whether a packet just written by a VP8 source ends with a trailer: all
/// synthetic packets do, replayed frames only in their marker packet.
fn v_has_trailer(replays: bool, packet: &[u8]) -> bool {
    !replays || packet.get(1).is_some_and(|b| b & 0x80 != 0)
}

/// Sends every packet the pacer lets go now, each stamped as it leaves.
fn release(pacer: &mut Pacer, send: &mut impl FnMut(&mut Vec<u8>)) {
    let now = std::time::Instant::now();
    while let Some(mut q) = pacer.poll(now) {
        if q.trailer {
            crate::media::restamp_trailer(&mut q.packet, crate::stats::now_us());
        }
        send(&mut q.packet);
        pacer.recycle(q.packet);
    }
}

/// Resolves when the pacer's next packet may leave; never without one.
async fn paced(pacer: Option<&Pacer>) {
    match pacer.and_then(|p| p.next_release(std::time::Instant::now())) {
        Some(at) => tokio::time::sleep_until(Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// One inbound stream: its loss detection (extended sequence number and
/// the data plane's own NACK scheduler, RTT-aware with limited retries)
/// and its receive statistics.
struct NackState {
    ssrc: u32,
    /// Its payload type (RTX packets carry their own).
    pt: u8,
    last: u64,
    generator: NackGenerator,
    recovered: u64,
    /// RFC 3550 receive statistics of the stream itself (not its RTX),
    /// for receiver reports.
    stats: ReceiveStats,
}

/// `seq` extended against the last extended sequence number (RFC 3550
/// A.1: the nearest of the candidates around it).
fn extend_seq(last: u64, seq: u16) -> u64 {
    let delta = i64::from(seq.wrapping_sub(last as u16) as i16);
    (last as i64 + delta).max(0) as u64
}

/// Subscriber side: counts, checks trailers, measures latency, and asks
/// for missing packets again.
struct SubscriberInbound {
    ctx: Arc<Ctx>,
    /// Per media SSRC: loss detection for NACKs, receive statistics for
    /// receiver reports.
    nacks: Vec<NackState>,
    /// Our SSRC as an RTCP sender.
    rtcp_ssrc: u32,
    /// Injected downlink loss.
    rng: SmallRng,
    /// (RTX SSRC, media SSRC) pairs of every offer so far, shared with the
    /// signaling side, and this task's copy (refreshed when an SSRC is
    /// neither a known stream nor a known RTX stream).
    rtx_shared: Arc<std::sync::Mutex<Vec<(u32, u32)>>>,
    rtx: Vec<(u32, u32)>,
    /// Per SSRC: the simulcast encoding last seen, its loss tracker and
    /// its jitter.
    streams: Vec<(u32, u8, StreamTracker, Jitter)>,
    /// Payload types of video whose trailer only ends a frame (captured
    /// VP8 frames): other packets of theirs carry none.
    frame_trailer_pts: Vec<u8>,
    first_media: Option<Arc<Notify>>,
    /// Payload types of audio (48 kHz clock); the rest is video (90 kHz).
    audio_pts: Vec<u8>,
    /// When the next receiver report is due; set by the first packet.
    next_report: Option<std::time::Instant>,
    /// Scratch for a report's blocks.
    blocks: Vec<ReportBlock>,
    /// The transport-cc extension id the answer kept, and the arrivals it
    /// reports (made at the first packet that carries the extension).
    twcc: Option<(u8, Option<TwccRecorder>)>,
}

/// Room for one transport-cc feedback packet: the recorder reports at most
/// 400 packets per feedback, two bytes of status and delta each at worst.
const TWCC_FEEDBACK_MAX: usize = 1200;

/// How often a subscriber sends receiver reports: libwebrtc's interval for
/// video. Every browser sends them, and they are the server's first sign
/// that the peer holds the SRTP keys.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// The first report goes out this long after the first packet, so its
/// blocks have something to say.
const FIRST_REPORT_AFTER: Duration = Duration::from_millis(100);

impl SubscriberInbound {
    /// Appends a receiver report (RFC 3550 §6.4.2) to `out` if one is due.
    fn receiver_report(&mut self, now: std::time::Instant, out: &mut Vec<u8>) {
        match self.next_report {
            Some(at) if now >= at => self.next_report = Some(now + REPORT_INTERVAL),
            _ => return,
        }
        self.blocks.clear();
        // An RR holds at most 31 blocks (its 5-bit count).
        for n in self.nacks.iter_mut().take(31) {
            self.blocks.extend(n.stats.report(now, n.ssrc));
        }
        let at = out.len();
        out.resize(at + 8 + ReportBlock::LEN * self.blocks.len(), 0);
        match write_rr(&mut out[at..], self.rtcp_ssrc, &self.blocks) {
            Some(n) => {
                out.truncate(at + n);
                self.ctx.stats.reports_sent.fetch_add(1, Ordering::Relaxed);
            }
            None => out.truncate(at),
        }
    }

    /// The media SSRC that `ssrc` repairs, if it is an RTX stream.
    fn rtx_media(&mut self, ssrc: u32) -> Option<u32> {
        if self.nacks.iter().any(|n| n.ssrc == ssrc) {
            return None;
        }
        if let Some(&(_, m)) = self.rtx.iter().find(|(r, _)| *r == ssrc) {
            return Some(m);
        }
        // A new stream: rare, so the lock is not on the per-packet path.
        self.rtx = self
            .rtx_shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.rtx.iter().find(|(r, _)| *r == ssrc).map(|&(_, m)| m)
    }
}

impl Inbound for SubscriberInbound {
    fn keep(&mut self, _packet: &[u8]) -> bool {
        let loss = self.ctx.scenario.rx_loss;
        if loss > 0.0 && self.rng.gen::<f64>() < loss {
            self.ctx.stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn rtcp_due(&mut self, now: std::time::Instant, out: &mut Vec<u8>) -> bool {
        out.clear();
        self.receiver_report(now, out);
        if let Some((_, Some(recorder))) = self.twcc.as_mut() {
            // Any media SSRC of the transport: the server reads only the
            // transport-wide sequence numbers.
            let media_ssrc = self.nacks.first().map_or(0, |n| n.ssrc);
            let at = out.len();
            out.resize(at + TWCC_FEEDBACK_MAX, 0);
            match recorder.poll_feedback(now, self.rtcp_ssrc, media_ssrc, &mut out[at..]) {
                Some(n) => {
                    out.truncate(at + n);
                    self.ctx
                        .stats
                        .twcc_feedback_sent
                        .fetch_add(1, Ordering::Relaxed);
                }
                None => out.truncate(at),
            }
        }
        if !self.ctx.scenario.nack {
            return !out.is_empty();
        }
        let mut fci = [0u8; 64];
        for n in &mut self.nacks {
            let len = n.generator.poll(now, &mut fci);
            if len == 0 {
                continue;
            }
            let at = out.len();
            out.resize(at + 12 + len, 0);
            if let Some(w) = write_nack(&mut out[at..], self.rtcp_ssrc, n.ssrc, &fci[..len]) {
                out.truncate(at + w);
                self.ctx.stats.nacks_sent.fetch_add(1, Ordering::Relaxed);
            } else {
                out.truncate(at);
            }
        }
        !out.is_empty()
    }

    fn on_rtp(&mut self, packet: &[u8], wire_len: usize, arrival_us: u64) {
        let ctx = self.ctx.clone();
        let stats = &ctx.stats;
        let Ok(h) = RtpHeader::parse(packet) else {
            stats.rx_invalid.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let at = crate::stats::epoch() + Duration::from_micros(arrival_us);
        if let Some((id, recorder)) = self.twcc.as_mut() {
            let seq = Extensions::from_header(&h)
                .ok()
                .and_then(|e| e.get(*id))
                .and_then(|v| TransportSequenceNumber::parse(v).ok());
            if let Some(TransportSequenceNumber(seq)) = seq {
                recorder
                    .get_or_insert_with(|| TwccRecorder::new(at))
                    .on_packet(at, seq);
            }
        }
        if h.payload().is_empty() && h.padding_len() > 0 {
            // A bandwidth probe (padding-only RTX): measured by the
            // transport-cc feedback, nothing for the decoder.
            stats.rx_padding.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let (mut ssrc, mut seq, mut payload, mut pt) =
            (h.ssrc(), h.sequence_number(), h.payload(), h.payload_type());
        let rtx = self.rtx_media(ssrc);
        if let Some(media) = rtx {
            // RFC 4588: the original sequence number, then the payload.
            let Some(osn) = payload.get(..2) else {
                stats.rx_invalid.fetch_add(1, Ordering::Relaxed);
                return;
            };
            stats.rx_rtx.fetch_add(1, Ordering::Relaxed);
            seq = u16::from_be_bytes([osn[0], osn[1]]);
            payload = &payload[2..];
            ssrc = media;
            pt = self
                .nacks
                .iter()
                .find(|n| n.ssrc == media)
                .map_or(pt, |n| n.pt);
        }
        let n = match self.nacks.iter().position(|n| n.ssrc == ssrc) {
            Some(i) => &mut self.nacks[i],
            None => {
                let clock = if self.audio_pts.contains(&pt) {
                    48_000
                } else {
                    90_000
                };
                self.nacks.push(NackState {
                    ssrc,
                    pt,
                    last: u64::from(seq) + (1 << 16),
                    generator: NackGenerator::default(),
                    recovered: 0,
                    stats: ReceiveStats::new(clock, at),
                });
                self.next_report.get_or_insert(at + FIRST_REPORT_AFTER);
                self.nacks.last_mut().expect("just pushed")
            }
        };
        if rtx.is_none() {
            n.stats.update(at, seq, h.timestamp());
        }
        let ext = extend_seq(n.last, seq);
        n.last = n.last.max(ext);
        n.generator.on_packet(std::time::Instant::now(), ext);
        if n.generator.recovered > n.recovered {
            stats
                .nack_recovered
                .fetch_add(n.generator.recovered - n.recovered, Ordering::Relaxed);
            n.recovered = n.generator.recovered;
        }
        if !h.marker() && self.frame_trailer_pts.contains(&pt) {
            // Counted now; the frame's last packet accounts for the
            // expected count of the whole span.
            stats.rx_packets.fetch_add(1, Ordering::Relaxed);
            stats.rx_bytes.fetch_add(wire_len as u64, Ordering::Relaxed);
            return;
        }
        let Some((counter, sent)) = read_trailer(payload) else {
            stats.rx_invalid.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (layer, counter) = split_counter(counter);
        let entry = match self.streams.iter().position(|(s, ..)| *s == ssrc) {
            Some(i) => {
                let entry = &mut self.streams[i];
                if entry.1 != layer {
                    // The server switched encodings: a new counter space,
                    // not a gap.
                    entry.1 = layer;
                    entry.2 = StreamTracker::default();
                }
                entry
            }
            None => {
                self.streams
                    .push((ssrc, layer, StreamTracker::default(), Jitter::default()));
                // Just pushed, so the last element exists.
                self.streams.last_mut().expect("just pushed")
            }
        };
        // The kernel's arrival stamp: the loadgen's own queueing is not
        // the SFU's latency.
        let now = arrival_us;
        stats.jitter_us.record(entry.3.on_packet(sent, now));
        let tracker = &mut entry.2;
        if let Some(c) = stats.rx_layer_packets.get(usize::from(layer)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let (expected, late) = tracker.on_packet(counter);
        stats.rx_expected.fetch_add(expected, Ordering::Relaxed);
        if late {
            stats.rx_reordered.fetch_add(1, Ordering::Relaxed);
        }
        stats.rx_packets.fetch_add(1, Ordering::Relaxed);
        stats.rx_bytes.fetch_add(wire_len as u64, Ordering::Relaxed);
        stats.latency_us.record(now.saturating_sub(sent));
        if let Some(n) = self.first_media.take() {
            n.notify_one();
        }
    }

    fn on_rtcp(&mut self, packet: &[u8]) {
        let now = std::time::Instant::now();
        for item in weir_dataplane::rtcp::walk(packet).flatten() {
            if let weir_dataplane::rtcp::RtcpItem::SenderReport { ssrc, ntp, .. } = item {
                if let Some(n) = self.nacks.iter_mut().find(|n| n.ssrc == ssrc) {
                    // LSR is the middle 32 bits of the NTP time.
                    n.stats.on_sender_report(now, (ntp >> 16) as u32);
                }
            }
        }
    }

    fn on_invalid(&mut self) {
        self.ctx.stats.rx_invalid.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a subscriber does with a message: requests to send, or a failure.
fn subscriber_message(
    msg: &Value,
    ctx: &Ctx,
    local: &LocalParams,
    subscribed: &mut Vec<String>,
    offers: &mut Vec<sdp::RemoteDescription>,
    rtx: &std::sync::Mutex<Vec<(u32, u32)>>,
) -> Result<Vec<Value>, FailCause> {
    let mut out = Vec::new();
    let mut subscribe = |t: &Value, out: &mut Vec<Value>| {
        let id = signaling::field(t, "trackId");
        if !id.is_empty() && !subscribed.iter().any(|s| s == id) {
            subscribed.push(id.to_owned());
            out.push(json!({"type": "subscribe", "trackId": id}));
        }
    };
    match signaling::kind(msg) {
        "joined" => {
            for t in msg
                .get("tracks")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                subscribe(t, &mut out);
            }
        }
        "trackPublished" => subscribe(msg, &mut out),
        "offer" => {
            let remote =
                sdp::parse(signaling::field(msg, "sdp")).map_err(|_| FailCause::Signaling)?;
            let answer = sdp::subscribe_answer(local, &remote, ctx.scenario.twcc);
            out.push(json!({"type": "answer", "sdp": answer}));
            {
                let mut map = rtx.lock().unwrap_or_else(|e| e.into_inner());
                for pair in &remote.rtx {
                    if !map.contains(pair) {
                        map.push(*pair);
                    }
                }
            }
            offers.push(remote);
            // The subscription exists once its offer names it; the
            // preference rides after the answer.
            if let Some(spatial) = ctx.scenario.prefer_layer {
                for t in msg
                    .get("tracks")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|t| signaling::field(t, "kind") == "video")
                {
                    out.push(json!({
                        "type": "setPreferredLayers",
                        "trackId": signaling::field(t, "trackId"),
                        "spatial": spatial,
                        "temporal": 3,
                    }));
                }
            }
        }
        "layersChanged" => {
            ctx.stats.layers_changed.fetch_add(1, Ordering::Relaxed);
        }
        "error" => match signaling::field(msg, "code") {
            // Races with tracks ending are harmless.
            "unknown_track" | "already_subscribed" => {}
            _ => return Err(FailCause::Signaling),
        },
        _ => {}
    }
    Ok(out)
}

type Connecting = Pin<Box<dyn Future<Output = Result<Transport, FailCause>> + Send>>;

async fn subscriber(
    ctx: &Arc<Ctx>,
    room: &str,
    index: usize,
    mut stop: watch::Receiver<bool>,
) -> PeerResult {
    let started = Instant::now();
    let deadline = started + ctx.scenario.join_timeout;
    let name = format!("sub-{index}");
    let local = LocalParams::generate(&ctx.identity.fingerprint);
    let first_media = Arc::new(Notify::new());
    let mut subscribed = Vec::new();
    let mut offers = Vec::new();
    let mut connecting: Option<Connecting> = None;
    let mut transport: Option<Transport> = None;
    let mut connected = started;
    let rtx_map: Arc<std::sync::Mutex<Vec<(u32, u32)>>> = Arc::default();

    let (mut sig, joined) = tokio::select! {
        r = join(
            ctx,
            &ctx.scenario.subscribe_ws,
            room,
            &name,
            ctx.scenario.hidden_subscribers,
            deadline,
        ) => r.map_err(Some)?,
        _ = stopped(&mut stop) => return Err(None),
    };
    let mut pending = vec![joined];
    let result: PeerResult = loop {
        for msg in pending.drain(..) {
            match subscriber_message(&msg, ctx, &local, &mut subscribed, &mut offers, &rtx_map) {
                Ok(reqs) => {
                    for r in reqs {
                        if sig.request(r).await.is_err() {
                            break;
                        }
                    }
                }
                Err(c) => return finish_subscriber(sig, transport, Err(Some(c))).await,
            }
        }
        if connecting.is_none() && transport.is_none() {
            if let Some(remote) = offers.first().cloned() {
                let frame_trailer_pts = if ctx.scenario.vp8_frames == Vp8Frames::Captured {
                    remote
                        .media
                        .iter()
                        .filter(|m| m.kind == "video")
                        .flat_map(|m| m.formats.split_whitespace())
                        .filter_map(|pt| pt.parse().ok())
                        .collect()
                } else {
                    Vec::new()
                };
                let audio_pts = remote
                    .media
                    .iter()
                    .filter(|m| m.kind == "audio")
                    .flat_map(|m| m.formats.split_whitespace())
                    .filter_map(|pt| pt.parse().ok())
                    .collect();
                let inbound = SubscriberInbound {
                    ctx: ctx.clone(),
                    nacks: Vec::new(),
                    rtcp_ssrc: rand::random(),
                    rng: SmallRng::seed_from_u64(rand::random()),
                    rtx_shared: rtx_map.clone(),
                    rtx: Vec::new(),
                    streams: Vec::new(),
                    frame_trailer_pts,
                    first_media: Some(first_media.clone()),
                    audio_pts,
                    next_report: None,
                    blocks: Vec::new(),
                    twcc: ctx
                        .scenario
                        .twcc
                        .then(|| remote.twcc_ext_id())
                        .flatten()
                        .map(|id| (id, None)),
                };
                ctx.stats.record_stage(Stage::Signaling, started.elapsed());
                let ctx = ctx.clone();
                let ufrag = local.ufrag.clone();
                connecting = Some(Box::pin(async move {
                    transport::connect(
                        &remote,
                        &ufrag,
                        &ctx.identity,
                        &ctx.stats,
                        inbound,
                        deadline,
                    )
                    .await
                }));
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => break Err(None),
            m = sig.next() => match m {
                Ok(m) => pending.push(m),
                Err(_) => break Err(Some(FailCause::Signaling)),
            },
            r = async { connecting.as_mut().expect("guarded by the branch condition").await }, if connecting.is_some() => {
                connecting = None;
                match r {
                    Ok(t) => {
                        transport = Some(t);
                        connected = Instant::now();
                    }
                    Err(c) => break Err(Some(c)),
                }
            }
            _ = first_media.notified(), if transport.is_some() => break Ok(()),
            _ = tokio::time::sleep_until(deadline), if connecting.is_none() => {
                let cause = if transport.is_some() || subscribed.is_empty() {
                    FailCause::MediaTimeout
                } else {
                    // Subscribed, but no offer came.
                    FailCause::Signaling
                };
                break Err(Some(cause));
            }
        }
    };
    if result.is_err() {
        return finish_subscriber(sig, transport, result).await;
    }
    ctx.stats.record_stage(Stage::Media, connected.elapsed());
    ctx.stats
        .record_join(started.elapsed().as_secs_f64() * 1000.0);
    // Keep answering renegotiations (tracks ending, new publishers).
    steady(ctx, &mut sig, &mut stop, |m, ctx| match subscriber_message(
        m,
        ctx,
        &local,
        &mut subscribed,
        &mut offers,
        &rtx_map,
    ) {
        Ok(reqs) => {
            offers.clear();
            reqs
        }
        Err(_) => Vec::new(),
    })
    .await;
    finish_subscriber(sig, transport, Ok(())).await
}

async fn finish_subscriber(
    sig: Signaling,
    transport: Option<Transport>,
    result: PeerResult,
) -> PeerResult {
    if let Some(t) = transport {
        let _ = tokio::time::timeout(GOODBYE, t.close()).await;
    }
    let _ = tokio::time::timeout(GOODBYE, sig.leave()).await;
    result
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn rtx_wraps_the_original_packet_after_its_sequence_number() {
        // V=2 with the marker bit, PT 96, seq 0x1234, ts, SSRC 7, payload.
        let mut p = vec![0x80, 0x80 | 96, 0x12, 0x34, 0, 0, 1, 0, 0, 0, 0, 7];
        p.extend_from_slice(b"frame");
        let mut rtx = super::RtxSender::new(7, 97, 8);
        rtx.seq = 0xffff;
        let mut out = Vec::new();
        rtx.wrap(&p, &mut out).expect("parses");
        assert_eq!(out[1], 0x80 | 97, "marker kept, RTX payload type");
        assert_eq!(&out[2..4], &[0xff, 0xff], "RTX's own sequence number");
        assert_eq!(&out[4..8], &p[4..8], "same timestamp");
        assert_eq!(&out[8..12], &8u32.to_be_bytes(), "RTX SSRC");
        assert_eq!(&out[12..14], &[0x12, 0x34], "original sequence number");
        assert_eq!(&out[14..], b"frame");
        rtx.wrap(&p, &mut out).expect("parses");
        assert_eq!(&out[2..4], &[0, 0], "the RTX sequence wraps");
        assert!(rtx.wrap(&[0x80], &mut out).is_none());
    }

    use super::*;

    #[test]
    fn sequence_numbers_extend_across_wraps() {
        let base = 1u64 << 16;
        assert_eq!(extend_seq(base + 10, 11), base + 11);
        assert_eq!(extend_seq(base + 10, 5), base + 5);
        assert_eq!(extend_seq(base + 65_535, 2), 2 * base + 2);
        assert_eq!(extend_seq(2 * base + 2, 65_534), base + 65_534);
        assert_eq!(extend_seq(3, 65_000), 0);
    }

    /// A plain RTP packet of SSRC 7 with `payload`.
    fn rtp(seq: u16, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, VP8_PT];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&timestamp.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn put(h: &mut History, packet: &[u8]) {
        h.put(&RtpHeader::parse(packet).unwrap(), packet);
    }

    #[test]
    fn history_returns_only_the_packet_it_holds() {
        let mut h = History::new(7, 90_000);
        let (a, b) = (rtp(5, 0, &[1, 2, 3]), rtp(5 + HISTORY as u16, 0, &[9]));
        put(&mut h, &a);
        assert_eq!(h.get(5), Some(&a[..]));
        assert_eq!(h.get(6), None);
        put(&mut h, &b);
        assert_eq!(h.get(5), None, "overwritten by a packet HISTORY later");
        assert_eq!(h.get(5 + HISTORY as u16), Some(&b[..]));
    }

    #[test]
    fn sender_reports_count_what_was_sent_and_extrapolate_rtp_time() {
        let mut h = History::new(7, 90_000);
        let ntp = NtpClock::new(std::time::Instant::now());
        let mut out = Vec::new();
        assert_eq!(
            sender_reports(
                std::slice::from_ref(&h),
                &ntp,
                std::time::Instant::now(),
                &mut out
            ),
            0
        );
        assert!(out.is_empty(), "nothing sent, nothing to report");
        put(&mut h, &rtp(1, 1000, &[0; 100]));
        put(&mut h, &rtp(2, 1000, &[0; 50]));
        let (_, first_sent) = h.timestamp.unwrap();
        let now = first_sent + Duration::from_millis(100);
        assert_eq!(
            sender_reports(std::slice::from_ref(&h), &ntp, now, &mut out),
            1
        );
        let items: Vec<_> = weir_dataplane::rtcp::walk(&out)
            .collect::<Result<_, _>>()
            .unwrap();
        let sr = items
            .iter()
            .find_map(|i| match i {
                weir_dataplane::rtcp::RtcpItem::SenderReport {
                    ssrc,
                    ntp: t,
                    rtp_timestamp,
                    ..
                } => Some((*ssrc, *t, *rtp_timestamp)),
                _ => None,
            })
            .expect("a sender report");
        // 100 ms at 90 kHz after the frame's first packet.
        assert_eq!(sr, (7, ntp.ntp(now), 1000 + 9000));
        // Packet and octet counts (RFC 3550 §6.4.1).
        assert_eq!(out[20..28], [0, 0, 0, 2, 0, 0, 0, 150]);
        assert!(
            items.iter().any(|i| matches!(
                i,
                weir_dataplane::rtcp::RtcpItem::Other {
                    packet_type: 202,
                    ..
                }
            )),
            "the CNAME follows the report"
        );
    }
}
