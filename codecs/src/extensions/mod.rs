//! RTP header extension framing (RFC 8285): the one-byte (0xBEDE) and two-byte
//! (0x100X) forms, a writer into a caller buffer, in-place value rewrites, and
//! typed values for the extensions an SFU reads or rewrites.

mod values;
mod writer;

pub use values::{
    parse_mid, parse_rtp_stream_id, AbsSendTime, AudioLevel, PlayoutDelay, Rotation,
    TransportSequenceNumber, VideoOrientation,
};
pub use writer::{rewrite_in_place, ExtensionsWriter, WrittenBlock};

/// The Dependency Descriptor value parser lives with AV1, though any video codec
/// may carry it: `DependencyDescriptor::parse(ext.get(id)?, cached)`.
pub use crate::av1::dependency_descriptor::DependencyDescriptor;

/// The `a=extmap` URIs of the extensions this module understands.
pub mod uri {
    /// sdes:mid (RFC 9143).
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    /// rtp-stream-id (RFC 8852).
    pub const RTP_STREAM_ID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
    /// repaired-rtp-stream-id (RFC 8852).
    pub const REPAIRED_RTP_STREAM_ID: &str =
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
    /// Client-to-mixer audio level (RFC 6464).
    pub const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    /// abs-send-time.
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    /// Transport-wide sequence number.
    pub const TRANSPORT_WIDE_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    /// Video orientation (3GPP CVO).
    pub const VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";
    /// Playout delay.
    pub const PLAYOUT_DELAY: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
    /// AV1 Dependency Descriptor.
    pub const DEPENDENCY_DESCRIPTOR: &str =
        "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
}

use thiserror::Error;

/// Profile of the one-byte header form.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Profile of the two-byte header form with zero appbits; the low 4 bits carry appbits.
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Why an extension block or value is malformed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ExtError {
    /// The profile is neither 0xBEDE nor 0x100X.
    #[error("unsupported extension profile {0:#06x}")]
    UnsupportedProfile(u16),
    /// An element's length runs past the end of the block.
    #[error("extension element {id} truncated")]
    Truncated {
        /// The element's id.
        id: u8,
    },
    /// An id outside the range of the chosen form (1..=14 one-byte, 1..=255 two-byte).
    #[error("extension id {0} not valid in this form")]
    BadId(u8),
    /// A value too long (or empty) for the chosen form.
    #[error("extension value of {0} bytes does not fit this form")]
    BadLength(usize),
    /// The caller's buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A typed value has the wrong size.
    #[error("extension value has {got} bytes, expected {expected}")]
    WrongSize {
        /// Bytes found.
        got: usize,
        /// Bytes the format defines.
        expected: usize,
    },
    /// A MID or RID has characters outside its grammar, or is empty.
    #[error("invalid identifier")]
    BadIdentifier,
    /// The RTP packet has no extension, or no element with this id.
    #[error("extension {0} not present")]
    NotPresent(u8),
    /// The RTP packet itself is malformed.
    #[error(transparent)]
    Rtp(#[from] crate::rtp::RtpError),
}

/// Which of the two RFC 8285 forms a block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtForm {
    /// 0xBEDE: 4-bit id, 4-bit length minus one.
    OneByte,
    /// 0x100X: 8-bit id, 8-bit length; the 4 appbits are kept.
    TwoByte {
        /// The application bits from the low nibble of the profile.
        appbits: u8,
    },
}

impl ExtForm {
    /// Classifies an extension profile.
    #[inline]
    pub fn from_profile(profile: u16) -> Result<Self, ExtError> {
        match profile {
            ONE_BYTE_PROFILE => Ok(Self::OneByte),
            p if p & 0xfff0 == TWO_BYTE_PROFILE => Ok(Self::TwoByte {
                appbits: (p & 0x0f) as u8,
            }),
            p => Err(ExtError::UnsupportedProfile(p)),
        }
    }

    /// The profile value for this form.
    pub fn profile(self) -> u16 {
        match self {
            Self::OneByte => ONE_BYTE_PROFILE,
            Self::TwoByte { appbits } => TWO_BYTE_PROFILE | u16::from(appbits & 0x0f),
        }
    }
}

