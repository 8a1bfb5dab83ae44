//! Writing STUN messages into caller-owned buffers.

use std::net::{IpAddr, SocketAddr};

use hmac::Mac;

use super::{
    attr, hmac_sha1, message_type, xor_pad, HmacSha1, StunClass, StunError, StunMethod,
    ATTR_HEADER_LEN, FINGERPRINT_XOR, FP_ATTR_LEN, HEADER_LEN, MAGIC_COOKIE, MAX_BODY_LEN,
    MAX_REASON_LEN, MAX_USERNAME_LEN, MI_ATTR_LEN, MI_LEN,
};

/// The ICE role attribute of a Binding request, with its tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRoleAttr {
    /// ICE-CONTROLLING: the sender is the controlling agent.
    Controlling(u64),
    /// ICE-CONTROLLED: the sender is the controlled agent.
    Controlled(u64),
}

/// Builds one STUN message into a caller-owned buffer, without allocating.
///
/// Attributes are appended in call order; the header's length field is kept current
/// after every call, and a call that fails (buffer too small, bad value) leaves what was
/// written so far untouched. MESSAGE-INTEGRITY and FINGERPRINT must come last, in that
/// order; nothing can be added after FINGERPRINT.
///
/// ```
/// # use weir_dataplane::ice::stun::{StunWriter, StunMessage};
/// # use weir_dataplane::ice::{StunClass, StunMethod};
/// let mut buf = [0u8; 128];
/// let mut w = StunWriter::new(&mut buf, StunClass::Request, StunMethod::BINDING, [7; 12])?;
/// w.username("sfu1:web1")?.priority(1)?.message_integrity(b"pwd")?.fingerprint()?;
/// let len = w.finish();
/// let msg = StunMessage::parse(&buf[..len])?;
/// msg.verify_integrity(b"pwd")?;
/// # Ok::<(), weir_dataplane::ice::StunError>(())
/// ```
#[derive(Debug)]
pub struct StunWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
    transaction_id: [u8; 12],
    sealed: bool,
}

impl<'b> StunWriter<'b> {
    /// Starts a message of `class` and `method` with the given transaction id.
    pub fn new(
        out: &'b mut [u8],
        class: StunClass,
        method: StunMethod,
        transaction_id: [u8; 12],
    ) -> Result<Self, StunError> {
        let available = out.len();
        let header = out
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(StunError::BufferTooSmall {
                needed: HEADER_LEN,
                available,
            })?;
        let (ty, rest) = header.split_at_mut(2);
        ty.copy_from_slice(&message_type(class, method).to_be_bytes());
        let (length, rest) = rest.split_at_mut(2);
        length.copy_from_slice(&[0, 0]);
        let (cookie, tid) = rest.split_at_mut(4);
        cookie.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        tid.copy_from_slice(&transaction_id);
        Ok(Self {
            buf: out,
            len: HEADER_LEN,
            transaction_id,
            sealed: false,
        })
    }

    /// Appends an attribute header and zeroed padding, updates the length field, and
    /// returns the value bytes to fill.
    fn attribute(&mut self, attr_type: u16, value_len: usize) -> Result<&mut [u8], StunError> {
        if self.sealed {
            return Err(StunError::AttributeAfterFingerprint { attr_type });
        }
        let attr_len = u16::try_from(value_len).map_err(|_| StunError::InvalidValue {
            attr_type,
            reason: "value longer than 65535 bytes",
        })?;
        let start = self.len;
        let end = start + ATTR_HEADER_LEN + ((value_len + 3) & !3);
        let body_len = end - HEADER_LEN;
        if body_len > MAX_BODY_LEN {
            return Err(StunError::InvalidValue {
                attr_type,
                reason: "message would exceed the 16-bit length field",
            });
        }
        let available = self.buf.len();
        if end > available {
            return Err(StunError::BufferTooSmall {
                needed: end,
                available,
            });
        }
        // body_len <= MAX_BODY_LEN was checked above, so it fits in 16 bits.
        let length_field = u16::try_from(body_len).unwrap_or(u16::MAX).to_be_bytes();
        let (header, attributes) = self.buf.split_at_mut(HEADER_LEN);
        if let Some(field) = header.get_mut(2..4) {
            field.copy_from_slice(&length_field);
        }
        let region = attributes
            .get_mut(start - HEADER_LEN..end - HEADER_LEN)
            .unwrap_or_default();
        region.fill(0);
        let (head, value) = region.split_at_mut(ATTR_HEADER_LEN.min(region.len()));
        if let Some(head) = head.first_chunk_mut::<ATTR_HEADER_LEN>() {
            let [t0, t1] = attr_type.to_be_bytes();
            let [l0, l1] = attr_len.to_be_bytes();
            *head = [t0, t1, l0, l1];
        }
        self.len = end;
        // Padding stays zero; the caller fills only the first `value_len` bytes.
        Ok(value.get_mut(..value_len).unwrap_or_default())
    }

