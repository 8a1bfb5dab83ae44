//! The subset of STUN (RFC 8489, formerly RFC 5389) that ICE connectivity checks use.
//!
//! [`StunMessage::parse`] validates the header and every attribute's framing in one pass
//! and returns a borrowed view with the ICE attributes already decoded, so later code never
//! touches unparsed bytes and nothing is allocated. [`StunWriter`] builds messages into a
//! caller-owned buffer, again without allocating.
//!
//! Only short-term credentials are supported: the MESSAGE-INTEGRITY key is the ICE
//! password as bytes. ICE passwords are restricted to `ice-char`s (ASCII letters, digits,
//! `+` and `/`), for which OpaqueString/SASLprep preparation is the identity, so no
//! preparation step is needed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The fixed value in bytes 4..8 of every RFC 5389+ STUN message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header: type, length, magic cookie, transaction id.
pub const HEADER_LEN: usize = 20;
/// Longest USERNAME value RFC 8489 §14.3 allows, in bytes ("less than 513 bytes").
pub const MAX_USERNAME_LEN: usize = 512;
/// Longest ERROR-CODE reason phrase RFC 8489 §14.8 allows, in bytes.
pub const MAX_REASON_LEN: usize = 763;
/// Size of a Binding success response for an IPv4 mapped address, as written by
/// [`write_binding_success`].
pub const BINDING_SUCCESS_V4_LEN: usize = HEADER_LEN + 12 + MI_ATTR_LEN + FP_ATTR_LEN;
/// Size of a Binding success response for an IPv6 mapped address, as written by
/// [`write_binding_success`]. An output buffer of this size always suffices.
pub const BINDING_SUCCESS_V6_LEN: usize = HEADER_LEN + 24 + MI_ATTR_LEN + FP_ATTR_LEN;

/// XORed into the CRC-32 so that a FINGERPRINT never matches a CRC another protocol
/// sharing the port might carry (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554e;
const ATTR_HEADER_LEN: usize = 4;
const MI_LEN: usize = 20;
const MI_ATTR_LEN: usize = ATTR_HEADER_LEN + MI_LEN;
const FP_ATTR_LEN: usize = ATTR_HEADER_LEN + 4;
/// The length field is 16 bits, so no message body can be longer than this.
const MAX_BODY_LEN: usize = u16::MAX as usize & !3;

/// Attribute types (RFC 8489 §18.3, RFC 8445 §16.1).
pub mod attr {
    /// MAPPED-ADDRESS; known so that it is not reported as unknown.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// REALM; known so that it is not reported as unknown.
    pub const REALM: u16 = 0x0014;
    /// NONCE; known so that it is not reported as unknown.
    pub const NONCE: u16 = 0x0015;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (ICE).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (ICE).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (ICE).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (ICE).
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// Why a STUN message was rejected or could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Fewer bytes than a STUN header.
    #[error("STUN message too short: {len} bytes, the header alone is 20")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The two most significant bits of the message type are not zero.
    #[error("not a STUN message: the two top bits of the message type are not zero")]
    NotStun,
    /// Bytes 4..8 are not [`MAGIC_COOKIE`] (an RFC 3489 message or another protocol).
    #[error("not a STUN message: magic cookie mismatch")]
    BadMagicCookie,
    /// The header's length field is not a multiple of 4.
    #[error("STUN message length {length} is not a multiple of 4")]
    UnalignedLength {
        /// The header's length field.
        length: usize,
    },
    /// The header's length field points past the end of the buffer.
    #[error("STUN message length {length} exceeds the {available} bytes after the header")]
    Truncated {
        /// The header's length field.
        length: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// An attribute (with its padding) runs past the end of the message.
    #[error("STUN attribute 0x{attr_type:04x} at offset {offset} overruns the message")]
    AttributeOverrun {
        /// The attribute type.
        attr_type: u16,
        /// Offset of the attribute header from the start of the message.
        offset: usize,
    },
    /// An attribute this codec understands has a malformed value.
    #[error("STUN attribute 0x{attr_type:04x} is malformed: {reason}")]
    InvalidAttribute {
        /// The attribute type.
        attr_type: u16,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An attribute follows FINGERPRINT, which must be the last attribute.
    #[error("STUN attribute 0x{attr_type:04x} follows FINGERPRINT, which must be last")]
    AttributeAfterFingerprint {
        /// The attribute type.
        attr_type: u16,
    },
    /// [`StunMessage::verify_fingerprint`] found no FINGERPRINT.
    #[error("STUN message has no FINGERPRINT attribute")]
    MissingFingerprint,
    /// The FINGERPRINT does not match the message.
    #[error("STUN fingerprint check failed")]
    FingerprintMismatch,
    /// [`StunMessage::verify_integrity`] found no MESSAGE-INTEGRITY.
    #[error("STUN message has no MESSAGE-INTEGRITY attribute")]
    MissingIntegrity,
    /// The MESSAGE-INTEGRITY HMAC does not match the message and key.
    #[error("STUN message integrity check failed")]
    IntegrityMismatch,
    /// The output buffer cannot hold the message being written.
    #[error("output buffer too small for STUN message: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes the message needs so far.
        needed: usize,
        /// Size of the output buffer.
        available: usize,
    },
    /// A value handed to the writer is outside what the attribute can carry.
    #[error("cannot write STUN attribute 0x{attr_type:04x}: {reason}")]
    InvalidValue {
        /// The attribute type.
        attr_type: u16,
        /// What is wrong with the value.
        reason: &'static str,
    },
}

/// The class of a STUN message (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StunClass {
    /// A request; expects a response.
    Request,
    /// An indication; no response. ICE keepalives are Binding indications.
    Indication,
    /// A success response.
    SuccessResponse,
    /// An error response, carrying ERROR-CODE.
    ErrorResponse,
}

