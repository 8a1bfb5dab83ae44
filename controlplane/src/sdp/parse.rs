//! Parsing remote offers and answers into what the transports need.
use std::io::Cursor;

use sdp::description::media::MediaDescription;
use sdp::description::session::SessionDescription;

use super::codec::Format;
use super::SdpError;

/// `a=setup` role (RFC 5763).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    /// The peer will be the DTLS client.
    Active,
    /// The peer will be the DTLS server.
    Passive,
    /// Either (offers only).
    ActPass,
}

/// Media direction of an m-section, from the sender's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// `a=sendrecv` (the default).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

/// One m-section of a remote description.
#[derive(Debug, Clone)]
pub(crate) struct RemoteMedia {
    /// `audio`, `video`, `application`, …
    pub(crate) kind: String,
    /// The port; 0 means rejected or removed.
    pub(crate) port: u16,
    /// `a=mid`.
    pub(crate) mid: String,
    /// Direction.
    pub(crate) direction: Direction,
    /// Payload formats in preference order.
    pub(crate) formats: Vec<Format>,
    /// `a=extmap` (id, uri).
    pub(crate) extmaps: Vec<(u8, String)>,
    /// Simulcast rids the remote sends, in `a=simulcast` order (paused
    /// ones included); empty without simulcast.
    pub(crate) send_rids: Vec<String>,
    /// SSRCs from `a=ssrc` lines.
    pub(crate) ssrcs: Vec<u32>,
    /// `a=ssrc-group:FID <media> <rtx>` pairs (RFC 4588 §8.1).
    pub(crate) fid_groups: Vec<(u32, u32)>,
    /// `a=msid` (stream id, track id).
    pub(crate) msid: Option<(String, String)>,
    /// The m-line's transport protocol (`UDP/DTLS/SCTP`) when its format
    /// is `webrtc-datachannel`; empty otherwise.
    pub(crate) proto: String,
    /// `a=sctp-port` of an SCTP m-section.
    pub(crate) sctp_port: Option<u16>,
    /// `a=max-message-size` of an SCTP m-section (RFC 8841).
    pub(crate) max_message_size: Option<u64>,
}

impl RemoteMedia {
    /// Whether the remote side sends media on this m-section.
    pub(crate) fn sends(&self) -> bool {
        self.port != 0 && matches!(self.direction, Direction::SendOnly | Direction::SendRecv)
    }

    /// Whether this is a WebRTC data channel m-section Weir speaks:
    /// `m=application <port> UDP/DTLS/SCTP webrtc-datachannel` (RFC 8841),
    /// not the pre-standard `DTLS/SCTP 5000` + `a=sctpmap` form.
    pub(crate) fn is_datachannel(&self) -> bool {
        self.kind == "application"
            && self.proto.eq_ignore_ascii_case("UDP/DTLS/SCTP")
            && self.sctp_port.is_some()
    }

    /// The id of a header extension by URI.
    pub(crate) fn extmap_id(&self, uri: &str) -> Option<u8> {
        self.extmaps
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(id, _)| *id)
    }
}

/// What Weir needs from a remote offer or answer.
#[derive(Debug, Clone)]
pub(crate) struct RemoteDescription {
    /// ICE username fragment.
    pub(crate) ice_ufrag: String,
    /// ICE password.
    pub(crate) ice_pwd: String,
    /// SHA-256 certificate fingerprint (32 bytes).
    pub(crate) fingerprint: Vec<u8>,
    /// DTLS role.
    pub(crate) setup: Setup,
    /// The m-sections, in order.
    pub(crate) media: Vec<RemoteMedia>,
    /// `a=extmap-allow-mixed` (RFC 8285 §6): the peer takes two-byte
    /// header extensions. Chromium sends nothing that needs them (the
    /// Dependency Descriptor with its structure) unless the answer says it.
    pub(crate) extmap_allow_mixed: bool,
}

