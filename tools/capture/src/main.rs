//! weir-capture: the receiving peer that records weir-codecs test fixtures.
//!
//! It is deliberately independent of Weir's SFU and of the parsers it feeds: the
//! peer is webrtc-rs, which does ICE, DTLS and SRTP and hands out decrypted RTP per
//! track, and the few payload bits needed to start a recording on a key frame are
//! read here by hand (see [`keyframe_start`]).
//!
//! Protocol (driven by `capture.js`): one JSON line on stdin with the case and the
//! browser's offer; one JSON line `{"answer": sdp}` on stdout; then, when the
//! recording is complete, one JSON line `{"done": true, ...}` and exit status 0.
//! Logs go to stderr.
//!
//! Recording: after `warmupMs` of media (so the bandwidth estimate has grown and all
//! layers are on), send a PLI on every video SSRC, then record each SSRC from the
//! first packet of its next key frame until it has `packets` packets, at least
//! `minFrames` whole frames, and ends on a packet with the marker bit (end of a
//! frame / temporal unit). Packets of all SSRCs are
//! written in arrival order, each as a big-endian u16 length and the RTP packet
//! (header with its extensions, payload; padding normalised by the marshaller).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{
    MediaEngine, MIME_TYPE_AV1, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MIME_TYPE_VP9,
};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RTPCodecType,
};
use webrtc::rtp_transceiver::RTCPFeedback;
use webrtc::util::Marshal;

/// Header extensions the answer may accept (those the browser offers are kept).
const VIDEO_EXTENSIONS: &[&str] = &[
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "urn:3gpp:video-orientation",
    "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
];
const AUDIO_EXTENSIONS: &[&str] = &[
    "urn:ietf:params:rtp-hdrext:sdes:mid",
    "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Opus,
    Vp8,
    Vp9,
    H264,
    Av1,
}

impl Codec {
    fn from_name(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "OPUS" => Codec::Opus,
            "VP8" => Codec::Vp8,
            "VP9" => Codec::Vp9,
            "H264" => Codec::H264,
            "AV1" => Codec::Av1,
            other => bail!("unknown codec {other}"),
        })
    }
    fn is_video(self) -> bool {
        self != Codec::Opus
    }
}

struct Config {
    case: String,
    codec: Codec,
    streams: usize,
    packets: usize,
    min_frames: usize,
    warmup: Duration,
    timeout: Duration,
    out: String,
    meta: String,
    chromium: String,
    encoding: String,
    offer: String,
}

fn config_from(v: &Value) -> Result<Config> {
    let s = |k: &str| -> Result<String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("missing string field {k}"))
    };
    let n = |k: &str, d: u64| v.get(k).and_then(Value::as_u64).unwrap_or(d);
    Ok(Config {
        case: s("case")?,
        codec: Codec::from_name(&s("codec")?)?,
        streams: n("streams", 1) as usize,
        packets: n("packets", 300) as usize,
        min_frames: n("minFrames", 10) as usize,
        warmup: Duration::from_millis(n("warmupMs", 4000)),
        timeout: Duration::from_millis(n("timeoutMs", 30000)),
        out: s("out")?,
        meta: s("meta")?,
        chromium: s("chromium").unwrap_or_else(|_| "unknown".into()),
        encoding: s("encoding").unwrap_or_default(),
        offer: s("offer")?,
    })
}

