//! The few SDP documents a load peer writes (a publish offer, answers to
//! subscribe offers) and what it reads from the server's.
//!
//! Weir bundles everything on one 5-tuple with rtcp-mux and is ICE-lite, so
//! a peer needs only the server's credentials, fingerprint, host candidate
//! and the m-sections' mids and formats.

use std::fmt::Write as _;
use std::net::SocketAddr;

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::media::SIMULCAST_LAYERS;

/// Extension ids we offer for simulcast (Chromium's numbers).
pub(crate) const MID_EXT_ID: u8 = 9;
/// See [`MID_EXT_ID`].
pub(crate) const RID_EXT_ID: u8 = 10;

/// Our ICE credentials and DTLS fingerprint, the same in every description
/// of one transport.
#[derive(Debug, Clone)]
pub(crate) struct LocalParams {
    /// ICE ufrag.
    pub(crate) ufrag: String,
    /// ICE password.
    pub(crate) pwd: String,
    /// `AB:CD:…` SHA-256 of our certificate.
    pub(crate) fingerprint: String,
    /// `o=` session id.
    pub(crate) session_id: u64,
}

impl LocalParams {
    /// Fresh credentials (8-character ufrag, 24-character password).
    pub(crate) fn generate(fingerprint: &str) -> Self {
        let mut rng = rand::thread_rng();
        let mut token = |n: usize| -> String {
            (&mut rng)
                .sample_iter(&Alphanumeric)
                .take(n)
                .map(char::from)
                .collect()
        };
        Self {
            ufrag: token(8),
            pwd: token(24),
            fingerprint: fingerprint.to_owned(),
            session_id: rng.gen_range(1..i64::MAX as u64),
        }
    }

    fn header(&self, out: &mut String, mids: &[&str]) {
        let _ = write!(
            out,
            "v=0\r\no=- {} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\na=msid-semantic: WMS *\r\n",
            self.session_id,
            mids.join(" ")
        );
    }

