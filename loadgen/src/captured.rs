//! Real VP8 frames, so that a real decoder accepts the load generator's
//! video: the Chromium captures of `codecs/tests/fixtures` (libvpx, fake
//! camera) are reassembled into frames once and replayed in a loop.
//!
//! A loop restarts at the capture's first frame, a keyframe, so every
//! replayed delta frame follows the frames it was encoded against. The
//! single-encoding capture is 640×360 (180 frames); the simulcast capture
//! has rids `q`, `h`, `f` at 320×180, 640×360 and 1280×720.

use std::collections::HashMap;
use std::sync::OnceLock;

use weir_codecs::{RtpHeader, Vp8Descriptor};

/// `vp8.rtpdump`: VP8, 640×360, one encoding.
static SINGLE: &[u8] = include_bytes!("../../codecs/tests/fixtures/vp8.rtpdump");
/// `vp8_simulcast.rtpdump`: three encodings.
static SIMULCAST: &[u8] = include_bytes!("../../codecs/tests/fixtures/vp8_simulcast.rtpdump");
/// Which SSRC of the simulcast capture carried which rid.
static SIMULCAST_META: &str = include_str!("../../codecs/tests/fixtures/vp8_simulcast.meta");

/// One encoded VP8 frame (RFC 6386), without any RTP payload descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// Whether it is a keyframe (frame tag P bit 0).
    pub(crate) keyframe: bool,
    /// The frame as the encoder wrote it.
    pub(crate) data: Vec<u8>,
}

/// Why a capture cannot be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CaptureError {
    /// A record's length runs past the end of the dump.
    #[error("record at byte {0} is truncated")]
    Truncated(usize),
    /// A record is not an RTP packet.
    #[error("record at byte {0} is not RTP")]
    Rtp(usize),
    /// A packet's VP8 payload descriptor does not parse.
    #[error("record at byte {0} has a bad VP8 payload descriptor")]
    Descriptor(usize),
    /// A frame's first packet is missing (it would not decode).
    #[error("a frame of SSRC {0} lacks its first packet")]
    Incomplete(u32),
    /// No complete frame starts with a keyframe.
    #[error("no keyframe in the capture")]
    NoKeyframe,
    /// The metadata names no SSRC for this rid.
    #[error("the capture has no rid '{0}'")]
    NoRid(String),
}

/// The complete frames of `ssrc` (or of the first SSRC seen) in an rtpdump
/// (records of a big-endian u16 length and one RTP packet), from the first
/// keyframe on. Padding-only packets are skipped.
pub(crate) fn frames_of(dump: &[u8], ssrc: Option<u32>) -> Result<Vec<Frame>, CaptureError> {
    let mut frames = Vec::new();
    // The frame being reassembled: timestamp, whether its start was seen, bytes.
    let mut current: Option<(u32, bool, Vec<u8>)> = None;
    let mut want = ssrc;
    let mut at = 0;
    while at < dump.len() {
        let len = dump
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(CaptureError::Truncated(at))?;
        let packet = dump
            .get(at + 2..at + 2 + len)
            .ok_or(CaptureError::Truncated(at))?;
        let record = at;
        at += 2 + len;
        let h = RtpHeader::parse(packet).map_err(|_| CaptureError::Rtp(record))?;
        if *want.get_or_insert(h.ssrc()) != h.ssrc() || h.payload().is_empty() {
            continue;
        }
        let d = Vp8Descriptor::parse(h.payload()).map_err(|_| CaptureError::Descriptor(record))?;
        let body = &h.payload()[d.header_len..];
        let starts = d.start_of_partition && d.partition_index == 0;
        match &mut current {
            Some((ts, _, data)) if *ts == h.timestamp() => data.extend_from_slice(body),
            _ => current = Some((h.timestamp(), starts, body.to_vec())),
        }
        if h.marker() {
            if let Some((_, started, data)) = current.take() {
                if !started {
                    // Only a capture's first frame may be cut; drop it.
                    if !frames.is_empty() {
                        return Err(CaptureError::Incomplete(h.ssrc()));
                    }
                    continue;
                }
                let keyframe = data.first().is_some_and(|b| b & 1 == 0);
                if frames.is_empty() && !keyframe {
                    continue;
                }
                frames.push(Frame { keyframe, data });
            }
        }
    }
    if frames.is_empty() {
        return Err(CaptureError::NoKeyframe);
    }
    Ok(frames)
}

