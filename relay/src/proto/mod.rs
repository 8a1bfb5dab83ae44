//! The relay's wire protocol, with no IO: framed control messages for the
//! one bidirectional QUIC stream ([`control`]), the compact headers of
//! RTP and RTCP-feedback datagrams ([`datagram`]), several of them in one
//! QUIC datagram ([`bundle`]), and the frames of a relayed data channel's
//! own stream ([`data`]).
//!
//! Every parser returns a `Result`; nothing here panics on bytes from the
//! network (`relay/fuzz` and the property tests check it).
pub mod bundle;
pub mod control;
pub mod data;
pub mod datagram;

/// The protocol version this build speaks. A peer announcing another one
/// is refused in the hello: frames of different versions are not mixed.
/// Version 2 added SVC facts to RTP datagrams (flag 0x40).
pub const PROTOCOL_VERSION: u16 = 2;

/// Identifies a relayed track on one connection, chosen by the origin.
pub type RelayTrackId = u32;

/// A malformed or unexpected frame or datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// Fewer bytes than the structure needs.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// A message or datagram type this version does not know.
    #[error("unknown {what} type {value}")]
    UnknownType {
        /// Which type field.
        what: &'static str,
        /// Its value.
        value: u8,
    },
    /// A string field that is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A field out of its range.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Bytes left after a complete message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// The message does not fit one frame (or the caller's buffer).
    #[error("too large: {0}")]
    TooLarge(&'static str),
}

/// Reads big-endian fields from a byte slice without panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ProtoError> {
        if self.buf.len() < n {
            return Err(ProtoError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, ProtoError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, ProtoError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, ProtoError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, ProtoError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A string with a u16 length prefix.
    pub(crate) fn str(&mut self, what: &'static str) -> Result<String, ProtoError> {
        let n = self.u16(what)?;
        let b = self.take(usize::from(n), what)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| ProtoError::NotUtf8(what))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn finish(&self) -> Result<(), ProtoError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtoError::Trailing(self.buf.len()))
        }
    }
}

/// Appends a string with a u16 length prefix.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str, what: &'static str) -> Result<(), ProtoError> {
    let n = u16::try_from(s.len()).map_err(|_| ProtoError::TooLarge(what))?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}
