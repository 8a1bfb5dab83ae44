//! Writing Weir's answers (publish) and offers (subscribe) as SDP text.
use std::fmt::Write as _;
use std::net::SocketAddr;

use weir_codecs::Codec;

use super::codec::{
    Format, DD_URI, MID_URI, OFFERED_DD_ID, OFFERED_TWCC_ID, RID_URI, RRID_URI,
    SUPPORTED_EXTENSIONS, TWCC_URI, VIDEO_FEEDBACK,
};
use super::parse::{RemoteDescription, RemoteMedia, Setup};
use super::SdpError;

/// Weir's side of a transport, the same in every description it writes.
#[derive(Debug, Clone)]
pub(crate) struct LocalParams {
    /// Our ICE ufrag.
    pub(crate) ice_ufrag: String,
    /// Our ICE password.
    pub(crate) ice_pwd: String,
    /// `AB:CD:…` SHA-256 fingerprint of our DTLS certificate.
    pub(crate) fingerprint: String,
    /// Host candidate address (announced IP, core port).
    pub(crate) candidate: SocketAddr,
    /// `o=` session id.
    pub(crate) session_id: u64,
    /// `o=` session version (grows with every description).
    pub(crate) version: u64,
}

impl LocalParams {
    /// The `candidate:` value of our single host candidate.
    pub(crate) fn candidate_line(&self) -> String {
        format!(
            "candidate:1 1 udp 2130706431 {} {} typ host",
            self.candidate.ip(),
            self.candidate.port()
        )
    }

    fn session_header(&self, out: &mut String, bundle: &[&str]) {
        let _ = write!(
            out,
            "v=0\r\no=- {} {} IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n",
            self.session_id, self.version
        );
        if !bundle.is_empty() {
            let _ = write!(out, "a=group:BUNDLE {}\r\n", bundle.join(" "));
        }
        out.push_str("a=msid-semantic: WMS *\r\n");
    }

    fn transport(&self, out: &mut String, setup: &str) {
        let _ = write!(
            out,
            "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=ice-options:ice2\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n",
            self.ice_ufrag, self.ice_pwd, self.fingerprint
        );
        let _ = write!(
            out,
            "a={}\r\na=end-of-candidates\r\n",
            self.candidate_line()
        );
    }
}

/// A publish m-section Weir accepted.
#[derive(Debug, Clone)]
pub(crate) struct AcceptedMedia {
    /// Its mid.
    pub(crate) mid: String,
    /// `true` for video.
    pub(crate) video: bool,
    /// The one format Weir receives on it.
    pub(crate) format: Format,
    /// The codec of that format.
    pub(crate) codec: Codec,
    /// Id of the sdes:mid extension, if negotiated.
    pub(crate) mid_ext_id: Option<u8>,
    /// SSRCs announced by the publisher.
    pub(crate) ssrcs: Vec<u32>,
    /// The publisher's `a=msid` track id.
    pub(crate) msid_track: Option<String>,
    /// Simulcast rids, lowest resolution first (as the client lists them);
    /// empty without simulcast.
    pub(crate) rids: Vec<String>,
    /// Id of the rtp-stream-id extension, if negotiated.
    pub(crate) rid_ext_id: Option<u8>,
    /// Id of the transport-wide sequence number extension, if negotiated.
    pub(crate) twcc_ext_id: Option<u8>,
    /// Id of the Dependency Descriptor extension, if negotiated (AV1 only).
    pub(crate) dd_ext_id: Option<u8>,
    /// The publisher's RTX format for `format` (RFC 4588), accepted beside
    /// it: repairs then come on their own SSRC.
    pub(crate) rtx: Option<Format>,
    /// (RTX SSRC, media SSRC) pairs from `a=ssrc-group:FID`.
    pub(crate) rtx_ssrcs: Vec<(u32, u32)>,
    /// Id of the repaired-rtp-stream-id extension, if negotiated.
    pub(crate) rrid_ext_id: Option<u8>,
}

/// The data channel m-section of a publish offer that Weir accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcceptedData {
    /// Its mid.
    pub(crate) mid: String,
    /// The peer's `a=sctp-port`.
    pub(crate) remote_port: u16,
    /// The largest message the peer takes (`a=max-message-size`; 64 KiB
    /// when absent, RFC 8841 §6.1; 0 means no limit).
    pub(crate) remote_max_message_size: u64,
}