    fn transport(&self, out: &mut String, setup: &str) {
        let _ = write!(
            out,
            "c=IN IP4 0.0.0.0\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\na=ice-options:trickle\r\na=fingerprint:sha-256 {}\r\na=setup:{setup}\r\n",
            self.ufrag, self.pwd, self.fingerprint
        );
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// One track a publisher offers.
#[derive(Debug, Clone)]
pub(crate) struct LocalTrack {
    /// Its mid.
    pub(crate) mid: String,
    /// Audio or video.
    pub(crate) kind: MediaKind,
    /// Payload type we send with.
    pub(crate) pt: u8,
    /// SSRC we send with.
    pub(crate) ssrc: u32,
    /// `a=msid` stream id.
    pub(crate) stream: String,
    /// `a=msid` track id.
    pub(crate) track: String,
    /// Video sent as the [`SIMULCAST_LAYERS`] encodings, each on its own
    /// SSRC named by the rid extension (then `ssrc` is unused).
    pub(crate) simulcast: bool,
    /// RTX offered for this track (RFC 4588): its payload type and SSRC,
    /// paired with `ssrc` by `a=ssrc-group:FID` as browsers announce it.
    /// Only without simulcast (each encoding would need the
    /// repaired-rtp-stream-id extension).
    pub(crate) rtx: Option<(u8, u32)>,
}

impl LocalTrack {
    /// Whether `answer` accepted this track's RTX payload type: its
    /// m-section (same mid) lists it among its formats.
    pub(crate) fn rtx_accepted(&self, answer: &RemoteDescription) -> bool {
        let Some((pt, _)) = self.rtx else {
            return false;
        };
        let pt = pt.to_string();
        answer
            .media
            .iter()
            .find(|m| m.mid == self.mid)
            .is_some_and(|m| m.formats.split_whitespace().any(|f| f == pt))
    }
}

/// A browser-shaped publish offer: one `sendonly` m-section per track,
/// `a=setup:actpass` (Weir answers passive, so we are the DTLS client).
pub(crate) fn publish_offer(local: &LocalParams, tracks: &[LocalTrack]) -> String {
    let mids: Vec<&str> = tracks.iter().map(|t| t.mid.as_str()).collect();
    let mut out = String::with_capacity(1024 * tracks.len().max(1));
    local.header(&mut out, &mids);
    for t in tracks {
        let kind = match t.kind {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        };
        match t.rtx {
            Some((rtx_pt, _)) => {
                let _ = write!(out, "m={kind} 9 UDP/TLS/RTP/SAVPF {} {rtx_pt}\r\n", t.pt);
            }
            None => {
                let _ = write!(out, "m={kind} 9 UDP/TLS/RTP/SAVPF {}\r\n", t.pt);
            }
        }
        local.transport(&mut out, "actpass");
        let _ = write!(
            out,
            "a=mid:{}\r\na=sendonly\r\na=msid:{} {}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
            t.mid, t.stream, t.track
        );
        match t.kind {
            MediaKind::Audio => {
                let _ = write!(
                    out,
                    "a=rtpmap:{0} opus/48000/2\r\na=fmtp:{0} minptime=10;useinbandfec=1\r\n",
                    t.pt
                );
            }
            MediaKind::Video => {
                let _ = write!(
                    out,
                    "a=rtpmap:{0} VP8/90000\r\na=rtcp-fb:{0} nack pli\r\na=rtcp-fb:{0} ccm fir\r\n",
                    t.pt
                );
                if let Some((rtx_pt, _)) = t.rtx {
                    let _ = write!(
                        out,
                        "a=rtpmap:{rtx_pt} rtx/90000\r\na=fmtp:{rtx_pt} apt={}\r\n",
                        t.pt
                    );
                }
            }
        }
        if t.simulcast {
            // As Chromium offers it: SSRCs are not announced, the mid and
            // rid extensions name each encoding's packets.
            let _ = write!(
                out,
                "a=extmap:{MID_EXT_ID} urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:{RID_EXT_ID} urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
            );
            let rids: Vec<&str> = SIMULCAST_LAYERS.iter().map(|l| l.rid).collect();
            for rid in &rids {
                let _ = write!(out, "a=rid:{rid} send\r\n");
            }
            let _ = write!(out, "a=simulcast:send {}\r\n", rids.join(";"));
            continue;
        }
        if let Some((_, rtx_ssrc)) = t.rtx {
            let _ = write!(out, "a=ssrc-group:FID {} {rtx_ssrc}\r\n", t.ssrc);
        }
        let _ = write!(
            out,
            "a=ssrc:{0} cname:{1}\r\na=ssrc:{0} msid:{1} {2}\r\n",
            t.ssrc, t.stream, t.track
        );
        if let Some((_, rtx_ssrc)) = t.rtx {
            let _ = write!(
                out,
                "a=ssrc:{rtx_ssrc} cname:{0}\r\na=ssrc:{rtx_ssrc} msid:{0} {1}\r\n",
                t.stream, t.track
            );
        }
    }
    out
}

/// One m-section of a server description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteMedia {
    /// `audio` or `video` (or anything else the server wrote).
    pub(crate) kind: String,
    /// Port of the m-line; 0 is rejected.
    pub(crate) port: u16,
    /// The m-line's format list, verbatim.
    pub(crate) formats: String,
    /// `a=mid`.
    pub(crate) mid: String,
    /// `sendonly`, `recvonly`, `sendrecv` or `inactive`.
    pub(crate) direction: String,
    /// `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` values, in order, with their keys.
    pub(crate) format_lines: Vec<(String, String)>,
    /// `a=extmap` header extensions: (id, URI).
    pub(crate) extmaps: Vec<(u8, String)>,
}

/// The transport-wide sequence number extension (transport-cc).
pub(crate) const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

impl RemoteDescription {
    /// The id of the transport-cc extension in the first active m-section
    /// (BUNDLE: one id for the transport).
    pub(crate) fn twcc_ext_id(&self) -> Option<u8> {
        self.media
            .iter()
            .filter(|m| m.port != 0)
            .find_map(|m| m.extmaps.iter().find(|(_, uri)| uri == TWCC_URI))
            .map(|(id, _)| *id)
    }
}

/// What a peer needs from a server answer or offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteDescription {
    /// The server's ICE ufrag.
    pub(crate) ufrag: String,
    /// The server's ICE password.
    pub(crate) pwd: String,
    /// SHA-256 of the server's certificate.
    pub(crate) fingerprint: [u8; 32],
    /// `a=setup`.
    pub(crate) setup: String,
    /// The first UDP host candidate.
    pub(crate) candidate: SocketAddr,
    /// The m-sections, in order.
    pub(crate) media: Vec<RemoteMedia>,
    /// (RTX SSRC, media SSRC) from `a=ssrc-group:FID <media> <rtx>`.
    pub(crate) rtx: Vec<(u32, u32)>,
}