impl StunClass {
    fn from_bits(bits: u16) -> Self {
        match bits & 0b11 {
            0b00 => Self::Request,
            0b01 => Self::Indication,
            0b10 => Self::SuccessResponse,
            _ => Self::ErrorResponse,
        }
    }

    fn bits(self) -> u16 {
        match self {
            Self::Request => 0b00,
            Self::Indication => 0b01,
            Self::SuccessResponse => 0b10,
            Self::ErrorResponse => 0b11,
        }
    }
}

/// A STUN method: a 12-bit number. ICE only uses [`StunMethod::BINDING`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StunMethod(u16);

impl StunMethod {
    /// The Binding method (0x001).
    pub const BINDING: Self = Self(0x001);

    /// A method from its number; `None` if it does not fit in 12 bits.
    pub const fn new(value: u16) -> Option<Self> {
        if value <= 0x0FFF {
            Some(Self(value))
        } else {
            None
        }
    }

    /// The method number.
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// The 16-bit message type interleaves the class bits C1 C0 into the method bits
/// M11..M0 as `M11..M7 C1 M6..M4 C0 M3..M0` (RFC 8489 §5).
fn message_type(class: StunClass, method: StunMethod) -> u16 {
    let m = method.0;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

fn split_message_type(t: u16) -> (StunClass, StunMethod) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = ((t >> 4) & 1) | ((t >> 7) & 2);
    (StunClass::from_bits(class), StunMethod(method))
}

/// A decoded ERROR-CODE attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// The error code, 300..=699 (e.g. 487 Role Conflict).
    pub code: u16,
    /// The reason phrase, meant for humans.
    pub reason: &'a str,
}

/// ERROR-CODE 400: malformed request.
pub const ERROR_BAD_REQUEST: u16 = 400;
/// ERROR-CODE 401: the request failed authentication.
pub const ERROR_UNAUTHENTICATED: u16 = 401;
/// ERROR-CODE 487: both agents claim the same ICE role (RFC 8445 §7.3.1.1).
pub const ERROR_ROLE_CONFLICT: u16 = 487;

/// Whether a datagram's first byte falls in STUN's range of the RFC 7983 demultiplexing
/// table (0..=3), as opposed to DTLS (20..=63) or RTP/RTCP (128..=191).
///
/// This is the cheap first test of the per-core driver; [`is_stun`] adds the header
/// checks.
pub fn is_stun_first_byte(first: u8) -> bool {
    first <= 3
}