/// Parses an SDP offer or answer.
pub(crate) fn parse(text: &str) -> Result<RemoteDescription, SdpError> {
    if text.trim().is_empty() {
        return Err(SdpError::Missing("SDP text (it is empty)"));
    }
    // The sdp crate wants CRLF or LF line ends and a trailing newline.
    let mut normalized = text.replace("\r\n", "\n");
    if !normalized.ends_with('\n') {
        normalized.push('\n');
    }
    let sd = SessionDescription::unmarshal(&mut Cursor::new(normalized.as_bytes()))
        .map_err(|e| SdpError::Syntax(e.to_string()))?;
    if sd.media_descriptions.is_empty() {
        return Err(SdpError::Missing("m= sections (there are none)"));
    }
    let mut media = Vec::with_capacity(sd.media_descriptions.len());
    for (i, md) in sd.media_descriptions.iter().enumerate() {
        media.push(parse_media(i, md)?);
    }
    // Transport attributes sit in the m-sections (JSEP) or at session level.
    let lookup = |key: &str| -> Option<String> {
        sd.media_descriptions
            .iter()
            .filter(|m| m.media_name.port.value != 0)
            .find_map(|m| m.attribute(key).flatten().map(str::to_owned))
            .or_else(|| sd.attribute(key).cloned())
    };
    let ice_ufrag = lookup("ice-ufrag").ok_or(SdpError::Missing("a=ice-ufrag"))?;
    let ice_pwd = lookup("ice-pwd").ok_or(SdpError::Missing("a=ice-pwd"))?;
    if ice_ufrag.len() < 4 || ice_ufrag.len() > 256 || ice_pwd.len() < 22 || ice_pwd.len() > 256 {
        return Err(SdpError::Invalid(
            "a=ice-ufrag must have 4–256 characters and a=ice-pwd 22–256 (RFC 8839)".into(),
        ));
    }
    let fingerprint =
        parse_fingerprint(&lookup("fingerprint").ok_or(SdpError::Missing("a=fingerprint"))?)?;
    let setup = match lookup("setup").as_deref() {
        Some("active") => Setup::Active,
        Some("passive") => Setup::Passive,
        Some("actpass") | None => Setup::ActPass,
        Some(other) => {
            return Err(SdpError::Invalid(format!(
                "a=setup:{other} is not active, passive or actpass"
            )))
        }
    };
    let extmap_allow_mixed = sd.attributes.iter().any(|a| a.key == "extmap-allow-mixed");
    Ok(RemoteDescription {
        ice_ufrag,
        ice_pwd,
        fingerprint,
        setup,
        media,
        extmap_allow_mixed,
    })
}

fn parse_fingerprint(value: &str) -> Result<Vec<u8>, SdpError> {
    let (alg, hex) = value
        .split_once(' ')
        .ok_or_else(|| SdpError::Invalid(format!("a=fingerprint:{value} has no hash function")))?;
    if !alg.eq_ignore_ascii_case("sha-256") {
        return Err(SdpError::Invalid(format!(
            "a=fingerprint uses {alg}; Weir requires sha-256"
        )));
    }
    let bytes: Result<Vec<u8>, _> = hex
        .trim()
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect();
    match bytes {
        Ok(b) if b.len() == 32 => Ok(b),
        _ => Err(SdpError::Invalid(format!(
            "a=fingerprint value '{hex}' is not 32 hex bytes"
        ))),
    }
}