/// Parses a description the server wrote. Transport attributes may sit at
/// session level or in any m-section; the first one wins.
pub(crate) fn parse(text: &str) -> Result<RemoteDescription, String> {
    let mut ufrag = None;
    let mut pwd = None;
    let mut fingerprint = None;
    let mut setup = None;
    let mut candidate = None;
    let mut media: Vec<RemoteMedia> = Vec::new();
    let mut rtx = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            let mut it = m.splitn(4, ' ');
            let kind = it.next().unwrap_or("").to_owned();
            let port = it
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("bad m-line '{line}'"))?;
            let _proto = it.next();
            media.push(RemoteMedia {
                kind,
                port,
                formats: it.next().unwrap_or("").to_owned(),
                mid: String::new(),
                direction: "sendrecv".to_owned(),
                format_lines: Vec::new(),
                extmaps: Vec::new(),
            });
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (key, value) = attr.split_once(':').unwrap_or((attr, ""));
        match key {
            "ice-ufrag" if ufrag.is_none() => ufrag = Some(value.to_owned()),
            "ice-pwd" if pwd.is_none() => pwd = Some(value.to_owned()),
            "fingerprint" if fingerprint.is_none() => fingerprint = Some(parse_fingerprint(value)?),
            "setup" if setup.is_none() => setup = Some(value.to_owned()),
            "candidate" if candidate.is_none() => candidate = parse_candidate(value),
            "mid" => {
                if let Some(m) = media.last_mut() {
                    m.mid = value.to_owned();
                }
            }
            "sendonly" | "recvonly" | "sendrecv" | "inactive" => {
                if let Some(m) = media.last_mut() {
                    m.direction = key.to_owned();
                }
            }
            "ssrc-group" => {
                let mut it = value.split_whitespace();
                if it.next() == Some("FID") {
                    if let (Some(Ok(m)), Some(Ok(r))) =
                        (it.next().map(str::parse), it.next().map(str::parse))
                    {
                        rtx.push((r, m));
                    }
                }
            }
            "extmap" => {
                // `<id>[/<direction>] <uri> [<attributes>]`; ids 1..=14
                // fit the one-byte form the server writes.
                let mut it = value.split_whitespace();
                let id = it
                    .next()
                    .and_then(|v| v.split('/').next())
                    .and_then(|v| v.parse::<u8>().ok())
                    .filter(|id| (1..=14).contains(id));
                if let (Some(id), Some(uri), Some(m)) = (id, it.next(), media.last_mut()) {
                    m.extmaps.push((id, uri.to_owned()));
                }
            }
            "rtpmap" | "fmtp" | "rtcp-fb" => {
                if let Some(m) = media.last_mut() {
                    m.format_lines.push((key.to_owned(), value.to_owned()));
                }
            }
            _ => {}
        }
    }
    Ok(RemoteDescription {
        ufrag: ufrag.ok_or("no a=ice-ufrag")?,
        pwd: pwd.ok_or("no a=ice-pwd")?,
        fingerprint: fingerprint.ok_or("no a=fingerprint")?,
        setup: setup.unwrap_or_else(|| "actpass".to_owned()),
        candidate: candidate.ok_or("no UDP host candidate")?,
        media,
        rtx,
    })
}

fn parse_fingerprint(value: &str) -> Result<[u8; 32], String> {
    let (alg, hex) = value
        .split_once(' ')
        .ok_or_else(|| format!("a=fingerprint:{value} has no hash function"))?;
    if !alg.eq_ignore_ascii_case("sha-256") {
        return Err(format!("a=fingerprint uses {alg}, not sha-256"));
    }
    let mut out = [0u8; 32];
    let mut n = 0;
    for byte in hex.trim().split(':') {
        let b = u8::from_str_radix(byte, 16).map_err(|_| format!("bad fingerprint '{hex}'"))?;
        *out.get_mut(n)
            .ok_or_else(|| format!("fingerprint '{hex}' too long"))? = b;
        n += 1;
    }
    if n != 32 {
        return Err(format!("fingerprint '{hex}' is not 32 bytes"));
    }
    Ok(out)
}