    /// Appends USERNAME (at most [`MAX_USERNAME_LEN`] bytes).
    pub fn username(&mut self, username: &str) -> Result<&mut Self, StunError> {
        if username.len() > MAX_USERNAME_LEN {
            return Err(StunError::InvalidValue {
                attr_type: attr::USERNAME,
                reason: "USERNAME longer than 512 bytes",
            });
        }
        self.attribute(attr::USERNAME, username.len())?
            .copy_from_slice(username.as_bytes());
        Ok(self)
    }

    /// Appends SOFTWARE, a free-form description of the sender.
    pub fn software(&mut self, software: &str) -> Result<&mut Self, StunError> {
        self.attribute(attr::SOFTWARE, software.len())?
            .copy_from_slice(software.as_bytes());
        Ok(self)
    }

    /// Appends PRIORITY.
    pub fn priority(&mut self, priority: u32) -> Result<&mut Self, StunError> {
        self.attribute(attr::PRIORITY, 4)?
            .copy_from_slice(&priority.to_be_bytes());
        Ok(self)
    }

    /// Appends USE-CANDIDATE.
    pub fn use_candidate(&mut self) -> Result<&mut Self, StunError> {
        self.attribute(attr::USE_CANDIDATE, 0)?;
        Ok(self)
    }

    /// Appends ICE-CONTROLLING or ICE-CONTROLLED with its tie-breaker.
    pub fn ice_role(&mut self, role: IceRoleAttr) -> Result<&mut Self, StunError> {
        let (t, tie_breaker) = match role {
            IceRoleAttr::Controlling(tb) => (attr::ICE_CONTROLLING, tb),
            IceRoleAttr::Controlled(tb) => (attr::ICE_CONTROLLED, tb),
        };
        self.attribute(t, 8)?
            .copy_from_slice(&tie_breaker.to_be_bytes());
        Ok(self)
    }

    /// Appends XOR-MAPPED-ADDRESS for `addr`, IPv4 or IPv6 as given.
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<&mut Self, StunError> {
        let pad = xor_pad(&self.transaction_id);
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let (family, octets_len, octets) = match addr.ip() {
            IpAddr::V4(ip) => {
                let mut o = [0u8; 16];
                o[..4].copy_from_slice(&ip.octets());
                (0x01u8, 4usize, o)
            }
            IpAddr::V6(ip) => (0x02u8, 16usize, ip.octets()),
        };
        let value = self.attribute(attr::XOR_MAPPED_ADDRESS, 4 + octets_len)?;
        let (head, addr_bytes) = value.split_at_mut(4);
        head.copy_from_slice(&[0, family, (port >> 8) as u8, port as u8]);
        for ((out, o), p) in addr_bytes.iter_mut().zip(&octets).zip(&pad) {
            *out = o ^ p;
        }
        Ok(self)
    }

    /// Appends ERROR-CODE; `code` must be in 300..=699 and `reason` at most
    /// [`MAX_REASON_LEN`] bytes.
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<&mut Self, StunError> {
        let t = attr::ERROR_CODE;
        if !(300..=699).contains(&code) {
            return Err(StunError::InvalidValue {
                attr_type: t,
                reason: "error code outside 300..=699",
            });
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(StunError::InvalidValue {
                attr_type: t,
                reason: "reason phrase longer than 763 bytes",
            });
        }
        let value = self.attribute(t, 4 + reason.len())?;
        let (head, text) = value.split_at_mut(4);
        // Both fit in a byte: code / 100 is 3..=6 and code % 100 is 0..=99.
        head.copy_from_slice(&[0, 0, (code / 100) as u8, (code % 100) as u8]);
        text.copy_from_slice(reason.as_bytes());
        Ok(self)
    }

    /// Appends MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over the message so far, the length
    /// field already counting this attribute.
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<&mut Self, StunError> {
        self.message_integrity_with(hmac_sha1(key))
    }