/// Whether `packet` starts with a plausible STUN header: at least 20 bytes, the two top
/// bits zero, the magic cookie in place and a length that is a multiple of 4.
///
/// It looks at the first 20 bytes only; [`StunMessage::parse`] does the full validation.
pub fn is_stun(packet: &[u8]) -> bool {
    let Some(header) = packet.first_chunk::<HEADER_LEN>() else {
        return false;
    };
    let length = u16::from_be_bytes([header[2], header[3]]);
    is_stun_first_byte(header[0])
        && length % 4 == 0
        && u32::from_be_bytes([header[4], header[5], header[6], header[7]]) == MAGIC_COOKIE
}

/// The part of an ICE USERNAME before the colon.
///
/// In a connectivity check the USERNAME is `"<receiver ufrag>:<sender ufrag>"`, so for a
/// check arriving at the SFU this is the SFU's own ufrag: the key the per-core driver uses
/// to route the packet to its transport in O(1). `None` when there is no colon or the part
/// before it is empty.
pub fn local_ufrag(username: &str) -> Option<&str> {
    match username.split_once(':') {
        Some((local, _)) if !local.is_empty() => Some(local),
        _ => None,
    }
}

/// A validated STUN message borrowing its bytes.
///
/// Construction by [`StunMessage::parse`] guarantees the framing is sound and the ICE
/// attributes are well formed; accessors never fail and never panic. Of repeated
/// attributes only the first is kept (RFC 8489 §14). Attributes after MESSAGE-INTEGRITY
/// other than FINGERPRINT are skipped, because the HMAC does not cover them and an
/// on-path attacker could append them (RFC 8489 §14.5).
#[derive(Debug, Clone)]
pub struct StunMessage<'a> {
    /// Exactly the message: header plus `length` bytes of attributes.
    raw: &'a [u8],
    header: [u8; HEADER_LEN],
    class: StunClass,
    method: StunMethod,
    transaction_id: [u8; 12],
    username: Option<&'a str>,
    priority: Option<u32>,
    use_candidate: bool,
    ice_controlling: Option<u64>,
    ice_controlled: Option<u64>,
    xor_mapped_address: Option<SocketAddr>,
    error_code: Option<ErrorCode<'a>>,
    /// Offset of the MESSAGE-INTEGRITY attribute header and its HMAC.
    integrity: Option<(usize, [u8; MI_LEN])>,
    /// Offset of the FINGERPRINT attribute header and its value.
    fingerprint: Option<(usize, u32)>,
    unknown_comprehension_required: Option<u16>,
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(*b.first_chunk::<4>()?))
}

fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(*b.first_chunk::<8>()?))
}

fn invalid(attr_type: u16, reason: &'static str) -> StunError {
    StunError::InvalidAttribute { attr_type, reason }
}

