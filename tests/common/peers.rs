//! webrtc-rs peers: a publisher that sends synthetic VP8 + Opus and
//! answers keyframe requests, and a subscriber that records what it gets.

use super::media::{self, Received, SentPacket, AUDIO_TS_STEP, VIDEO_TS_STEP};
use super::within;
use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::dtls_transport::dtls_role::DTLSRole;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::{RTCRtpCodecCapability, RTPCodecType};
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_remote::TrackRemote;

pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A webrtc-rs API: default codecs and interceptors, UDP over IPv4 on the
/// loopback interface only (Weir listens on 127.0.0.1), no mDNS, and as an
/// answerer it takes the DTLS client role (`a=setup:active`, what browsers
/// do and JSEP recommends).
///
/// Left to itself webrtc-rs (like pion) answers an ICE-lite offer with
/// `a=setup:passive`, which Weir refuses (it is always the DTLS server); see
/// [`new_api_default_dtls_role`].
pub fn new_api() -> Result<API> {
    new_api_inner(true)
}

/// [`new_api`] but with webrtc-rs's own choice of answering DTLS role.
pub fn new_api_default_dtls_role() -> Result<API> {
    new_api_inner(false)
}

fn new_api_inner(answer_active: bool) -> Result<API> {
    let mut m = MediaEngine::default();
    m.register_default_codecs()?;
    let registry = register_default_interceptors(Registry::new(), &mut m)?;
    let mut s = SettingEngine::default();
    s.set_include_loopback_candidate(true);
    s.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    s.set_network_types(vec![NetworkType::Udp4]);
    s.set_ip_filter(Box::new(|ip: IpAddr| ip.is_loopback()));
    if answer_active {
        s.set_answering_dtls_role(DTLSRole::Client)?;
    }
    Ok(APIBuilder::new()
        .with_media_engine(m)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build())
}

fn watch_state(
    pc: &RTCPeerConnection,
    label: &'static str,
) -> watch::Receiver<RTCPeerConnectionState> {
    let (tx, rx) = watch::channel(RTCPeerConnectionState::New);
    pc.on_peer_connection_state_change(Box::new(move |s| {
        info!(peer = label, state = %s, "peer connection state");
        let _ = tx.send(s);
        Box::pin(async {})
    }));
    rx
}

/// Waits until the peer connection is connected; fails early on failed/closed.
pub async fn wait_connected(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    label: &str,
) -> Result<()> {
    let s = within(
        CONNECT_TIMEOUT,
        &format!("{label} peer connection to connect"),
        async {
            state
                .wait_for(|s| {
                    matches!(
                        s,
                        RTCPeerConnectionState::Connected
                            | RTCPeerConnectionState::Failed
                            | RTCPeerConnectionState::Closed
                    )
                })
                .await
                .map(|s| *s)
        },
    )
    .await?
    .map_err(|_| anyhow!("{label}: state channel closed"))?;
    if s != RTCPeerConnectionState::Connected {
        return Err(anyhow!(
            "{label} peer connection went {s} instead of connected"
        ));
    }
    Ok(())
}

/// Sets the local description and waits for ICE gathering to finish; returns
/// the local SDP with its candidates.
async fn set_local_gathered(
    pc: &RTCPeerConnection,
    desc: RTCSessionDescription,
    label: &str,
) -> Result<String> {
    let mut done = pc.gathering_complete_promise().await;
    pc.set_local_description(desc)
        .await
        .with_context(|| format!("{label}: set_local_description"))?;
    within(
        GATHER_TIMEOUT,
        &format!("{label} ICE gathering"),
        done.recv(),
    )
    .await?;
    let sdp = pc
        .local_description()
        .await
        .context("no local description")?
        .sdp;
    if !sdp.contains("a=candidate:") {
        warn!(peer = label, "local SDP has no candidate");
    }
    Ok(sdp)
}

/// [`watch_state`] for other helper modules.
pub(crate) fn watch_state_pub(
    pc: &RTCPeerConnection,
    label: &'static str,
) -> watch::Receiver<RTCPeerConnectionState> {
    watch_state(pc, label)
}