    /// [`Self::message_integrity`] with a prepared key.
    pub(crate) fn message_integrity_with(
        &mut self,
        mut mac: HmacSha1,
    ) -> Result<&mut Self, StunError> {
        let covered_len = self.len;
        // Reserving the attribute first sets the length field the HMAC must cover.
        self.attribute(attr::MESSAGE_INTEGRITY, MI_LEN)?;
        let (covered, rest) = self.buf.split_at_mut(covered_len);
        mac.update(covered);
        let tag = mac.finalize().into_bytes();
        if let Some(value) = rest.get_mut(ATTR_HEADER_LEN..MI_ATTR_LEN) {
            value.copy_from_slice(&tag);
        }
        Ok(self)
    }

    /// Appends FINGERPRINT, which seals the message.
    pub fn fingerprint(&mut self) -> Result<&mut Self, StunError> {
        let covered_len = self.len;
        self.attribute(attr::FINGERPRINT, 4)?;
        let (covered, rest) = self.buf.split_at_mut(covered_len);
        let crc = crc32fast::hash(covered) ^ FINGERPRINT_XOR;
        if let Some(value) = rest.get_mut(ATTR_HEADER_LEN..FP_ATTR_LEN) {
            value.copy_from_slice(&crc.to_be_bytes());
        }
        self.sealed = true;
        Ok(self)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: the header is written on construction.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Ends the message and returns its length; the message is `out[..len]`.
    pub fn finish(self) -> usize {
        self.len
    }
}

/// Writes a Binding success response: XOR-MAPPED-ADDRESS (the address the request came
/// from), MESSAGE-INTEGRITY with `integrity_key` and FINGERPRINT. Returns its length.
///
/// A buffer of [`BINDING_SUCCESS_V6_LEN`](super::BINDING_SUCCESS_V6_LEN) bytes always
/// suffices.
pub fn write_binding_success(
    out: &mut [u8],
    transaction_id: [u8; 12],
    mapped: SocketAddr,
    integrity_key: &[u8],
) -> Result<usize, StunError> {
    write_binding_success_with(out, transaction_id, mapped, hmac_sha1(integrity_key))
}

pub(crate) fn write_binding_success_with(
    out: &mut [u8],
    transaction_id: [u8; 12],
    mapped: SocketAddr,
    mac: HmacSha1,
) -> Result<usize, StunError> {
    let mut w = StunWriter::new(
        out,
        StunClass::SuccessResponse,
        StunMethod::BINDING,
        transaction_id,
    )?;
    w.xor_mapped_address(mapped)?
        .message_integrity_with(mac)?
        .fingerprint()?;
    Ok(w.finish())
}

/// Writes a Binding error response with ERROR-CODE, MESSAGE-INTEGRITY and FINGERPRINT.
/// Returns its length.
pub fn write_binding_error(
    out: &mut [u8],
    transaction_id: [u8; 12],
    code: u16,
    reason: &str,
    integrity_key: &[u8],
) -> Result<usize, StunError> {
    write_binding_error_with(out, transaction_id, code, reason, hmac_sha1(integrity_key))
}

pub(crate) fn write_binding_error_with(
    out: &mut [u8],
    transaction_id: [u8; 12],
    code: u16,
    reason: &str,
    mac: HmacSha1,
) -> Result<usize, StunError> {
    let mut w = StunWriter::new(
        out,
        StunClass::ErrorResponse,
        StunMethod::BINDING,
        transaction_id,
    )?;
    w.error_code(code, reason)?
        .message_integrity_with(mac)?
        .fingerprint()?;
    Ok(w.finish())
}

/// Writes an ICE connectivity check: a Binding request with USERNAME, PRIORITY,
/// USE-CANDIDATE when `use_candidate`, the role attribute, MESSAGE-INTEGRITY with
/// `integrity_key` (the receiver's password) and FINGERPRINT. Returns its length.
///
/// `username` is `"<receiver ufrag>:<sender ufrag>"`.
pub fn write_binding_request(
    out: &mut [u8],
    transaction_id: [u8; 12],
    username: &str,
    priority: u32,
    use_candidate: bool,
    role: IceRoleAttr,
    integrity_key: &[u8],
) -> Result<usize, StunError> {
    let mut w = StunWriter::new(out, StunClass::Request, StunMethod::BINDING, transaction_id)?;
    w.username(username)?.priority(priority)?.ice_role(role)?;
    if use_candidate {
        w.use_candidate()?;
    }
    w.message_integrity(integrity_key)?.fingerprint()?;
    Ok(w.finish())
}