fn parse_media(index: usize, md: &MediaDescription) -> Result<RemoteMedia, SdpError> {
    let kind = md.media_name.media.clone();
    let port = u16::try_from(md.media_name.port.value).map_err(|_| {
        SdpError::Invalid(format!(
            "m-section {index} has port {}",
            md.media_name.port.value
        ))
    })?;
    let mid = md
        .attribute("mid")
        .flatten()
        .map(str::to_owned)
        .ok_or_else(|| SdpError::Invalid(format!("m-section {index} ({kind}) has no a=mid")))?;
    if mid.is_empty() || mid.len() > 32 {
        return Err(SdpError::Invalid(format!(
            "m-section {index} has an a=mid of bad length"
        )));
    }
    let direction = if md.has_attribute("sendonly") {
        Direction::SendOnly
    } else if md.has_attribute("recvonly") {
        Direction::RecvOnly
    } else if md.has_attribute("inactive") {
        Direction::Inactive
    } else {
        Direction::SendRecv
    };
    if port != 0 && (kind == "audio" || kind == "video") && !md.has_attribute("rtcp-mux") {
        return Err(SdpError::Invalid(format!(
            "m-section '{mid}' lacks a=rtcp-mux, which Weir requires"
        )));
    }
    let mut formats = Vec::new();
    if kind == "audio" || kind == "video" {
        for f in &md.media_name.formats {
            let Ok(pt) = f.parse::<u8>() else {
                return Err(SdpError::Invalid(format!(
                    "m-section '{mid}' has payload type '{f}'"
                )));
            };
            if pt > 127 {
                return Err(SdpError::Invalid(format!(
                    "m-section '{mid}' has payload type {pt} > 127"
                )));
            }
            formats.push(Format {
                pt,
                name: String::new(),
                clock_rate: 0,
                channels: None,
                fmtp: None,
                rtcp_fb: Vec::new(),
            });
        }
    }
    // Only the RFC 8841 form counts as a data channel section; the
    // pre-standard `DTLS/SCTP 5000` form is rejected with port 0.
    let proto = if md
        .media_name
        .formats
        .iter()
        .any(|f| f == "webrtc-datachannel")
    {
        md.media_name.protos.join("/")
    } else {
        String::new()
    };
    let mut extmaps = Vec::new();
    let mut send_rids: Vec<String> = Vec::new();
    let mut simulcast_send: Option<Vec<String>> = None;
    let mut ssrcs = Vec::new();
    let mut fid_groups = Vec::new();
    let mut msid = None;
    let mut sctp_port = None;
    let mut max_message_size = None;
    for a in &md.attributes {
        let value = a.value.as_deref().unwrap_or("");
        match a.key.as_str() {
            "rtpmap" => {
                let (pt, rest) = split_pt(value, &mid, "rtpmap")?;
                let mut parts = rest.split('/');
                let name = parts.next().unwrap_or("").to_owned();
                let clock_rate = parts.next().and_then(|c| c.parse().ok()).ok_or_else(|| {
                    SdpError::Invalid(format!("a=rtpmap:{value} in '{mid}' has no clock rate"))
                })?;
                let channels = parts.next().and_then(|c| c.parse().ok());
                if let Some(fmt) = formats.iter_mut().find(|f| f.pt == pt) {
                    fmt.name = name;
                    fmt.clock_rate = clock_rate;
                    fmt.channels = channels;
                }
            }
            "fmtp" => {
                let (pt, rest) = split_pt(value, &mid, "fmtp")?;
                if let Some(fmt) = formats.iter_mut().find(|f| f.pt == pt) {
                    fmt.fmtp = Some(rest.to_owned());
                }
            }
            "rtcp-fb" => {
                let (pt, rest) = value.split_once(' ').unwrap_or((value, ""));
                for fmt in formats
                    .iter_mut()
                    .filter(|f| pt == "*" || pt.parse() == Ok(f.pt))
                {
                    fmt.rtcp_fb.push(rest.trim().to_owned());
                }
            }
            "rid" => {
                // a=rid:<id> send|recv [params]
                let mut it = value.split_whitespace();
                if let (Some(id), Some("send")) = (it.next(), it.next()) {
                    if !valid_rid(id) {
                        return Err(SdpError::Invalid(format!(
                            "a=rid:{value} in '{mid}' has a bad rid"
                        )));
                    }
                    send_rids.push(id.to_owned());
                }
            }
            "simulcast" => {
                // a=simulcast:send q;h;f (alternatives after ',', paused with '~').
                let mut it = value.split_whitespace();
                while let (Some(dir), Some(list)) = (it.next(), it.next()) {
                    if dir == "send" {
                        let ids: Vec<String> = list
                            .split(';')
                            .filter_map(|alt| alt.split(',').next())
                            .map(|id| id.trim_start_matches('~').to_owned())
                            .collect();
                        simulcast_send = Some(ids);
                    }
                }
            }
            "extmap" => {
                let (id, uri) = value.split_once(' ').ok_or_else(|| {
                    SdpError::Invalid(format!("a=extmap:{value} in '{mid}' has no URI"))
                })?;
                // The id may carry a direction: "3/sendonly".
                let id = id.split('/').next().unwrap_or(id);
                let id: u8 = id
                    .parse()
                    .ok()
                    .filter(|i| (1..=255).contains(i) && *i != 15)
                    .ok_or_else(|| {
                        SdpError::Invalid(format!("a=extmap:{value} in '{mid}' has a bad id"))
                    })?;
                let uri = uri.split_whitespace().next().unwrap_or("").to_owned();
                extmaps.push((id, uri));
            }
            "ssrc" => {
                let ssrc = value
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse::<u32>().ok());
                match ssrc {
                    Some(s) if !ssrcs.contains(&s) => ssrcs.push(s),
                    Some(_) => {}
                    None => {
                        return Err(SdpError::Invalid(format!(
                            "a=ssrc:{value} in '{mid}' is not a number"
                        )))
                    }
                }
            }
            "ssrc-group" => {
                let mut it = value.split_whitespace();
                if it.next() == Some("FID") {
                    let pair = it
                        .next()
                        .and_then(|m| m.parse().ok())
                        .zip(it.next().and_then(|r| r.parse().ok()));
                    match pair {
                        Some(p) if fid_groups.len() < 8 => fid_groups.push(p),
                        Some(_) => {}
                        None => {
                            return Err(SdpError::Invalid(format!(
                                "a=ssrc-group:{value} in '{mid}' is not two SSRCs"
                            )))
                        }
                    }
                }
            }
            "msid" => {
                let mut it = value.split_whitespace();
                if let (Some(stream), track) = (it.next(), it.next()) {
                    msid = Some((stream.to_owned(), track.unwrap_or("").to_owned()));
                }
            }
            "sctp-port" => {
                let port = value.trim().parse::<u16>().ok().filter(|p| *p != 0);
                sctp_port = Some(port.ok_or_else(|| {
                    SdpError::Invalid(format!(
                        "a=sctp-port:{value} in '{mid}' is not a port number"
                    ))
                })?);
            }
            "max-message-size" => {
                max_message_size = Some(value.trim().parse::<u64>().map_err(|_| {
                    SdpError::Invalid(format!(
                        "a=max-message-size:{value} in '{mid}' is not a number"
                    ))
                })?);
            }
            _ => {}
        }
    }
    // Formats without rtpmap are static payload types we do not forward.
    formats.retain(|f| !f.name.is_empty());
    // The simulcast line orders the rids; every one must have its a=rid.
    let send_rids = match simulcast_send {
        Some(ids) if ids.len() <= 4 && ids.iter().all(|id| send_rids.contains(id)) => ids,
        Some(_) => {
            return Err(SdpError::Invalid(format!(
                "a=simulcast in '{mid}' names a rid without a=rid, or more than 4"
            )))
        }
        None => Vec::new(),
    };
    Ok(RemoteMedia {
        kind,
        port,
        mid,
        direction,
        formats,
        extmaps,
        send_rids,
        ssrcs,
        fid_groups,
        msid,
        proto,
        sctp_port,
        max_message_size,
    })
}

fn split_pt<'a>(value: &'a str, mid: &str, what: &str) -> Result<(u8, &'a str), SdpError> {
    let (pt, rest) = value
        .split_once(' ')
        .ok_or_else(|| SdpError::Invalid(format!("a={what}:{value} in '{mid}' is malformed")))?;
    let pt = pt.parse().map_err(|_| {
        SdpError::Invalid(format!(
            "a={what}:{value} in '{mid}' has a bad payload type"
        ))
    })?;
    Ok((pt, rest.trim()))
}

/// RFC 8851 rid syntax, bounded: 1–16 alphanumerics, `-` or `_`.
fn valid_rid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 16
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