/// True if `payload` is the first packet of a key frame (for SVC: of the key
/// temporal unit, i.e. its lowest spatial layer). Hand-written from the RTP payload
/// formats so that the fixtures do not depend on the parsers they test.
fn keyframe_start(codec: Codec, p: &[u8]) -> bool {
    match codec {
        Codec::Opus => !p.is_empty(),
        Codec::Vp8 => {
            // RFC 7741 section 4.2: X R N S R PID(3); then I L T K; then the fields.
            let Some(&b0) = p.first() else { return false };
            if b0 & 0x10 == 0 || b0 & 0x07 != 0 {
                return false; // not the start of partition 0
            }
            let mut i = 1;
            if b0 & 0x80 != 0 {
                let Some(&x) = p.get(1) else { return false };
                i = 2;
                if x & 0x80 != 0 {
                    let Some(&pid) = p.get(i) else { return false };
                    i += if pid & 0x80 != 0 { 2 } else { 1 };
                }
                if x & 0x40 != 0 {
                    i += 1;
                }
                if x & 0x30 != 0 {
                    i += 1;
                }
            }
            // VP8 payload header (RFC 6386 9.1): P bit (inverse key frame flag) is bit 0.
            p.get(i).is_some_and(|h| h & 0x01 == 0)
        }
        Codec::Vp9 => {
            // RFC 9628 section 4.2: I P L F B E V Z.
            let Some(&b0) = p.first() else { return false };
            let (i_bit, p_bit, l_bit, b_bit) = (
                b0 & 0x80 != 0,
                b0 & 0x40 != 0,
                b0 & 0x20 != 0,
                b0 & 0x08 != 0,
            );
            if p_bit || !b_bit {
                return false;
            }
            let mut i = 1;
            if i_bit {
                let Some(&pid) = p.get(1) else { return false };
                i += if pid & 0x80 != 0 { 2 } else { 1 };
            }
            if l_bit {
                // TID(3) U(1) SID(3) D(1)
                let Some(&l) = p.get(i) else { return false };
                return (l >> 1) & 0x07 == 0;
            }
            true
        }
        Codec::H264 => {
            // RFC 6184: a key frame is sent as SPS/PPS (often in a STAP-A) then IDR.
            let Some(&b0) = p.first() else { return false };
            match b0 & 0x1f {
                7 | 5 => true,
                24 => {
                    let mut i = 1;
                    while i + 2 < p.len() {
                        let len = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                        if matches!(p[i + 2] & 0x1f, 5 | 7) {
                            return true;
                        }
                        i += 2 + len;
                    }
                    false
                }
                28 => p.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1f == 5),
                _ => false,
            }
        }
        Codec::Av1 => {
            // AV1 RTP spec 4.4: Z Y W(2) N; a key temporal unit starts with a sequence
            // header OBU (type 1) in a packet that does not continue an OBU.
            let Some(&agg) = p.first() else { return false };
            if agg & 0x80 != 0 {
                return false;
            }
            if agg & 0x08 != 0 {
                return true;
            }
            let w = (agg >> 4) & 0x03;
            let mut i = 1;
            if w != 1 {
                // Skip the element's LEB128 length.
                while let Some(&b) = p.get(i) {
                    i += 1;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
            }
            p.get(i).is_some_and(|h| (h >> 3) & 0x0f == 1)
        }
    }
}

