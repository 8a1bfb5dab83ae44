//! H.264 RTP payloads (RFC 6184): single NAL unit, STAP-A and FU-A packets, and
//! `profile-level-id` matching for SDP negotiation.

use thiserror::Error;

/// Why an H.264 payload or `profile-level-id` is malformed or unsupported.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum H264Error {
    /// The payload is empty or ends inside a NAL unit header or size field.
    #[error("H.264 payload truncated")]
    Truncated,
    /// The F (forbidden zero) bit is set.
    #[error("forbidden bit set")]
    ForbiddenBit,
    /// STAP-B, MTAP or FU-B (interleaved mode), or a reserved type.
    #[error("unsupported NAL unit type {0}")]
    UnsupportedType(u8),
    /// `profile-level-id` is not six hex digits.
    #[error("invalid profile-level-id")]
    BadProfileLevelId,
}

/// NAL unit type of a coded slice of a non-IDR picture.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// Supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// Sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// Picture parameter set.
pub const NAL_PPS: u8 = 8;
/// Access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// Single-time aggregation packet.
pub const NAL_STAP_A: u8 = 24;
/// Fragmentation unit, non-interleaved.
pub const NAL_FU_A: u8 = 28;

/// How the NAL units are carried in this packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264PacketKind {
    /// One whole NAL unit.
    Single,
    /// Several whole NAL units (STAP-A).
    StapA,
    /// A fragment of one NAL unit (FU-A).
    FuA {
        /// S: the first fragment.
        start: bool,
        /// E: the last fragment.
        end: bool,
    },
}

/// What one H.264 RTP payload contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct H264Payload {
    /// Packetization.
    pub kind: H264PacketKind,
    /// Bit `t` is set when a NAL unit of type `t` starts in this packet.
    pub nal_types: u32,
    /// Highest NRI of the NAL units (0 means none is used for reference).
    pub nri: u8,
    /// The packet begins a new picture: it carries an AUD, SPS, PPS or SEI, or the
    /// start of a slice with `first_mb_in_slice` 0.
    pub frame_start: bool,
}

impl H264Payload {
    /// Parses an RTP payload in packetization mode 0 or 1.
    pub fn parse(payload: &[u8]) -> Result<Self, H264Error> {
        let &h = payload.first().ok_or(H264Error::Truncated)?;
        if h & 0x80 != 0 {
            return Err(H264Error::ForbiddenBit);
        }
        let mut p = Self {
            kind: H264PacketKind::Single,
            nal_types: 0,
            nri: (h >> 5) & 3,
            frame_start: false,
        };
        match h & 0x1f {
            t @ 1..=23 => p.add_nal(t, payload.get(1..).unwrap_or(&[])),
            NAL_STAP_A => {
                p.kind = H264PacketKind::StapA;
                let mut rest = &payload[1..];
                while !rest.is_empty() {
                    let [a, b, tail @ ..] = rest else {
                        return Err(H264Error::Truncated);
                    };
                    let size = usize::from(u16::from_be_bytes([*a, *b]));
                    let nal = tail.get(..size).ok_or(H264Error::Truncated)?;
                    let (&nh, body) = nal.split_first().ok_or(H264Error::Truncated)?;
                    p.nri = p.nri.max((nh >> 5) & 3);
                    p.add_nal(nh & 0x1f, body);
                    rest = &tail[size..];
                }
            }
            NAL_FU_A => {
                let &fu = payload.get(1).ok_or(H264Error::Truncated)?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                p.kind = H264PacketKind::FuA { start, end };
                // Only the first fragment holds the start of the NAL unit.
                if start {
                    p.add_nal(fu & 0x1f, payload.get(2..).unwrap_or(&[]));
                }
            }
            t => return Err(H264Error::UnsupportedType(t)),
        }
        Ok(p)
    }

    fn add_nal(&mut self, t: u8, body: &[u8]) {
        self.nal_types |= 1 << t;
        self.frame_start |= match t {
            NAL_SEI | NAL_SPS | NAL_PPS | NAL_AUD => true,
            // first_mb_in_slice is ue(v); a leading 1 bit encodes 0.
            NAL_SLICE | NAL_IDR => body.first().is_some_and(|b| b & 0x80 != 0),
            _ => false,
        };
    }

    /// The packet carries (the start of) a NAL unit of type `t`.
    pub fn has(&self, t: u8) -> bool {
        t < 32 && self.nal_types & (1 << t) != 0
    }

    /// Carries an IDR slice: the picture is a key frame.
    pub fn is_keyframe(&self) -> bool {
        self.has(NAL_IDR)
    }

    /// Carries a sequence parameter set.
    pub fn has_sps(&self) -> bool {
        self.has(NAL_SPS)
    }

    /// Carries a picture parameter set.
    pub fn has_pps(&self) -> bool {
        self.has(NAL_PPS)
    }
}

/// The three bytes of an SDP `profile-level-id` (RFC 6184 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileLevelId {
    /// profile_idc.
    pub profile_idc: u8,
    /// profile-iop: the constraint_set flags.
    pub profile_iop: u8,
    /// level_idc.
    pub level_idc: u8,
}

impl ProfileLevelId {
    /// The value RFC 6184 implies when the parameter is absent (Baseline, level 1.0).
    pub const DEFAULT: Self = Self {
        profile_idc: 0x42,
        profile_iop: 0x00,
        level_idc: 0x0a,
    };