impl AcceptedData {
    /// Reads the data channel parameters of an accepted m-section.
    pub(crate) fn from_remote(m: &RemoteMedia) -> Option<Self> {
        if m.port == 0 || !m.is_datachannel() {
            return None;
        }
        Some(Self {
            mid: m.mid.clone(),
            remote_port: m.sctp_port.unwrap_or(SCTP_PORT),
            remote_max_message_size: m
                .max_message_size
                .unwrap_or(DEFAULT_REMOTE_MAX_MESSAGE_SIZE),
        })
    }
}

/// Weir's SCTP port (RFC 8841 §5.1: 5000 unless said otherwise).
pub(crate) const SCTP_PORT: u16 = 5000;
/// The largest data channel message Weir receives and announces in
/// `a=max-message-size`.
pub(crate) const MAX_MESSAGE_SIZE: usize = 256 * 1024;
/// What a peer takes when its SDP has no `a=max-message-size`.
const DEFAULT_REMOTE_MAX_MESSAGE_SIZE: u64 = 64 * 1024;

/// Writes the body of a data channel m-section (after the transport lines).
fn datachannel_lines(out: &mut String, mid: &str) {
    let _ = write!(
        out,
        "a=mid:{mid}\r\na=sctp-port:{SCTP_PORT}\r\na=max-message-size:{MAX_MESSAGE_SIZE}\r\n"
    );
}

fn format_lines(out: &mut String, f: &Format, feedback: &[&str]) {
    let _ = write!(out, "a=rtpmap:{} {}/{}", f.pt, f.name, f.clock_rate);
    if let Some(ch) = f.channels {
        let _ = write!(out, "/{ch}");
    }
    out.push_str("\r\n");
    if let Some(fmtp) = &f.fmtp {
        let _ = write!(out, "a=fmtp:{} {}\r\n", f.pt, fmtp);
    }
    for fb in feedback {
        let _ = write!(out, "a=rtcp-fb:{} {}\r\n", f.pt, fb);
    }
}

fn rejected(out: &mut String, m: &RemoteMedia) {
    let proto = if m.kind == "application" {
        "UDP/DTLS/SCTP webrtc-datachannel"
    } else {
        "UDP/TLS/RTP/SAVPF"
    };
    let formats: Vec<String> = m.formats.iter().map(|f| f.pt.to_string()).collect();
    let formats = if formats.is_empty() {
        if m.kind == "application" {
            "webrtc-datachannel".to_owned()
        } else {
            "0".to_owned()
        }
    } else {
        formats.join(" ")
    };
    let _ = write!(
        out,
        "m={} 0 {} {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\na=inactive\r\n",
        m.kind, proto, formats, m.mid
    );
    let _ = proto;
}

/// Answers a publish offer; see [`publish_answer_with_data`].
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn publish_answer(
    offer: &RemoteDescription,
    local: &LocalParams,
) -> Result<(String, Vec<AcceptedMedia>), SdpError> {
    publish_answer_with_data(offer, local).map(|(sdp, media, _)| (sdp, media))
}