/// [`set_local_gathered`] for other helper modules.
pub(crate) async fn set_local_gathered_pub(
    pc: &RTCPeerConnection,
    desc: RTCSessionDescription,
    label: &str,
) -> Result<String> {
    set_local_gathered(pc, desc, label).await
}

/// Applies Weir's `offer` to `pc` and returns the answer with its
/// candidates: what every subscribing peer does with Weir's offers.
pub(crate) async fn answer_offer(
    pc: &RTCPeerConnection,
    offer: &str,
    label: &str,
) -> Result<String> {
    pc.set_remote_description(RTCSessionDescription::offer(offer.to_owned())?)
        .await
        .with_context(|| format!("{label}: set_remote_description(offer from Weir)"))?;
    let answer = pc.create_answer(None).await?;
    set_local_gathered(pc, answer, label).await
}

/// What the publisher's RTCP readers saw.
#[derive(Default)]
pub struct RtcpLog {
    /// Arrival of each PLI/FIR for the video sender.
    pub video_keyframe_requests: Mutex<Vec<Instant>>,
    /// Keyframe requests that arrived on the audio sender (should be none).
    pub audio_keyframe_requests: Mutex<Vec<Instant>>,
    /// Every RTCP packet type seen, for diagnostics.
    pub kinds: Mutex<BTreeMap<String, usize>>,
}

/// The sender's log of what it wrote.
#[derive(Default)]
pub struct SentLog {
    pub video: Mutex<BTreeMap<u32, SentPacket>>,
    pub audio: Mutex<BTreeMap<u32, SentPacket>>,
}

impl SentLog {
    pub fn video(&self) -> BTreeMap<u32, SentPacket> {
        self.video.lock().unwrap().clone()
    }
    pub fn audio(&self) -> BTreeMap<u32, SentPacket> {
        self.audio.lock().unwrap().clone()
    }
}

pub struct MediaConfig {
    pub video_seq_start: u16,
    pub audio_seq_start: u16,
    pub video_ts_start: u32,
    pub audio_ts_start: u32,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            video_seq_start: 12_000,
            audio_seq_start: 30_000,
            video_ts_start: 1_000_000,
            audio_ts_start: 7_000,
        }
    }
}