/// A validated extension block: every element lies within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extensions<'a> {
    form: ExtForm,
    block: &'a [u8],
}

impl<'a> Extensions<'a> {
    /// Validates `block` (the bytes after the 4-byte extension header) for `profile`.
    #[inline]
    pub fn parse(profile: u16, block: &'a [u8]) -> Result<Self, ExtError> {
        let form = ExtForm::from_profile(profile)?;
        let mut it = RawIter {
            form,
            block,
            pos: 0,
        };
        while let Some(e) = it.next_element() {
            e?;
        }
        Ok(Self { form, block })
    }

    /// The extensions of a parsed RTP packet; empty when it has none.
    #[inline]
    pub fn from_header(header: &crate::rtp::RtpHeader<'a>) -> Result<Self, ExtError> {
        match header.extension_profile() {
            Some(p) => Self::parse(p, header.extension_block()),
            None => Ok(Self::empty()),
        }
    }

    /// An empty set, for packets without an extension.
    #[inline]
    pub fn empty() -> Self {
        Self {
            form: ExtForm::OneByte,
            block: &[],
        }
    }

    /// The form of the block.
    #[inline]
    pub fn form(&self) -> ExtForm {
        self.form
    }

    /// The value of the first element with `id`.
    #[inline]
    pub fn get(&self, id: u8) -> Option<&'a [u8]> {
        self.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    /// The elements as `(id, value)`, in order, padding skipped.
    #[inline]
    pub fn iter(&self) -> ExtIter<'a> {
        ExtIter(RawIter {
            form: self.form,
            block: self.block,
            pos: 0,
        })
    }

    /// Byte range of the first element with `id`'s value within the block.
    pub(crate) fn value_range(&self, id: u8) -> Option<core::ops::Range<usize>> {
        let mut raw = RawIter {
            form: self.form,
            block: self.block,
            pos: 0,
        };
        while let Some(Ok((i, start, len))) = raw.next_element() {
            if i == id {
                return Some(start..start + len);
            }
        }
        None
    }
}

/// Iterator over the `(id, value)` elements of a validated block.
#[derive(Debug, Clone)]
pub struct ExtIter<'a>(RawIter<'a>);

impl<'a> Iterator for ExtIter<'a> {
    type Item = (u8, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        // The block was validated in `Extensions::parse`, so errors cannot occur here.
        match self.0.next_element()? {
            Ok((id, start, len)) => self.0.block.get(start..start + len).map(|v| (id, v)),
            Err(_) => None,
        }
    }
}

/// Walks elements and yields `(id, value_start, value_len)`.
#[derive(Debug, Clone)]
struct RawIter<'a> {
    form: ExtForm,
    block: &'a [u8],
    pos: usize,
}

impl RawIter<'_> {
    #[inline]
    fn next_element(&mut self) -> Option<Result<(u8, usize, usize), ExtError>> {
        loop {
            let b = *self.block.get(self.pos)?;
            match self.form {
                ExtForm::OneByte => {
                    let id = b >> 4;
                    if id == 0 {
                        // A padding byte; RFC 8285 §4.2 tells receivers to skip it.
                        self.pos += 1;
                        continue;
                    }
                    if id == 15 {
                        // Reserved: RFC 8285 says stop parsing the block here.
                        self.pos = self.block.len();
                        return None;
                    }
                    let len = usize::from(b & 0x0f) + 1;
                    let start = self.pos + 1;
                    if start + len > self.block.len() {
                        self.pos = self.block.len();
                        return Some(Err(ExtError::Truncated { id }));
                    }
                    self.pos = start + len;
                    return Some(Ok((id, start, len)));
                }
                ExtForm::TwoByte { .. } => {
                    if b == 0 {
                        self.pos += 1;
                        continue;
                    }
                    let Some(&len) = self.block.get(self.pos + 1) else {
                        self.pos = self.block.len();
                        return Some(Err(ExtError::Truncated { id: b }));
                    };
                    let len = usize::from(len);
                    let start = self.pos + 2;
                    if start + len > self.block.len() {
                        self.pos = self.block.len();
                        return Some(Err(ExtError::Truncated { id: b }));
                    }
                    self.pos = start + len;
                    return Some(Ok((b, start, len)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
