//! Typed values of the header extensions an SFU reads or rewrites.
//!
//! Each type parses from an element's value and writes back to a fixed array, so
//! a writer never needs a buffer check.

use super::ExtError;

#[inline]
fn exact<const N: usize>(v: &[u8]) -> Result<[u8; N], ExtError> {
    v.try_into().map_err(|_| ExtError::WrongSize {
        got: v.len(),
        expected: N,
    })
}

/// Client-to-mixer audio level (RFC 6464).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioLevel {
    /// The V bit: the sender's voice activity detector saw speech.
    pub voice_activity: bool,
    /// Level in -dBov, 0 (loudest) to 127 (silence).
    pub level: u8,
}

impl AudioLevel {
    /// Parses the 1-byte value.
    #[inline]
    pub fn parse(v: &[u8]) -> Result<Self, ExtError> {
        let [b] = exact::<1>(v)?;
        Ok(Self {
            voice_activity: b & 0x80 != 0,
            level: b & 0x7f,
        })
    }

    /// Encodes the value; `level` is clamped to 127.
    pub fn to_bytes(self) -> [u8; 1] {
        [(u8::from(self.voice_activity) << 7) | self.level.min(127)]
    }
}

/// abs-send-time: a 24-bit 6.18 fixed-point NTP-seconds fraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbsSendTime(pub u32);

impl AbsSendTime {
    /// Parses the 3-byte value.
    #[inline]
    pub fn parse(v: &[u8]) -> Result<Self, ExtError> {
        let [a, b, c] = exact::<3>(v)?;
        Ok(Self(u32::from_be_bytes([0, a, b, c])))
    }

    /// Encodes the low 24 bits.
    pub fn to_bytes(self) -> [u8; 3] {
        let [_, a, b, c] = self.0.to_be_bytes();
        [a, b, c]
    }
}

/// Transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportSequenceNumber(pub u16);

impl TransportSequenceNumber {
    /// Parses the value. Version 2 appends two feedback-request bytes, which are ignored.
    #[inline]
    pub fn parse(v: &[u8]) -> Result<Self, ExtError> {
        match *v {
            [a, b] | [a, b, _, _] => Ok(Self(u16::from_be_bytes([a, b]))),
            _ => Err(ExtError::WrongSize {
                got: v.len(),
                expected: 2,
            }),
        }
    }

    /// Encodes the 2-byte (version 1) value.
    pub fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
}

/// Clockwise rotation the receiver applies before display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rotation {
    /// No rotation.
    Deg0,
    /// 90 degrees.
    Deg90,
    /// 180 degrees.
    Deg180,
    /// 270 degrees.
    Deg270,
}

/// Coordination of video orientation (3GPP TS 26.114 §7.4.5, "urn:3gpp:video-orientation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoOrientation {
    /// C: the back-facing camera.
    pub back_camera: bool,
    /// F: horizontally flipped.
    pub flip: bool,
    /// R1 R0.
    pub rotation: Rotation,
}

impl VideoOrientation {
    /// Parses the 1-byte value; the high 4 bits are reserved and ignored.
    #[inline]
    pub fn parse(v: &[u8]) -> Result<Self, ExtError> {
        let [b] = exact::<1>(v)?;
        let rotation = match b & 3 {
            0 => Rotation::Deg0,
            1 => Rotation::Deg90,
            2 => Rotation::Deg180,
            _ => Rotation::Deg270,
        };
        Ok(Self {
            back_camera: b & 0x08 != 0,
            flip: b & 0x04 != 0,
            rotation,
        })
    }

    /// Encodes the value with the reserved bits zero.
    pub fn to_bytes(self) -> [u8; 1] {
        let r = match self.rotation {
            Rotation::Deg0 => 0,
            Rotation::Deg90 => 1,
            Rotation::Deg180 => 2,
            Rotation::Deg270 => 3,
        };
        [(u8::from(self.back_camera) << 3) | (u8::from(self.flip) << 2) | r]
    }
}

/// Playout delay limits (webrtc.org playout-delay), in units of 10 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlayoutDelay {
    /// Minimum delay, 12 bits.
    pub min: u16,
    /// Maximum delay, 12 bits.
    pub max: u16,
}

impl PlayoutDelay {
    /// Parses the 3-byte value.
    #[inline]
    pub fn parse(v: &[u8]) -> Result<Self, ExtError> {
        let [a, b, c] = exact::<3>(v)?;
        Ok(Self {
            min: (u16::from(a) << 4) | u16::from(b >> 4),
            max: (u16::from(b & 0x0f) << 8) | u16::from(c),
        })
    }

    /// Encodes the low 12 bits of each limit.
    pub fn to_bytes(self) -> [u8; 3] {
        let (min, max) = (self.min & 0x0fff, self.max & 0x0fff);
        [
            (min >> 4) as u8,
            ((min & 0x0f) << 4) as u8 | (max >> 8) as u8,
            max as u8,
        ]
    }
}

/// Parses an rtp-stream-id or repaired-rtp-stream-id (RFC 8852) value.
///
/// RFC 8851's `rid-id` grammar allows letters, digits, `-` and `_`; anything else is
/// rejected so later code can use the id as a map key and in logs without escaping.
#[inline]
pub fn parse_rtp_stream_id(v: &[u8]) -> Result<&str, ExtError> {
    validated(v, &RID_CHARS)
}

/// Parses an sdes:mid value (RFC 9143).
///
/// A MID is an SDP token (RFC 8866 `token-char`), which is wider than the RID grammar:
/// browsers send values such as `0` or `audio`, and some stacks use `.` or `~`.
#[inline]
pub fn parse_mid(v: &[u8]) -> Result<&str, ExtError> {
    validated(v, &TOKEN_CHARS)
}

#[inline]
/// Builds a byte-class table: letters, digits and `extra`.
///
/// A table lookup per byte instead of a search through the punctuation list keeps
/// mid parsing (every packet of a bundled publisher) to a few cycles.
const fn char_class(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
}

/// RFC 8851 `rid-id` characters.
static RID_CHARS: [bool; 256] = char_class(b"-_");
/// RFC 8866 `token-char` characters.
static TOKEN_CHARS: [bool; 256] = char_class(b"!#$%&'*+-.^_`{|}~");

#[inline]
fn validated<'v>(v: &'v [u8], class: &[bool; 256]) -> Result<&'v str, ExtError> {
    if v.is_empty() || !v.iter().all(|&c| class[usize::from(c)]) {
        return Err(ExtError::BadIdentifier);
    }
    // All bytes are ASCII, checked above.
    core::str::from_utf8(v).map_err(|_| ExtError::BadIdentifier)
}