    /// Parses six hex digits, e.g. `42e01f`.
    pub fn parse(s: &str) -> Result<Self, H264Error> {
        let b = s.as_bytes();
        // from_str_radix alone would accept a sign, so check the digits first.
        if b.len() != 6 || !b.iter().all(u8::is_ascii_hexdigit) {
            return Err(H264Error::BadProfileLevelId);
        }
        let hex = |i: usize| -> Result<u8, H264Error> {
            let pair = s.get(i..i + 2).ok_or(H264Error::BadProfileLevelId)?;
            u8::from_str_radix(pair, 16).map_err(|_| H264Error::BadProfileLevelId)
        };
        Ok(Self {
            profile_idc: hex(0)?,
            profile_iop: hex(2)?,
            level_idc: hex(4)?,
        })
    }

    /// Whether two parameters name the same profile, so the codecs can be matched in
    /// an offer/answer: same `profile_idc` and `profile-iop`; the level may differ
    /// because each side can send below what the other can receive.
    pub fn same_profile(&self, other: &Self) -> bool {
        self.profile_idc == other.profile_idc && self.profile_iop == other.profile_iop
    }
}

/// SDP helper: do two fmtp `profile-level-id` values (absent = [`ProfileLevelId::DEFAULT`])
/// describe the same profile? Malformed values never match.
pub fn profile_level_ids_match(a: Option<&str>, b: Option<&str>) -> bool {
    let parse = |v: Option<&str>| v.map_or(Ok(ProfileLevelId::DEFAULT), ProfileLevelId::parse);
    match (parse(a), parse(b)) {
        (Ok(a), Ok(b)) => a.same_profile(&b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_nal_idr() {
        // NRI=3 type 5, first_mb_in_slice = 0 (leading 1 bit).
        let p = H264Payload::parse(&[0x65, 0x88, 0x84]).unwrap();
        assert_eq!(p.kind, H264PacketKind::Single);
        assert!(p.is_keyframe() && p.frame_start && p.nri == 3);
        // Second slice of a picture: first_mb_in_slice != 0.
        let p = H264Payload::parse(&[0x41, 0x40]).unwrap();
        assert!(!p.is_keyframe() && !p.frame_start);
    }

    #[test]
    fn stap_a_with_sps_pps() {
        // RFC 6184 §5.7.1 layout: STAP-A header, then (size, NAL) pairs.
        let p = [
            0x78, 0x00, 0x03, 0x67, 0x42, 0xe0, 0x00, 0x02, 0x68, 0xce, 0x00, 0x02, 0x65, 0x88,
        ];
        let s = H264Payload::parse(&p).unwrap();
        assert_eq!(s.kind, H264PacketKind::StapA);
        assert!(s.has_sps() && s.has_pps() && s.is_keyframe() && s.frame_start);
        assert_eq!(H264Payload::parse(&p[..5]), Err(H264Error::Truncated));
        assert_eq!(H264Payload::parse(&[0x78, 0x00]), Err(H264Error::Truncated));
        assert_eq!(
            H264Payload::parse(&[0x78, 0x00, 0x00]),
            Err(H264Error::Truncated)
        );
    }

    #[test]
    fn fu_a_fragments() {
        // FU indicator NRI=3 type 28; FU header S=1 type 5.
        let s = H264Payload::parse(&[0x7c, 0x85, 0x88]).unwrap();
        assert_eq!(
            s.kind,
            H264PacketKind::FuA {
                start: true,
                end: false
            }
        );
        assert!(s.is_keyframe() && s.frame_start);
        let m = H264Payload::parse(&[0x7c, 0x45, 0x00]).unwrap();
        assert_eq!(
            m.kind,
            H264PacketKind::FuA {
                start: false,
                end: true
            }
        );
        assert!(!m.is_keyframe() && !m.frame_start);
        assert_eq!(H264Payload::parse(&[0x7c]), Err(H264Error::Truncated));
    }

    #[test]
    fn rejects() {
        assert_eq!(H264Payload::parse(&[]), Err(H264Error::Truncated));
        assert_eq!(H264Payload::parse(&[0x80]), Err(H264Error::ForbiddenBit));
        assert_eq!(
            H264Payload::parse(&[0x19]),
            Err(H264Error::UnsupportedType(25))
        );
        assert_eq!(
            H264Payload::parse(&[0x1d]),
            Err(H264Error::UnsupportedType(29))
        );
    }

    #[test]
    fn profile_level_id() {
        let p = ProfileLevelId::parse("42e01f").unwrap();
        assert_eq!(
            (p.profile_idc, p.profile_iop, p.level_idc),
            (0x42, 0xe0, 0x1f)
        );
        assert!(profile_level_ids_match(Some("42e01f"), Some("42e00a")));
        assert!(!profile_level_ids_match(Some("42e01f"), Some("42001f")));
        assert!(!profile_level_ids_match(Some("42e01f"), Some("64001f")));
        assert!(profile_level_ids_match(None, Some("42001f")));
        assert!(!profile_level_ids_match(Some("42e0"), Some("42e0")));
        assert!(!profile_level_ids_match(Some("+2e01f"), Some("+2e01f")));
        assert!(ProfileLevelId::parse("é2e01").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48), s in "\\PC{0,8}") {
            let _ = H264Payload::parse(&bytes);
            let _ = ProfileLevelId::parse(&s);
        }

        #[test]
        fn stap_a_lists_every_type(nals in proptest::collection::vec((1u8..24, proptest::collection::vec(any::<u8>(), 0..8)), 1..5)) {
            let mut p = vec![0x18];
            let mut expected = 0u32;
            for (t, body) in &nals {
                p.extend_from_slice(&(body.len() as u16 + 1).to_be_bytes());
                p.push(*t);
                p.extend_from_slice(body);
                expected |= 1 << t;
            }
            prop_assert_eq!(H264Payload::parse(&p).unwrap().nal_types, expected);
        }
    }
}