/// Answers a publish offer: every sending audio/video m-section with a codec
/// Weir forwards is accepted `recvonly` with exactly that one codec (the
/// first the publisher prefers); the first `UDP/DTLS/SCTP
/// webrtc-datachannel` m-section is accepted for data channels; everything
/// else is rejected with port 0.
pub(crate) fn publish_answer_with_data(
    offer: &RemoteDescription,
    local: &LocalParams,
) -> Result<(String, Vec<AcceptedMedia>, Option<AcceptedData>), SdpError> {
    let data = offer.media.iter().find_map(AcceptedData::from_remote);
    let mut accepted = Vec::new();
    for m in &offer.media {
        if !m.sends() || (m.kind != "audio" && m.kind != "video") {
            continue;
        }
        let video = m.kind == "video";
        let chosen = m.formats.iter().find_map(|f| {
            f.codec()
                .filter(|c| (*c == Codec::Opus) != video)
                .map(|c| (f.clone(), c))
        });
        if let Some((format, codec)) = chosen {
            let apt = format.pt.to_string();
            let rtx = video
                .then(|| {
                    m.formats.iter().find(|f| {
                        f.name.eq_ignore_ascii_case("rtx")
                            && f.fmtp_param("apt") == Some(apt.as_str())
                    })
                })
                .flatten()
                .cloned();
            let rtx_ssrcs: Vec<(u32, u32)> = if rtx.is_some() {
                m.fid_groups.iter().map(|(media, r)| (*r, *media)).collect()
            } else {
                Vec::new()
            };
            accepted.push(AcceptedMedia {
                rrid_ext_id: rtx.as_ref().and_then(|_| m.extmap_id(RRID_URI)),
                // An RTX SSRC is no stream of its own.
                ssrcs: m
                    .ssrcs
                    .iter()
                    .copied()
                    .filter(|s| !rtx_ssrcs.iter().any(|(r, _)| r == s))
                    .collect(),
                rtx,
                rtx_ssrcs,
                mid: m.mid.clone(),
                video,
                format,
                codec,
                mid_ext_id: m.extmap_id(MID_URI),
                rids: if m.extmap_id(RID_URI).is_some() {
                    m.send_rids.clone()
                } else {
                    Vec::new()
                },
                rid_ext_id: m.extmap_id(RID_URI),
                twcc_ext_id: m.extmap_id(TWCC_URI),
                dd_ext_id: (codec == Codec::Av1).then(|| m.extmap_id(DD_URI)).flatten(),
                msid_track: m
                    .msid
                    .as_ref()
                    .map(|(_, t)| t.clone())
                    .filter(|t| !t.is_empty()),
            });
        }
    }
    if accepted.is_empty() && data.is_none() {
        return Err(SdpError::Invalid(
            "the offer has no sending audio or video m-section with a codec Weir forwards \
             (opus, VP8, VP9, H264 packetization-mode=1, AV1) and no data channel m-section"
                .into(),
        ));
    }
    let mut bundle: Vec<&str> = Vec::new();
    for m in &offer.media {
        if accepted.iter().any(|a| a.mid == m.mid) || data.as_ref().is_some_and(|d| d.mid == m.mid)
        {
            bundle.push(m.mid.as_str());
        }
    }
    let mut out = String::with_capacity(2048);
    local.session_header(&mut out, &bundle);
    if offer.extmap_allow_mixed {
        out.push_str("a=extmap-allow-mixed\r\n");
    }
    // Weir takes the server role unless the offerer insisted on it.
    let setup = if offer.setup == Setup::Passive {
        "active"
    } else {
        "passive"
    };
    for m in &offer.media {
        if data.as_ref().is_some_and(|d| d.mid == m.mid) {
            out.push_str(
                "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n",
            );
            local.transport(&mut out, setup);
            datachannel_lines(&mut out, &m.mid);
            continue;
        }
        let Some(a) = accepted.iter().find(|a| a.mid == m.mid) else {
            rejected(&mut out, m);
            continue;
        };
        let _ = write!(out, "m={} 9 UDP/TLS/RTP/SAVPF {}", m.kind, a.format.pt);
        if let Some(rtx) = &a.rtx {
            let _ = write!(out, " {}", rtx.pt);
        }
        out.push_str("\r\nc=IN IP4 0.0.0.0\r\n");
        local.transport(&mut out, setup);
        let _ = write!(
            out,
            "a=mid:{}\r\na=recvonly\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
            m.mid
        );
        for (id, uri) in &m.extmaps {
            // The repaired rid only means something beside RTX; the
            // descriptor is not in SUPPORTED_EXTENSIONS (AV1 only).
            let wanted = (SUPPORTED_EXTENSIONS.contains(&uri.as_str())
                && (uri != RRID_URI || a.rtx.is_some()))
                || a.dd_ext_id == Some(*id);
            if wanted {
                let _ = write!(out, "a=extmap:{id} {uri}\r\n");
            }
        }
        format_lines(&mut out, &a.format, &a.format.supported_feedback(a.video));
        if let Some(rtx) = &a.rtx {
            format_lines(&mut out, rtx, &[]);
        }
        if !a.rids.is_empty() {
            for rid in &a.rids {
                let _ = write!(out, "a=rid:{rid} recv\r\n");
            }
            let _ = write!(out, "a=simulcast:recv {}\r\n", a.rids.join(";"));
        }
    }
    Ok((out, accepted, data))
}

/// One m-section of a subscribe offer.
#[derive(Debug, Clone)]
pub(crate) struct OfferSlot {
    /// Its mid (stable for the transport's life).
    pub(crate) mid: String,
    /// `true` for video.
    pub(crate) video: bool,
    /// Whether the subscription is live; ended ones stay as port 0.
    pub(crate) active: bool,
    /// The format sent, with our payload type.
    pub(crate) format: Format,
    /// SSRC we send with.
    pub(crate) ssrc: u32,
    /// Video: the RTX payload type (`apt=` the format's) and SSRC offered
    /// for retransmissions (RFC 4588).
    pub(crate) rtx: Option<RtxOffer>,
    /// `a=msid` stream id (groups a publisher's tracks for lip sync).
    pub(crate) stream_id: String,
    /// `a=msid` track id.
    pub(crate) track_id: String,
    /// RTCP CNAME.
    pub(crate) cname: String,
}

