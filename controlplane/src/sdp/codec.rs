//! The codecs Weir forwards and how they appear in SDP.
use weir_codecs::Codec;

/// One payload format of an m-section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Format {
    /// Payload type.
    pub(crate) pt: u8,
    /// Encoding name as written (`VP8`, `opus`, …).
    pub(crate) name: String,
    /// RTP clock rate.
    pub(crate) clock_rate: u32,
    /// Audio channels, if given.
    pub(crate) channels: Option<u16>,
    /// `a=fmtp` parameters, verbatim.
    pub(crate) fmtp: Option<String>,
    /// `a=rtcp-fb` values for this payload type.
    pub(crate) rtcp_fb: Vec<String>,
}

impl Format {
    /// The codec this format carries, if Weir forwards it.
    pub(crate) fn codec(&self) -> Option<Codec> {
        let name = self.name.to_ascii_lowercase();
        match (name.as_str(), self.clock_rate) {
            ("opus", 48000) => Some(Codec::Opus),
            ("vp8", 90000) => Some(Codec::Vp8),
            ("vp9", 90000) => Some(Codec::Vp9),
            ("h264", 90000) if self.h264_packetization_mode() == 1 => Some(Codec::H264),
            ("av1", 90000) => Some(Codec::Av1),
            _ => None,
        }
    }

    /// H264 `packetization-mode` (0 when absent, RFC 6184 §8.1). Weir
    /// forwards only mode 1, which every browser offers.
    fn h264_packetization_mode(&self) -> u8 {
        self.fmtp_param("packetization-mode")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// One `key=value` parameter of the fmtp line.
    pub(crate) fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp
            .as_deref()?
            .split(';')
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim())
    }

    /// The feedback Weir supports for this format: generic NACK and
    /// keyframe requests (PLI, FIR) for video, and transport-cc for both
    /// when offered, else REMB for video when offered. Audio gets no NACK: browsers do not NACK Opus.
    pub(crate) fn supported_feedback(&self, video: bool) -> Vec<&'static str> {
        let offered = |v: &str| self.rtcp_fb.iter().any(|f| f.eq_ignore_ascii_case(v));
        let mut fb: Vec<&'static str> = if video {
            VIDEO_FEEDBACK
                .iter()
                .copied()
                .filter(|f| offered(f))
                .collect()
        } else {
            Vec::new()
        };
        if offered("transport-cc") {
            fb.push("transport-cc");
        } else if video && offered("goog-remb") {
            // REMB only stands in for transport-cc: with both, the sender
            // would be steered by two estimates.
            fb.push("goog-remb");
        }
        fb
    }
}

/// Header extensions Weir accepts from publishers.
pub(crate) const SUPPORTED_EXTENSIONS: &[&str] = &[MID_URI, TWCC_URI, RID_URI, RRID_URI];

/// `urn:ietf:params:rtp-hdrext:sdes:mid` (RFC 8843).
pub(crate) const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// The transport-wide sequence number extension (transport-cc).
pub(crate) const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id` (RFC 8852): simulcast rids.
pub(crate) const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
/// The AV1 Dependency Descriptor. Weir accepts it from AV1 publishers and
/// offers it on AV1 subscriptions: AV1's own OBU headers carry layer ids
/// but no switching points, and Chromium assembles AV1 SVC frames from it.
/// Not for VP8/VP9/H264 yet: Chromium drops the VP8 picture ids when it
/// negotiates the descriptor (see `docs/design.md`).
pub(crate) const DD_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
/// `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id` (RFC 8852):
/// which simulcast encoding an RTX packet repairs.
pub(crate) const RRID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
/// The extension id Weir offers for transport-cc on subscribe transports.
pub(crate) const OFFERED_TWCC_ID: u8 = 3;

/// The extension id Weir offers for the Dependency Descriptor on subscribe
/// transports (AV1 subscriptions).
pub(crate) const OFFERED_DD_ID: u8 = 12;

/// RTCP feedback Weir negotiates for video.
pub(crate) const VIDEO_FEEDBACK: &[&str] = &["nack", "nack pli", "ccm fir"];