impl<'a> StunMessage<'a> {
    /// Validates `buf` as a STUN message and returns a view of it.
    ///
    /// Checks the two zero top bits, the magic cookie, that the length is a multiple of 4
    /// and fits in `buf`, that every attribute with its padding stays inside the message,
    /// that FINGERPRINT (if any) is last, and the values of the attributes ICE uses. Bytes
    /// of `buf` after the message are not part of the view. It neither allocates nor
    /// checks FINGERPRINT or MESSAGE-INTEGRITY: see [`Self::verify_fingerprint`] and
    /// [`Self::verify_integrity`].
    pub fn parse(buf: &'a [u8]) -> Result<Self, StunError> {
        let header = *buf
            .first_chunk::<HEADER_LEN>()
            .ok_or(StunError::TooShort { len: buf.len() })?;
        let msg_type = u16::from_be_bytes([header[0], header[1]]);
        if msg_type & 0xC000 != 0 {
            return Err(StunError::NotStun);
        }
        let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != MAGIC_COOKIE {
            return Err(StunError::BadMagicCookie);
        }
        if length % 4 != 0 {
            return Err(StunError::UnalignedLength { length });
        }
        let end = HEADER_LEN + length;
        let raw = buf.get(..end).ok_or(StunError::Truncated {
            length,
            available: buf.len() - HEADER_LEN,
        })?;
        let (class, method) = split_message_type(msg_type);
        let mut transaction_id = [0u8; 12];
        if let Some(tid) = header.last_chunk::<12>() {
            transaction_id = *tid;
        }

        let mut msg = StunMessage {
            raw,
            header,
            class,
            method,
            transaction_id,
            username: None,
            priority: None,
            use_candidate: false,
            ice_controlling: None,
            ice_controlled: None,
            xor_mapped_address: None,
            error_code: None,
            integrity: None,
            fingerprint: None,
            unknown_comprehension_required: None,
        };

        let mut offset = HEADER_LEN;
        while offset < end {
            let attr_header = raw
                .get(offset..offset + ATTR_HEADER_LEN)
                .and_then(|h| h.first_chunk::<ATTR_HEADER_LEN>())
                .ok_or(StunError::AttributeOverrun {
                    attr_type: 0,
                    offset,
                })?;
            let attr_type = u16::from_be_bytes([attr_header[0], attr_header[1]]);
            let attr_len = usize::from(u16::from_be_bytes([attr_header[2], attr_header[3]]));
            let value_start = offset + ATTR_HEADER_LEN;
            let next = value_start + ((attr_len + 3) & !3);
            if next > end {
                return Err(StunError::AttributeOverrun { attr_type, offset });
            }
            let value = raw
                .get(value_start..value_start + attr_len)
                .ok_or(StunError::AttributeOverrun { attr_type, offset })?;
            if msg.fingerprint.is_some() {
                return Err(StunError::AttributeAfterFingerprint { attr_type });
            }
            msg.record_attribute(attr_type, offset, value)?;
            offset = next;
        }
        Ok(msg)
    }

    fn record_attribute(
        &mut self,
        attr_type: u16,
        offset: usize,
        value: &'a [u8],
    ) -> Result<(), StunError> {
        match attr_type {
            attr::FINGERPRINT => {
                let crc = match value.len() {
                    4 => be_u32(value),
                    _ => None,
                }
                .ok_or(invalid(attr_type, "FINGERPRINT must be 4 bytes"))?;
                self.fingerprint = Some((offset, crc));
            }
            // Not covered by the HMAC, so not trusted (RFC 8489 §14.5).
            _ if self.integrity.is_some() => {}
            attr::MESSAGE_INTEGRITY => {
                let mac: [u8; MI_LEN] = value
                    .try_into()
                    .map_err(|_| invalid(attr_type, "MESSAGE-INTEGRITY must be 20 bytes"))?;
                self.integrity = Some((offset, mac));
            }
            attr::USERNAME if self.username.is_none() => {
                if value.len() > MAX_USERNAME_LEN {
                    return Err(invalid(attr_type, "USERNAME longer than 512 bytes"));
                }
                let username = core::str::from_utf8(value)
                    .map_err(|_| invalid(attr_type, "USERNAME is not valid UTF-8"))?;
                self.username = Some(username);
            }
            attr::PRIORITY if self.priority.is_none() => {
                let priority = match value.len() {
                    4 => be_u32(value),
                    _ => None,
                };
                self.priority =
                    Some(priority.ok_or(invalid(attr_type, "PRIORITY must be 4 bytes"))?);
            }
            attr::USE_CANDIDATE => {
                if !value.is_empty() {
                    return Err(invalid(attr_type, "USE-CANDIDATE must be empty"));
                }
                self.use_candidate = true;
            }
            attr::ICE_CONTROLLING if self.ice_controlling.is_none() => {
                let tie_breaker = match value.len() {
                    8 => be_u64(value),
                    _ => None,
                };
                self.ice_controlling =
                    Some(tie_breaker.ok_or(invalid(attr_type, "ICE-CONTROLLING must be 8 bytes"))?);
            }
            attr::ICE_CONTROLLED if self.ice_controlled.is_none() => {
                let tie_breaker = match value.len() {
                    8 => be_u64(value),
                    _ => None,
                };
                self.ice_controlled =
                    Some(tie_breaker.ok_or(invalid(attr_type, "ICE-CONTROLLED must be 8 bytes"))?);
            }
            attr::XOR_MAPPED_ADDRESS if self.xor_mapped_address.is_none() => {
                self.xor_mapped_address = Some(decode_xor_address(value, &self.transaction_id)?);
            }
            attr::ERROR_CODE if self.error_code.is_none() => {
                self.error_code = Some(decode_error_code(value)?);
            }
            attr::MAPPED_ADDRESS
            | attr::USERNAME
            | attr::PRIORITY
            | attr::ICE_CONTROLLING
            | attr::ICE_CONTROLLED
            | attr::XOR_MAPPED_ADDRESS
            | attr::ERROR_CODE
            | attr::REALM
            | attr::NONCE => {}
            // 0x0000..=0x7FFF are comprehension-required: a receiver that does not know one
            // must reject a request carrying it (RFC 8489 §14). Whether to reject is the
            // caller's decision; the parser only reports the first one.
            t if t < 0x8000 && self.unknown_comprehension_required.is_none() => {
                self.unknown_comprehension_required = Some(t);
            }
            _ => {}
        }
        Ok(())
    }