/// RTX offered beside a video format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtxOffer {
    /// The RTX payload type.
    pub(crate) pt: u8,
    /// The RTX stream's SSRC, grouped with the media SSRC by `FID`.
    pub(crate) ssrc: u32,
}

/// Writes a subscribe offer with every slot, in order.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn subscribe_offer(slots: &[OfferSlot], local: &LocalParams) -> String {
    subscribe_offer_with_data(slots, None, local)
}

/// Where a subscribe offer's data channel m-section goes: its mid and the
/// number of media slots before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataSlot {
    /// Its mid (stable for the transport's life).
    pub(crate) mid: String,
    /// How many media slots precede it.
    pub(crate) position: usize,
}

/// Writes a subscribe offer with every slot, in order, and the data channel
/// m-section at its place once the transport has one.
pub(crate) fn subscribe_offer_with_data(
    slots: &[OfferSlot],
    data: Option<&DataSlot>,
    local: &LocalParams,
) -> String {
    // Ended subscriptions stay bundled as `inactive` rather than rejected
    // with port 0: browsers using max-bundle refuse an offer whose every
    // m-section is rejected (no BUNDLE group left).
    let mut bundle: Vec<&str> = slots.iter().map(|s| s.mid.as_str()).collect();
    if let Some(d) = data {
        bundle.insert(d.position.min(bundle.len()), d.mid.as_str());
    }
    let mut out = String::with_capacity(1024 + slots.len() * 800);
    local.session_header(&mut out, &bundle);
    // Forwarded packets use the two-byte form when the Dependency
    // Descriptor does not fit the one-byte form.
    out.push_str("a=extmap-allow-mixed\r\n");
    let write_data = |out: &mut String| {
        if let Some(d) = data {
            out.push_str(
                "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n",
            );
            local.transport(out, "actpass");
            datachannel_lines(out, &d.mid);
        }
    };
    for (i, s) in slots.iter().enumerate() {
        if data.is_some_and(|d| d.position == i) {
            write_data(&mut out);
        }
        let kind = if s.video { "video" } else { "audio" };
        let rtx = s.rtx.filter(|_| s.active);
        let _ = write!(out, "m={kind} 9 UDP/TLS/RTP/SAVPF {}", s.format.pt);
        if let Some(r) = rtx {
            let _ = write!(out, " {}", r.pt);
        }
        out.push_str("\r\nc=IN IP4 0.0.0.0\r\n");
        local.transport(&mut out, "actpass");
        if !s.active {
            let _ = write!(
                out,
                "a=mid:{}\r\na=inactive\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
                s.mid
            );
            format_lines(&mut out, &s.format, &[]);
            continue;
        }
        let _ = write!(
            out,
            "a=mid:{}\r\na=sendonly\r\na=msid:{} {}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
            s.mid, s.stream_id, s.track_id
        );
        let _ = write!(out, "a=extmap:{OFFERED_TWCC_ID} {TWCC_URI}\r\n");
        if s.video && s.format.codec() == Some(Codec::Av1) {
            // AV1 SVC needs it at the receiver to assemble layer frames.
            let _ = write!(out, "a=extmap:{OFFERED_DD_ID} {DD_URI}\r\n");
        }
        let mut feedback: Vec<&str> = if s.video {
            VIDEO_FEEDBACK.to_vec()
        } else {
            Vec::new()
        };
        feedback.push("transport-cc");
        format_lines(&mut out, &s.format, &feedback);
        if let Some(r) = rtx {
            let _ = write!(
                out,
                "a=rtpmap:{} rtx/{}\r\na=fmtp:{} apt={}\r\n",
                r.pt, s.format.clock_rate, r.pt, s.format.pt
            );
            let _ = write!(out, "a=ssrc-group:FID {} {}\r\n", s.ssrc, r.ssrc);
        }
        for ssrc in std::iter::once(s.ssrc).chain(rtx.map(|r| r.ssrc)) {
            let _ = write!(
                out,
                "a=ssrc:{} cname:{}\r\na=ssrc:{} msid:{} {}\r\n",
                ssrc, s.cname, ssrc, s.stream_id, s.track_id
            );
        }
    }
    if data.is_some_and(|d| d.position >= slots.len()) {
        write_data(&mut out);
    }
    out
}