/// The publishing peer.
pub struct PubPeer {
    pub pc: Arc<RTCPeerConnection>,
    pub video: Arc<TrackLocalStaticRTP>,
    pub audio: Arc<TrackLocalStaticRTP>,
    pub video_sender: Arc<RTCRtpSender>,
    pub audio_sender: Arc<RTCRtpSender>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub rtcp: Arc<RtcpLog>,
    /// Count of keyframe requests seen on the video sender.
    pub keyframe_requests: watch::Receiver<usize>,
    keyframe_requested: Arc<AtomicBool>,
    pub sent: Arc<SentLog>,
    /// Video frames written so far.
    pub frames_sent: watch::Receiver<u64>,
    frames_tx: Arc<watch::Sender<u64>>,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl PubPeer {
    pub async fn new(api: &API) -> Result<Self> {
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
        let state = watch_state(&pc, "publisher");
        let video = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_VP8.to_owned(),
                clock_rate: 90_000,
                ..Default::default()
            },
            "weir-test-video".to_owned(),
            "weir-test-stream".to_owned(),
        ));
        let audio = Arc::new(TrackLocalStaticRTP::new(
            RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                ..Default::default()
            },
            "weir-test-audio".to_owned(),
            "weir-test-stream".to_owned(),
        ));
        let init = || {
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                send_encodings: vec![],
            })
        };
        let vt = pc.add_transceiver_from_track(video.clone(), init()).await?;
        let at = pc.add_transceiver_from_track(audio.clone(), init()).await?;
        let video_sender = vt.sender().await;
        let audio_sender = at.sender().await;

        let rtcp = Arc::new(RtcpLog::default());
        let keyframe_requested = Arc::new(AtomicBool::new(false));
        let (kf_tx, kf_rx) = watch::channel(0usize);
        let kf_tx = Arc::new(kf_tx);
        let (stop_tx, _) = watch::channel(false);
        let (frames_tx, frames_rx) = watch::channel(0u64);
        let mut tasks = Vec::new();
        for (sender, is_video) in [(video_sender.clone(), true), (audio_sender.clone(), false)] {
            let rtcp = rtcp.clone();
            let flag = keyframe_requested.clone();
            let kf_tx = kf_tx.clone();
            // Reading RTCP also drives the interceptors (NACK responder, reports).
            tasks.push(tokio::spawn(async move {
                let mut errors = 0;
                loop {
                    match sender.read_rtcp().await {
                        Ok((pkts, _)) => {
                            for p in pkts {
                                let any = p.as_any();
                                let is_kf_req =
                                    any.downcast_ref::<PictureLossIndication>().is_some()
                                        || any.downcast_ref::<FullIntraRequest>().is_some();
                                let name = format!("{:?}", p.header().packet_type);
                                *rtcp.kinds.lock().unwrap().entry(name).or_default() += 1;
                                if is_kf_req {
                                    let now = Instant::now();
                                    if is_video {
                                        info!(
                                            "publisher video sender got a keyframe request: {p:?}"
                                        );
                                        rtcp.video_keyframe_requests.lock().unwrap().push(now);
                                        flag.store(true, Ordering::SeqCst);
                                        kf_tx.send_modify(|n| *n += 1);
                                    } else {
                                        warn!(
                                            "publisher audio sender got a keyframe request: {p:?}"
                                        );
                                        rtcp.audio_keyframe_requests.lock().unwrap().push(now);
                                    }
                                } else {
                                    debug!(video = is_video, "publisher RTCP: {p:?}");
                                }
                            }
                        }
                        Err(webrtc::Error::ErrClosedPipe)
                        | Err(webrtc::Error::ErrConnectionClosed) => break,
                        Err(e) => {
                            errors += 1;
                            debug!(video = is_video, "publisher read_rtcp error: {e}");
                            if errors > 50 {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        Ok(Self {
            pc,
            video,
            audio,
            video_sender,
            audio_sender,
            state,
            rtcp,
            keyframe_requests: kf_rx,
            keyframe_requested,
            sent: Arc::new(SentLog::default()),
            frames_sent: frames_rx,
            frames_tx: Arc::new(frames_tx),
            stop_tx,
            tasks,
        })
    }

    /// Creates the offer, sets it and waits for gathering; returns its SDP.
    pub async fn offer(&self) -> Result<String> {
        let offer = self.pc.create_offer(None).await?;
        set_local_gathered(&self.pc, offer, "publisher").await
    }

    pub async fn set_answer(&self, sdp: String) -> Result<()> {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp)?)
            .await
            .context("publisher: set_remote_description(answer from Weir)")
    }

    /// Starts writing ~30 fps VP8 (a keyframe first and whenever a PLI/FIR
    /// arrives) and 50 pps Opus until [`PubPeer::close`].
    pub fn start_media(&mut self, cfg: MediaConfig) {
        let video = self.video.clone();
        let audio = self.audio.clone();
        let sent = self.sent.clone();
        let flag = self.keyframe_requested.clone();
        let frames_tx = self.frames_tx.clone();
        let mut stop = self.stop_tx.subscribe();
        self.tasks.push(tokio::spawn(async move {
            let mut vtick = tokio::time::interval(Duration::from_micros(33_333));
            let mut atick = tokio::time::interval(Duration::from_millis(20));
            vtick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            atick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let (mut vseq, mut aseq) = (cfg.video_seq_start, cfg.audio_seq_start);
            let (mut vts, mut ats) = (cfg.video_ts_start, cfg.audio_ts_start);
            let (mut vctr, mut actr) = (0u32, 0u32);
            let mut first = true;
            let mut write_errors = 0u64;
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = vtick.tick() => {
                        let key = std::mem::replace(&mut first, false) | flag.swap(false, Ordering::SeqCst);
                        let pkts = media::vp8_frame(key, &mut vctr);
                        let last = pkts.len() - 1;
                        for (i, (payload, _frame_start, kf_start)) in pkts.into_iter().enumerate() {
                            let counter = media::counter_of(&payload).unwrap();
                            let pkt = rtp_packet(vseq, vts, i == last, payload.clone());
                            sent.video.lock().unwrap().insert(counter, SentPacket {
                                counter, payload, seq: vseq, timestamp: vts, marker: i == last,
                                keyframe_start: kf_start, sent_at: Instant::now(),
                            });
                            if kf_start {
                                debug!(counter, seq = vseq, "publisher writes a keyframe");
                            }
                            if let Err(e) = video.write_rtp(&pkt).await {
                                write_errors += 1;
                                if write_errors < 5 { debug!("video write_rtp: {e}"); }
                            }
                            vseq = vseq.wrapping_add(1);
                        }
                        vts = vts.wrapping_add(VIDEO_TS_STEP);
                        frames_tx.send_modify(|n| *n += 1);
                    }
                    _ = atick.tick() => {
                        let payload = media::opus_packet(&mut actr);
                        let counter = media::counter_of(&payload).unwrap();
                        let pkt = rtp_packet(aseq, ats, false, payload.clone());
                        sent.audio.lock().unwrap().insert(counter, SentPacket {
                            counter, payload, seq: aseq, timestamp: ats, marker: false,
                            keyframe_start: false, sent_at: Instant::now(),
                        });
                        if let Err(e) = audio.write_rtp(&pkt).await {
                            write_errors += 1;
                            if write_errors < 5 { debug!("audio write_rtp: {e}"); }
                        }
                        aseq = aseq.wrapping_add(1);
                        ats = ats.wrapping_add(AUDIO_TS_STEP);
                    }
                }
            }
        }));
    }

    /// Waits until `n` more video frames than now have been written.
    pub async fn wait_frames(&mut self, n: u64, limit: Duration) -> Result<()> {
        let target = *self.frames_sent.borrow() + n;
        within(
            limit,
            &format!("publisher to write {n} more video frames"),
            self.frames_sent.wait_for(|f| *f >= target),
        )
        .await?
        .map_err(|_| anyhow!("media task ended"))?;
        Ok(())
    }

    pub fn keyframe_request_times(&self) -> Vec<Instant> {
        self.rtcp.video_keyframe_requests.lock().unwrap().clone()
    }

    pub fn rtcp_kinds(&self) -> BTreeMap<String, usize> {
        self.rtcp.kinds.lock().unwrap().clone()
    }

    /// Stops the media `start_media` started; the connection stays up.
    pub fn stop_media(&self) {
        let _ = self.stop_tx.send(true);
    }

    pub async fn close(&mut self) {
        let _ = self.stop_tx.send(true);
        if let Err(e) = within(
            Duration::from_secs(5),
            "publisher pc close",
            self.pc.close(),
        )
        .await
        {
            warn!("{e}");
        }
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

fn rtp_packet(
    seq: u16,
    ts: u32,
    marker: bool,
    payload: bytes::Bytes,
) -> webrtc::rtp::packet::Packet {
    webrtc::rtp::packet::Packet {
        header: webrtc::rtp::header::Header {
            version: 2,
            marker,
            // Both are replaced by the negotiated values when written.
            payload_type: 0,
            ssrc: 0,
            sequence_number: seq,
            timestamp: ts,
            ..Default::default()
        },
        payload,
    }
}

/// What a subscriber records of one remote track.
pub struct TrackCollector {
    pub mid: Option<String>,
    pub kind: RTPCodecType,
    pub track: Arc<TrackRemote>,
    pub packets: Arc<Mutex<Vec<Received>>>,
    pub count: watch::Receiver<usize>,
    pub reader: JoinHandle<()>,
}

impl TrackCollector {
    pub fn snapshot(&self) -> Vec<Received> {
        self.packets.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until at least `n` packets have arrived.
    pub async fn wait_for(&mut self, n: usize, limit: Duration, label: &str) -> Result<()> {
        let have = self.len();
        let res = within(
            limit,
            &format!("{label} to receive {n} packets (had {have})"),
            async { self.count.wait_for(|c| *c >= n).await.map(|_| ()) },
        )
        .await;
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(anyhow!(
                "{label}: reader ended after {} packets",
                self.len()
            )),
            Err(e) => Err(anyhow!("{e}; got {} in the end", self.len())),
        }
    }
}

/// The subscribing peer.
pub struct SubPeer {
    pub label: &'static str,
    pub pc: Arc<RTCPeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    tracks: mpsc::UnboundedReceiver<TrackCollector>,
}

impl SubPeer {
    pub async fn new(api: &API, label: &'static str) -> Result<Self> {
        let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);
        let state = watch_state(&pc, label);
        let (tx, rx) = mpsc::unbounded_channel();
        pc.on_track(Box::new(move |track, _receiver, transceiver| {
            let tx = tx.clone();
            Box::pin(async move {
                let mid = transceiver.mid().map(|m| m.to_string());
                let kind = track.kind();
                info!(peer = label, ?mid, %kind, ssrc = track.ssrc(), codec = %track.codec().capability.mime_type, "on_track");
                let packets = Arc::new(Mutex::new(Vec::new()));
                let (count_tx, count_rx) = watch::channel(0usize);
                let reader = {
                    let track = track.clone();
                    let packets = packets.clone();
                    tokio::spawn(async move {
                        loop {
                            match track.read_rtp().await {
                                Ok((p, _)) => {
                                    let n = {
                                        let mut v = packets.lock().unwrap();
                                        v.push(Received {
                                            seq: p.header.sequence_number,
                                            timestamp: p.header.timestamp,
                                            ssrc: p.header.ssrc,
                                            payload_type: p.header.payload_type,
                                            marker: p.header.marker,
                                            payload: p.payload.clone(),
                                            at: Instant::now(),
                                        });
                                        v.len()
                                    };
                                    let _ = count_tx.send(n);
                                }
                                Err(e) => {
                                    debug!(peer = label, %kind, "read_rtp ended: {e}");
                                    break;
                                }
                            }
                        }
                    })
                };
                let _ = tx.send(TrackCollector { mid, kind, track, packets, count: count_rx, reader });
            })
        }));
        Ok(Self {
            label,
            pc,
            state,
            tracks: rx,
        })
    }

    /// Applies Weir's offer and returns the answer (with candidates).
    pub async fn answer(&self, offer: &str) -> Result<String> {
        answer_offer(&self.pc, offer, self.label).await
    }

    /// The next remote track (on_track).
    pub async fn next_track(&mut self, limit: Duration) -> Result<TrackCollector> {
        within(
            limit,
            &format!("{} on_track", self.label),
            self.tracks.recv(),
        )
        .await?
        .ok_or_else(|| anyhow!("{}: track channel closed", self.label))
    }

    /// The next two tracks, as (video, audio).
    pub async fn video_and_audio(
        &mut self,
        limit: Duration,
    ) -> Result<(TrackCollector, TrackCollector)> {
        let a = self.next_track(limit).await?;
        let b = self.next_track(limit).await?;
        match (a.kind, b.kind) {
            (RTPCodecType::Video, RTPCodecType::Audio) => Ok((a, b)),
            (RTPCodecType::Audio, RTPCodecType::Video) => Ok((b, a)),
            (x, y) => Err(anyhow!(
                "{}: expected a video and an audio track, got {x} and {y}",
                self.label
            )),
        }
    }

    pub async fn close(&self) {
        if let Err(e) = within(
            Duration::from_secs(5),
            "subscriber pc close",
            self.pc.close(),
        )
        .await
        {
            warn!("{e}");
        }
    }
}