    /// The message class.
    pub fn class(&self) -> StunClass {
        self.class
    }

    /// The message method.
    pub fn method(&self) -> StunMethod {
        self.method
    }

    /// Whether this is a Binding request (an ICE connectivity check).
    pub fn is_binding_request(&self) -> bool {
        self.class == StunClass::Request && self.method == StunMethod::BINDING
    }

    /// The 96-bit transaction id; a response echoes the request's.
    pub fn transaction_id(&self) -> [u8; 12] {
        self.transaction_id
    }

    /// The message bytes: header and attributes, without any trailing bytes of the input.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// USERNAME, validated as UTF-8 and at most [`MAX_USERNAME_LEN`] bytes.
    pub fn username(&self) -> Option<&'a str> {
        self.username
    }

    /// The part of USERNAME before the colon: for a check received by the SFU, the SFU's
    /// ufrag. See [`local_ufrag`].
    pub fn local_ufrag(&self) -> Option<&'a str> {
        self.username.and_then(local_ufrag)
    }

    /// PRIORITY: the priority the sender would give a peer-reflexive candidate.
    pub fn priority(&self) -> Option<u32> {
        self.priority
    }

    /// Whether USE-CANDIDATE is present: the controlling agent nominates this pair.
    pub fn use_candidate(&self) -> bool {
        self.use_candidate
    }

    /// The tie-breaker of ICE-CONTROLLING: the sender claims the controlling role.
    pub fn ice_controlling(&self) -> Option<u64> {
        self.ice_controlling
    }

    /// The tie-breaker of ICE-CONTROLLED: the sender claims the controlled role.
    pub fn ice_controlled(&self) -> Option<u64> {
        self.ice_controlled
    }

    /// XOR-MAPPED-ADDRESS, decoded (IPv4 or IPv6).
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped_address
    }

    /// ERROR-CODE, decoded.
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        self.error_code
    }

    /// Whether MESSAGE-INTEGRITY is present.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether FINGERPRINT is present (it is then the last attribute).
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// The first comprehension-required attribute type (0x0000..=0x7FFF) this codec does
    /// not know, before MESSAGE-INTEGRITY. A server should reject such a request.
    pub fn unknown_comprehension_required(&self) -> Option<u16> {
        self.unknown_comprehension_required
    }

    /// Checks FINGERPRINT: the CRC-32 of the message up to the FINGERPRINT attribute, XOR
    /// 0x5354554e. The length field already counts FINGERPRINT because it is last.
    pub fn verify_fingerprint(&self) -> Result<(), StunError> {
        let (offset, expected) = self.fingerprint.ok_or(StunError::MissingFingerprint)?;
        let covered = self
            .raw
            .get(..offset)
            .ok_or(StunError::MissingFingerprint)?;
        if crc32fast::hash(covered) ^ FINGERPRINT_XOR == expected {
            Ok(())
        } else {
            Err(StunError::FingerprintMismatch)
        }
    }

    /// Checks MESSAGE-INTEGRITY with `key` (for ICE: the receiver's password).
    ///
    /// The HMAC-SHA1 covers the message up to MESSAGE-INTEGRITY with the header's length
    /// field rewritten to end just after MESSAGE-INTEGRITY, as the sender computed it
    /// before adding any later attributes (RFC 8489 §14.5). The comparison is constant
    /// time.
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        self.verify_integrity_with(hmac_sha1(key))
    }

    /// [`Self::verify_integrity`] with a prepared key, so that an agent derives the HMAC
    /// pads from its password once rather than per packet.
    pub(crate) fn verify_integrity_with(&self, mut mac: HmacSha1) -> Result<(), StunError> {
        let (offset, tag) = self.integrity.ok_or(StunError::MissingIntegrity)?;
        let body = self
            .raw
            .get(HEADER_LEN..offset)
            .ok_or(StunError::MissingIntegrity)?;
        // `offset + MI_ATTR_LEN <= raw.len() <= HEADER_LEN + u16::MAX`, so this fits.
        let length = u16::try_from(offset + MI_ATTR_LEN - HEADER_LEN)
            .map_err(|_| StunError::IntegrityMismatch)?;
        let h = &self.header;
        mac.update(&[h[0], h[1]]);
        mac.update(&length.to_be_bytes());
        if let Some(rest) = h.last_chunk::<{ HEADER_LEN - 4 }>() {
            mac.update(rest);
        }
        mac.update(body);
        // `verify_slice` compares in constant time, so timing reveals nothing about how
        // much of a forged tag was right.
        mac.verify_slice(&tag)
            .map_err(|_| StunError::IntegrityMismatch)
    }
}

