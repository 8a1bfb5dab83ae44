//! Writing Weir's answers (publish) and offers (subscribe) as SDP text.
use std::fmt::Write as _;
use std::net::SocketAddr;

use weir_codecs::Codec;

use super::codec::{Format, SUPPORTED_EXTENSIONS, VIDEO_FEEDBACK};
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
        let _ = write!(out, "a={}\r\na=end-of-candidates\r\n", self.candidate_line());
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
    let proto = if m.kind == "application" { "UDP/DTLS/SCTP webrtc-datachannel" } else { "UDP/TLS/RTP/SAVPF" };
    let formats: Vec<String> = m.formats.iter().map(|f| f.pt.to_string()).collect();
    let formats = if formats.is_empty() {
        if m.kind == "application" { "webrtc-datachannel".to_owned() } else { "0".to_owned() }
    } else {
        formats.join(" ")
    };
    let _ = write!(out, "m={} 0 {} {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\na=inactive\r\n", m.kind, proto, formats, m.mid);
    let _ = proto;
}

/// Answers a publish offer: every sending audio/video m-section with a codec
/// Weir forwards is accepted `recvonly` with exactly that one codec (the
/// first the publisher prefers); everything else is rejected with port 0.
pub(crate) fn publish_answer(
    offer: &RemoteDescription,
    local: &LocalParams,
) -> Result<(String, Vec<AcceptedMedia>), SdpError> {
    let mut accepted = Vec::new();
    for m in &offer.media {
        if !m.sends() || (m.kind != "audio" && m.kind != "video") {
            continue;
        }
        let video = m.kind == "video";
        let chosen = m.formats.iter().find_map(|f| {
            f.codec().filter(|c| (*c == Codec::Opus) != video).map(|c| (f.clone(), c))
        });
        if let Some((format, codec)) = chosen {
            accepted.push(AcceptedMedia {
                mid: m.mid.clone(),
                video,
                format,
                codec,
                mid_ext_id: m.extmap_id(SUPPORTED_EXTENSIONS[0]),
                ssrcs: m.ssrcs.clone(),
                msid_track: m.msid.as_ref().map(|(_, t)| t.clone()).filter(|t| !t.is_empty()),
            });
        }
    }
    if accepted.is_empty() {
        return Err(SdpError::Invalid(
            "the offer has no sending audio or video m-section with a codec Weir forwards \
             (opus, VP8, VP9, H264 packetization-mode=1, AV1)"
                .into(),
        ));
    }
    let bundle: Vec<&str> = accepted.iter().map(|a| a.mid.as_str()).collect();
    let mut out = String::with_capacity(2048);
    local.session_header(&mut out, &bundle);
    for m in &offer.media {
        let Some(a) = accepted.iter().find(|a| a.mid == m.mid) else {
            rejected(&mut out, m);
            continue;
        };
        let _ = write!(out, "m={} 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\n", m.kind, a.format.pt);
        // Weir takes the server role unless the offerer insisted on it.
        let setup = if offer.setup == Setup::Passive { "active" } else { "passive" };
        local.transport(&mut out, setup);
        let _ = write!(out, "a=mid:{}\r\na=recvonly\r\na=rtcp-mux\r\na=rtcp-rsize\r\n", m.mid);
        for (id, uri) in &m.extmaps {
            if SUPPORTED_EXTENSIONS.contains(&uri.as_str()) {
                let _ = write!(out, "a=extmap:{id} {uri}\r\n");
            }
        }
        format_lines(&mut out, &a.format, &a.format.supported_feedback(a.video));
    }
    Ok((out, accepted))
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
    /// `a=msid` stream id (groups a publisher's tracks for lip sync).
    pub(crate) stream_id: String,
    /// `a=msid` track id.
    pub(crate) track_id: String,
    /// RTCP CNAME.
    pub(crate) cname: String,
}

/// Writes a subscribe offer with every slot, in order.
pub(crate) fn subscribe_offer(slots: &[OfferSlot], local: &LocalParams) -> String {
    // Ended subscriptions stay bundled as `inactive` rather than rejected
    // with port 0: browsers using max-bundle refuse an offer whose every
    // m-section is rejected (no BUNDLE group left).
    let bundle: Vec<&str> = slots.iter().map(|s| s.mid.as_str()).collect();
    let mut out = String::with_capacity(1024 + slots.len() * 800);
    local.session_header(&mut out, &bundle);
    for s in slots {
        let kind = if s.video { "video" } else { "audio" };
        let _ = write!(out, "m={kind} 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\n", s.format.pt);
        local.transport(&mut out, "actpass");
        if !s.active {
            let _ = write!(out, "a=mid:{}\r\na=inactive\r\na=rtcp-mux\r\na=rtcp-rsize\r\n", s.mid);
            format_lines(&mut out, &s.format, &[]);
            continue;
        }
        let _ = write!(
            out,
            "a=mid:{}\r\na=sendonly\r\na=msid:{} {}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
            s.mid, s.stream_id, s.track_id
        );
        let feedback: &[&str] = if s.video { VIDEO_FEEDBACK } else { &[] };
        format_lines(&mut out, &s.format, feedback);
        let _ = write!(out, "a=ssrc:{} cname:{}\r\na=ssrc:{} msid:{} {}\r\n", s.ssrc, s.cname, s.ssrc, s.stream_id, s.track_id);
    }
    out
}