/// `candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host` → the address.
fn parse_candidate(value: &str) -> Option<SocketAddr> {
    let f: Vec<&str> = value.split_whitespace().collect();
    if f.len() < 8 || !f[2].eq_ignore_ascii_case("udp") || f[6] != "typ" {
        return None;
    }
    let ip = f[4].parse().ok()?;
    let port = f[5].parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Answers a subscribe offer: every m-section mirrored, active ones
/// `recvonly` with the offered format, `a=setup:active` (we are the DTLS
/// client on this transport too). With `twcc` the transport-cc extension
/// and feedback are kept, as browsers keep them; without, both are left out.
pub(crate) fn subscribe_answer(
    local: &LocalParams,
    offer: &RemoteDescription,
    twcc: bool,
) -> String {
    let mids: Vec<&str> = offer
        .media
        .iter()
        .filter(|m| m.port != 0)
        .map(|m| m.mid.as_str())
        .collect();
    let mut out = String::with_capacity(512 + 512 * offer.media.len());
    local.header(&mut out, &mids);
    for m in &offer.media {
        if m.port == 0 {
            let _ = write!(
                out,
                "m={} 0 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=mid:{}\r\na=inactive\r\n",
                m.kind, m.formats, m.mid
            );
            continue;
        }
        let _ = write!(out, "m={} 9 UDP/TLS/RTP/SAVPF {}\r\n", m.kind, m.formats);
        local.transport(&mut out, "active");
        let direction = match m.direction.as_str() {
            "sendonly" | "sendrecv" => "recvonly",
            _ => "inactive",
        };
        let _ = write!(
            out,
            "a=mid:{}\r\na={direction}\r\na=rtcp-mux\r\na=rtcp-rsize\r\n",
            m.mid
        );
        if twcc {
            for (id, uri) in m.extmaps.iter().filter(|(_, uri)| uri == TWCC_URI) {
                let _ = write!(out, "a=extmap:{id} {uri}\r\n");
            }
        }
        for (k, v) in &m.format_lines {
            if !twcc && k == "rtcp-fb" && v.ends_with(" transport-cc") {
                continue;
            }
            let _ = write!(out, "a={k}:{v}\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtx_pairs_come_from_fid_groups() {
        let text = OFFER.replace(
            "a=mid:0\r\n",
            "a=mid:0\r\na=ssrc-group:FID 1111 2222\r\na=ssrc-group:SIM 1 2\r\na=ssrc-group:FID x 3\r\n",
        );
        let r = parse(&text).unwrap();
        assert_eq!(r.rtx, vec![(2222, 1111)]);
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
a=group:BUNDLE 0 1\r\na=msid-semantic: WMS *\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\n\
a=ice-pwd:0123456789012345678901\r\na=ice-options:ice2\r\n\
a=fingerprint:sha-256 00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F\r\n\
a=setup:actpass\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=end-of-candidates\r\n\
a=mid:0\r\na=sendonly\r\na=msid:s t\r\na=rtcp-mux\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4/sendonly urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 transport-cc\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=inactive\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n";

    #[test]
    fn parses_a_server_offer_and_answers_it() {
        let r = parse(OFFER).unwrap();
        assert_eq!(r.ufrag, "abcd");
        assert_eq!(r.fingerprint[31], 0x1f);
        assert_eq!(
            r.candidate,
            "127.0.0.1:40000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(r.media.len(), 2);
        assert_eq!(r.media[0].direction, "sendonly");
        assert_eq!(r.media[1].direction, "inactive");
        let local = LocalParams::generate("AA:BB");
        assert_eq!(r.twcc_ext_id(), Some(3));
        assert_eq!(
            r.media[0].extmaps[1],
            (4, "urn:ietf:params:rtp-hdrext:sdes:mid".to_owned())
        );
        let without = subscribe_answer(&local, &r, false);
        assert!(!without.contains("a=extmap"));
        assert!(!without.contains("transport-cc"));
        let answer = subscribe_answer(&local, &r, true);
        assert!(answer.contains(&format!("a=extmap:3 {TWCC_URI}\r\n")));
        assert!(answer.contains("a=rtcp-fb:96 transport-cc"));
        assert!(!answer.contains("sdes:mid"));
        assert!(answer.contains("a=setup:active"));
        assert!(answer.contains("a=mid:0\r\na=recvonly"));
        assert!(answer.contains("a=mid:1\r\na=inactive"));
        assert!(answer.contains("a=rtpmap:96 VP8/90000"));
        assert!(answer.contains("a=group:BUNDLE 0 1"));
    }

    /// A video track with SSRC 7, stream "s", track "v".
    fn video(mid: &str, simulcast: bool, rtx: Option<(u8, u32)>) -> LocalTrack {
        LocalTrack {
            mid: mid.into(),
            kind: MediaKind::Video,
            pt: 96,
            ssrc: 7,
            stream: "s".into(),
            track: "v".into(),
            simulcast,
            rtx,
        }
    }

    #[test]
    fn offer_has_the_tracks() {
        let local = LocalParams::generate("AA:BB");
        let tracks = [video("0", false, None)];
        let o = publish_offer(&local, &tracks);
        assert!(!o.contains("a=simulcast"));
        assert!(o.contains("a=setup:actpass"));
        assert!(o.contains("a=ssrc:7 cname:s"));
        assert!(o.contains(&format!("a=ice-ufrag:{}", local.ufrag)));
    }

    #[test]
    fn simulcast_offer_lists_rids_lowest_first() {
        let local = LocalParams::generate("AA:BB");
        let tracks = [video("1", true, None)];
        let o = publish_offer(&local, &tracks);
        assert!(o.contains("a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\n"));
        assert!(o.contains("a=simulcast:send q;h;f\r\n"));
        assert!(o.contains("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"));
        assert!(o.contains("urn:ietf:params:rtp-hdrext:sdes:mid"));
        assert!(!o.contains("a=ssrc:7"));
    }

    #[test]
    fn rtx_is_offered_as_browsers_do_and_read_back_from_the_answer() {
        let local = LocalParams::generate("AA:BB");
        let track = video("0", false, Some((97, 8)));
        let o = publish_offer(&local, std::slice::from_ref(&track));
        assert!(o.contains("m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"));
        assert!(o.contains("a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n"));
        assert!(o.contains("a=ssrc-group:FID 7 8\r\n"));
        assert!(o.contains("a=ssrc:8 cname:s"));
        let answer = |formats: &str| RemoteDescription {
            ufrag: String::new(),
            pwd: String::new(),
            fingerprint: [0; 32],
            setup: "passive".into(),
            candidate: "127.0.0.1:1".parse().unwrap(),
            media: vec![RemoteMedia {
                kind: "video".into(),
                port: 9,
                formats: formats.into(),
                mid: "0".into(),
                direction: "recvonly".into(),
                format_lines: Vec::new(),
                extmaps: Vec::new(),
            }],
            rtx: Vec::new(),
        };
        assert!(track.rtx_accepted(&answer("96 97")));
        assert!(!track.rtx_accepted(&answer("96")));
        assert!(!track.rtx_accepted(&answer("96 197")));
    }

    #[test]
    fn rejects_bad_fingerprints() {
        assert!(parse_fingerprint("sha-1 00").is_err());
        assert!(parse_fingerprint("sha-256 00:01").is_err());
        assert!(parse(&OFFER.replace("a=candidate", "a=x")).is_err());
    }

    #[test]
    fn hostile_extmap_lines_are_skipped() {
        let lines = [
            "a=extmap:\r\n",
            "a=extmap:x http://a\r\n",
            "a=extmap:0 http://a\r\n",
            "a=extmap:15 http://a\r\n",
            "a=extmap:300 http://a\r\n",
            "a=extmap:5/\r\n",
            "a=extmap:/recvonly http://a\r\n",
            "a=extmap:7/sendonly\r\n",
        ]
        .concat();
        let r = parse(&OFFER.replace("a=mid:0\r\n", &format!("a=mid:0\r\n{lines}"))).unwrap();
        assert_eq!(
            r.media[0].extmaps,
            vec![
                (3, TWCC_URI.to_owned()),
                (4, "urn:ietf:params:rtp-hdrext:sdes:mid".to_owned())
            ],
            "only the offer's own two well-formed lines"
        );
        // Before any m-line an extmap belongs to no section.
        let r = parse(&format!("a=extmap:3 {TWCC_URI}\r\n{OFFER}")).unwrap();
        assert_eq!(r.media[0].extmaps.len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_fails_and_what_parses_is_answered(
            text in "(a=[a-z-]{0,12}:[ -~]{0,40}\r\n|m=[ -~]{0,30}\r\n|[ -~]{0,20}\r?\n){0,30}"
        ) {
            let with_transport = format!("{OFFER}{text}");
            for t in [text.as_str(), with_transport.as_str()] {
                if let Ok(r) = parse(t) {
                    let local = LocalParams::generate("AA:BB");
                    let _ = r.twcc_ext_id();
                    let _ = subscribe_answer(&local, &r, true);
                    let _ = subscribe_answer(&local, &r, false);
                }
            }
        }
    }
}