pub(crate) type HmacSha1 = Hmac<Sha1>;

/// An HMAC-SHA1 keyed with `key`.
pub(crate) fn hmac_sha1(key: &[u8]) -> HmacSha1 {
    // HMAC accepts keys of any length (long ones are hashed first), so this cannot fail.
    #[allow(clippy::expect_used)]
    <HmacSha1 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// The 16 bytes an address is XORed with: the magic cookie then the transaction id.
fn xor_pad(transaction_id: &[u8; 12]) -> [u8; 16] {
    let mut pad = [0u8; 16];
    let (cookie, tid) = pad.split_at_mut(4);
    cookie.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    tid.copy_from_slice(transaction_id);
    pad
}

fn decode_xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Result<SocketAddr, StunError> {
    let t = attr::XOR_MAPPED_ADDRESS;
    let pad = xor_pad(transaction_id);
    let (family, port) = match value {
        [_, family, p0, p1, ..] => (*family, u16::from_be_bytes([*p0, *p1])),
        _ => return Err(invalid(t, "XOR-MAPPED-ADDRESS shorter than 4 bytes")),
    };
    let port = port ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (family, value.len()) {
        (0x01, 8) => {
            let mut octets = [0u8; 4];
            for ((o, v), p) in octets.iter_mut().zip(&value[4..]).zip(&pad) {
                *o = v ^ p;
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        (0x02, 20) => {
            let mut octets = [0u8; 16];
            for ((o, v), p) in octets.iter_mut().zip(&value[4..]).zip(&pad) {
                *o = v ^ p;
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        (0x01 | 0x02, _) => {
            return Err(invalid(
                t,
                "XOR-MAPPED-ADDRESS length does not match family",
            ))
        }
        _ => {
            return Err(invalid(
                t,
                "XOR-MAPPED-ADDRESS has an unknown address family",
            ))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

fn decode_error_code(value: &[u8]) -> Result<ErrorCode<'_>, StunError> {
    let t = attr::ERROR_CODE;
    let (class, number, reason) = match value {
        [_, _, class, number, reason @ ..] => (class & 0x07, *number, reason),
        _ => return Err(invalid(t, "ERROR-CODE shorter than 4 bytes")),
    };
    if !(3..=6).contains(&class) || number > 99 {
        return Err(invalid(t, "ERROR-CODE outside 300..=699"));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(invalid(t, "ERROR-CODE reason phrase too long"));
    }
    let reason = core::str::from_utf8(reason)
        .map_err(|_| invalid(t, "ERROR-CODE reason phrase is not valid UTF-8"))?;
    Ok(ErrorCode {
        code: u16::from(class) * 100 + u16::from(number),
        reason,
    })
}

mod writer;

pub use writer::{
    write_binding_error, write_binding_request, write_binding_success, IceRoleAttr, StunWriter,
};
pub(crate) use writer::{write_binding_error_with, write_binding_success_with};

#[cfg(test)]
pub(crate) mod tests;