fn video_feedback() -> Vec<RTCPFeedback> {
    [
        ("goog-remb", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
    ]
    .iter()
    .map(|(t, p)| RTCPFeedback {
        typ: (*t).into(),
        parameter: (*p).into(),
    })
    .collect()
}

fn media_engine() -> Result<MediaEngine> {
    let mut m = MediaEngine::default();
    m.register_codec(
        RTCRtpCodecParameters {
            capability: RTCRtpCodecCapability {
                mime_type: MIME_TYPE_OPUS.into(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
            ..Default::default()
        },
        RTPCodecType::Audio,
    )?;
    let video = [
        (MIME_TYPE_VP8, "", 96),
        (MIME_TYPE_VP9, "profile-id=0", 98),
        (
            MIME_TYPE_H264,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
        ),
        (MIME_TYPE_AV1, "", 45),
    ];
    for (mime, fmtp, pt) in video {
        m.register_codec(
            RTCRtpCodecParameters {
                capability: RTCRtpCodecCapability {
                    mime_type: mime.into(),
                    clock_rate: 90000,
                    channels: 0,
                    sdp_fmtp_line: fmtp.into(),
                    rtcp_feedback: video_feedback(),
                },
                payload_type: pt,
                ..Default::default()
            },
            RTPCodecType::Video,
        )?;
    }
    for uri in VIDEO_EXTENSIONS {
        m.register_header_extension(
            RTCRtpHeaderExtensionCapability { uri: (*uri).into() },
            RTPCodecType::Video,
            None,
        )?;
    }
    for uri in AUDIO_EXTENSIONS {
        m.register_header_extension(
            RTCRtpHeaderExtensionCapability { uri: (*uri).into() },
            RTPCodecType::Audio,
            None,
        )?;
    }
    Ok(m)
}

struct Arrival {
    ssrc: u32,
    rid: String,
    pt: u8,
    ts: u32,
    marker: bool,
    keyframe_start: bool,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct StreamState {
    rid: String,
    pt: u8,
    recording: bool,
    done: bool,
    recorded: usize,
    /// Frames (packets with the marker bit) recorded.
    frames: usize,
    /// Timestamp and marker of the previous packet: a frame starts after a marker
    /// or at a new timestamp.
    last: Option<(u32, bool)>,
}

fn emit(v: Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("weir-capture: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let mut line = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .context("reading the request line")?;
    let req: Value = serde_json::from_str(&line).context("parsing the request line")?;
    let cfg = config_from(&req)?;
    eprintln!(
        "weir-capture: case {} codec {:?} streams {} packets/stream {}",
        cfg.case, cfg.codec, cfg.streams, cfg.packets
    );

    let mut m = media_engine()?;
    let registry = register_default_interceptors(Registry::new(), &mut m)?;
    let mut s = SettingEngine::default();
    s.set_network_types(vec![NetworkType::Udp4]);
    s.set_include_loopback_candidate(true);
    s.set_ip_filter(Box::new(|ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    s.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    let api = APIBuilder::new()
        .with_media_engine(m)
        .with_interceptor_registry(registry)
        .with_setting_engine(s)
        .build();
    let pc = Arc::new(api.new_peer_connection(RTCConfiguration::default()).await?);

    let (tx, mut rx) = mpsc::unbounded_channel::<Arrival>();
    let codec = cfg.codec;
    pc.on_track(Box::new(move |track, _receiver, _transceiver| {
        let tx = tx.clone();
        Box::pin(async move {
            let rid = track.rid().to_owned();
            eprintln!(
                "weir-capture: track ssrc {} rid {:?} codec {}",
                track.ssrc(),
                rid,
                track.codec().capability.mime_type
            );
            tokio::spawn(async move {
                while let Ok((pkt, _)) = track.read_rtp().await {
                    let Ok(bytes) = pkt.marshal() else { continue };
                    let a = Arrival {
                        ssrc: pkt.header.ssrc,
                        rid: rid.clone(),
                        pt: pkt.header.payload_type,
                        ts: pkt.header.timestamp,
                        marker: pkt.header.marker,
                        keyframe_start: keyframe_start(codec, &pkt.payload),
                        bytes: bytes.to_vec(),
                    };
                    if tx.send(a).is_err() {
                        break;
                    }
                }
            });
        })
    }));

    pc.set_remote_description(RTCSessionDescription::offer(cfg.offer.clone())?)
        .await?;
    let answer = pc.create_answer(None).await?;
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(answer).await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let local = pc
        .local_description()
        .await
        .ok_or_else(|| anyhow!("no local description"))?;
    emit(json!({ "answer": local.sdp }))?;

    let deadline = Instant::now() + cfg.timeout;
    let mut streams: BTreeMap<u32, StreamState> = BTreeMap::new();
    let mut first_media: Option<Instant> = None;
    let mut pli_sent = false;
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut total_bytes = 0usize;

    loop {
        let now = Instant::now();
        if now > deadline {
            let state: Vec<String> = streams
                .iter()
                .map(|(s, st)| {
                    format!(
                        "ssrc {s} rid {:?} recording {} recorded {}",
                        st.rid, st.recording, st.recorded
                    )
                })
                .collect();
            bail!(
                "timed out after {:?} (pli sent: {pli_sent}; streams: {state:?})",
                cfg.timeout
            );
        }
        if !pli_sent {
            if let Some(t0) = first_media {
                if now.duration_since(t0) >= cfg.warmup && streams.len() >= cfg.streams {
                    if codec.is_video() {
                        let plis: Vec<Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>> =
                            streams
                                .keys()
                                .map(|&ssrc| {
                                    Box::new(PictureLossIndication {
                                        sender_ssrc: 0,
                                        media_ssrc: ssrc,
                                    })
                                        as Box<dyn webrtc::rtcp::packet::Packet + Send + Sync>
                                })
                                .collect();
                        pc.write_rtcp(&plis).await?;
                        eprintln!("weir-capture: PLI sent to {} ssrc(s)", streams.len());
                    }
                    pli_sent = true;
                }
            }
        }
        let a = match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            Ok(Some(a)) => a,
            Ok(None) => bail!("all tracks ended"),
            Err(_) => continue,
        };
        first_media.get_or_insert(Instant::now());
        let st = streams.entry(a.ssrc).or_default();
        st.rid.clone_from(&a.rid);
        st.pt = a.pt;
        let at_frame_boundary = st.last.is_none_or(|(ts, marker)| marker || ts != a.ts);
        st.last = Some((a.ts, a.marker));
        if !pli_sent || st.done {
            continue;
        }
        if !st.recording {
            // A key frame may be in flight when the PLI goes out: start only on the
            // first packet of one (e.g. not on the second slice of an H.264 IDR).
            if !(a.keyframe_start && at_frame_boundary) {
                continue;
            }
            st.recording = true;
            eprintln!(
                "weir-capture: ssrc {} rid {:?}: recording from a key frame",
                a.ssrc, a.rid
            );
        }
        total_bytes += a.bytes.len();
        records.push(a.bytes);
        st.recorded += 1;
        st.frames += usize::from(a.marker);
        if st.recorded >= cfg.packets
            && (!codec.is_video() || (a.marker && st.frames >= cfg.min_frames))
        {
            st.done = true;
        }
        if streams.len() >= cfg.streams && streams.values().all(|s| s.done) {
            break;
        }
    }

    let mut file = Vec::with_capacity(total_bytes + 2 * records.len());
    for r in &records {
        let len = u16::try_from(r.len()).context("packet longer than 65535 bytes")?;
        file.extend_from_slice(&len.to_be_bytes());
        file.extend_from_slice(r);
    }
    std::fs::write(&cfg.out, &file).with_context(|| format!("writing {}", cfg.out))?;

    let mut meta = String::new();
    meta.push_str("# weir-capture fixture metadata (see README.md); one `key value` per line\n");
    meta.push_str(&format!("case {}\n", cfg.case));
    meta.push_str(&format!("codec {:?}\n", cfg.codec));
    meta.push_str(&format!("encoding {}\n", cfg.encoding));
    meta.push_str(&format!("chromium {}\n", cfg.chromium));
    meta.push_str(&format!("captured {}\n", utc_now()));
    meta.push_str(&format!("packets {}\n", records.len()));
    for line in local.sdp.lines() {
        if let Some(rest) = line.strip_prefix("a=extmap:") {
            meta.push_str(&format!("extmap {}\n", rest.trim()));
        }
    }
    for (ssrc, st) in &streams {
        if st.recorded > 0 {
            let rid = if st.rid.is_empty() { "-" } else { &st.rid };
            meta.push_str(&format!(
                "stream {ssrc} rid={rid} pt={} packets={}\n",
                st.pt, st.recorded
            ));
        }
    }
    std::fs::write(&cfg.meta, meta).with_context(|| format!("writing {}", cfg.meta))?;

    let summary: Vec<Value> = streams
        .iter()
        .map(|(s, st)| json!({"ssrc": s, "rid": st.rid, "packets": st.recorded}))
        .collect();
    emit(json!({"done": true, "packets": records.len(), "bytes": file.len(), "streams": summary}))?;
    pc.close().await.ok();
    Ok(())
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (no date crate needed).
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