/// The SSRC that carried `rid`, from `stream <ssrc> rid=<rid> …` lines.
fn ssrc_of_rid(meta: &str, rid: &str) -> Option<u32> {
    meta.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        if f.next()? != "stream" {
            return None;
        }
        let ssrc = f.next()?.parse().ok()?;
        (f.next()? == format!("rid={rid}")).then_some(ssrc)
    })
}

/// The replayable frames of the single-encoding capture, or of simulcast
/// rid `rid`; parsed once per process.
pub(crate) fn frames(rid: Option<&str>) -> Result<&'static [Frame], CaptureError> {
    type Cache = OnceLock<Result<HashMap<Option<String>, Vec<Frame>>, CaptureError>>;
    static CACHE: Cache = OnceLock::new();
    let all = CACHE
        .get_or_init(|| {
            let mut all = HashMap::new();
            all.insert(None, frames_of(SINGLE, None)?);
            for layer in crate::media::SIMULCAST_LAYERS {
                let ssrc = ssrc_of_rid(SIMULCAST_META, layer.rid)
                    .ok_or_else(|| CaptureError::NoRid(layer.rid.to_owned()))?;
                all.insert(
                    Some(layer.rid.to_owned()),
                    frames_of(SIMULCAST, Some(ssrc))?,
                );
            }
            Ok(all)
        })
        .as_ref()
        .map_err(Clone::clone)?;
    all.get(&rid.map(str::to_owned))
        .map(Vec::as_slice)
        .ok_or_else(|| CaptureError::NoRid(rid.unwrap_or("").to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn captures_replay_from_a_keyframe() {
        let single = frames(None).unwrap();
        assert!(single.len() >= 100, "{}", single.len());
        assert!(single[0].keyframe);
        // 640×360 in the keyframe header (RFC 6386 §9.1).
        let k = &single[0].data;
        assert_eq!(&k[3..6], &[0x9d, 0x01, 0x2a]);
        assert_eq!(u16::from_le_bytes([k[6], k[7]]) & 0x3fff, 640);
        assert_eq!(u16::from_le_bytes([k[8], k[9]]) & 0x3fff, 360);
        for (rid, width) in [("q", 320), ("h", 640), ("f", 1280)] {
            let f = frames(Some(rid)).unwrap();
            assert!(f.len() >= 10, "{rid}: {}", f.len());
            assert!(f[0].keyframe);
            assert_eq!(
                u16::from_le_bytes([f[0].data[6], f[0].data[7]]) & 0x3fff,
                width
            );
        }
        assert_eq!(frames(Some("x")), Err(CaptureError::NoRid("x".into())));
    }

    #[test]
    fn bad_dumps_are_errors() {
        assert_eq!(frames_of(&[], None), Err(CaptureError::NoKeyframe));
        assert_eq!(frames_of(&[0], None), Err(CaptureError::Truncated(0)));
        assert_eq!(frames_of(&[0, 5, 1], None), Err(CaptureError::Truncated(0)));
        assert_eq!(
            frames_of(&[0, 2, 0x80, 96], None),
            Err(CaptureError::Rtp(0))
        );
        assert_eq!(ssrc_of_rid("stream 12 rid=q pt=96", "q"), Some(12));
        assert_eq!(ssrc_of_rid("stream x rid=q", "q"), None);
    }

    proptest! {
        /// Any bytes, and any cut or corruption of a real capture, give
        /// frames or an error, never a panic.
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = frames_of(&bytes, None);
        }

        #[test]
        fn damaged_captures_never_panic(cut in 0..SINGLE.len(), at in 0..4096usize, byte in any::<u8>()) {
            let mut d = SINGLE[..cut.min(8192)].to_vec();
            if let Some(b) = d.get_mut(at) {
                *b = byte;
            }
            let _ = frames_of(&d, None);
        }
    }
}
