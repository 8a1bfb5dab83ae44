//! Zero-copy view of the RTP fixed header (RFC 3550 §5.1) and in-place setters
//! for the fields a forwarder rewrites.
//!
//! The view borrows the packet and records offsets only, so parsing costs a few
//! comparisons and never allocates.

use thiserror::Error;

/// Length of the RTP fixed header without CSRCs or extension.
pub const FIXED_HEADER_LEN: usize = 12;

/// Why a buffer is not a well-formed RTP packet.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("packet shorter than the RTP fixed header ({0} bytes)")]
    TooShort(usize),
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The CSRC list runs past the end of the packet.
    #[error("CSRC list truncated")]
    CsrcTruncated,
    /// The header extension runs past the end of the packet.
    #[error("header extension truncated")]
    ExtensionTruncated,
    /// The padding count is zero or larger than the payload.
    #[error("invalid padding length {0}")]
    BadPadding(u8),
}

/// A parsed, borrowed view of an RTP packet's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader<'a> {
    packet: &'a [u8],
    header_len: usize,
    /// Offset of the 4-byte extension header, if the X bit is set.
    ext_offset: Option<usize>,
    padding_len: u8,
}

impl<'a> RtpHeader<'a> {
    /// Parses and validates the header of `packet`.
    ///
    /// Every offset later exposed by the view is checked here, so the accessors
    /// cannot fail.
    #[inline]
    pub fn parse(packet: &'a [u8]) -> Result<Self, RtpError> {
        let [b0, ..] = *packet else {
            return Err(RtpError::TooShort(0));
        };
        if packet.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort(packet.len()));
        }
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let cc = usize::from(b0 & 0x0f);
        let mut header_len = FIXED_HEADER_LEN + 4 * cc;
        if packet.len() < header_len {
            return Err(RtpError::CsrcTruncated);
        }
        let mut ext_offset = None;
        if b0 & 0x10 != 0 {
            let words = packet
                .get(header_len + 2..header_len + 4)
                .ok_or(RtpError::ExtensionTruncated)?;
            let words = usize::from(u16::from_be_bytes([words[0], words[1]]));
            ext_offset = Some(header_len);
            header_len += 4 + 4 * words;
            if packet.len() < header_len {
                return Err(RtpError::ExtensionTruncated);
            }
        }
        let mut padding_len = 0;
        if b0 & 0x20 != 0 {
            // Non-empty: header_len >= 12 and packet.len() >= header_len.
            let last = packet[packet.len() - 1];
            if last == 0 || usize::from(last) > packet.len() - header_len {
                return Err(RtpError::BadPadding(last));
            }
            padding_len = last;
        }
        Ok(Self {
            packet,
            header_len,
            ext_offset,
            padding_len,
        })
    }

    /// The whole packet this view was parsed from.
    #[inline]
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// RTP version; always 2 for a parsed header.
    #[inline]
    pub fn version(&self) -> u8 {
        self.packet[0] >> 6
    }

    /// The P bit: the packet ends with padding.
    #[inline]
    pub fn has_padding(&self) -> bool {
        self.packet[0] & 0x20 != 0
    }

    /// The X bit: a header extension follows the CSRC list.
    #[inline]
    pub fn has_extension(&self) -> bool {
        self.ext_offset.is_some()
    }

    /// The M bit (for video: last packet of a frame).
    #[inline]
    pub fn marker(&self) -> bool {
        self.packet[1] & 0x80 != 0
    }

    /// The 7-bit payload type.
    #[inline]
    pub fn payload_type(&self) -> u8 {
        self.packet[1] & 0x7f
    }

    /// The 16-bit sequence number as sent; widen it with the stream's rollover count.
    #[inline]
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.packet[2], self.packet[3]])
    }

    /// The media timestamp.
    #[inline]
    pub fn timestamp(&self) -> u32 {
        be32(&self.packet[4..8])
    }

    /// The synchronization source.
    #[inline]
    pub fn ssrc(&self) -> u32 {
        be32(&self.packet[8..12])
    }

    /// Number of contributing sources in the CSRC list.
    #[inline]
    pub fn csrc_count(&self) -> u8 {
        self.packet[0] & 0x0f
    }

    /// The contributing sources, in order.
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        let end = FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count());
        self.packet[FIXED_HEADER_LEN..end].chunks_exact(4).map(be32)
    }

    /// The profile of the header extension (0xBEDE, 0x100X, …), if the X bit is set.
    #[inline]
    pub fn extension_profile(&self) -> Option<u16> {
        self.ext_offset
            .map(|o| u16::from_be_bytes([self.packet[o], self.packet[o + 1]]))
    }

    /// The extension data after the 4-byte extension header; empty without an extension.
    #[inline]
    pub fn extension_block(&self) -> &'a [u8] {
        match self.ext_offset {
            Some(o) => &self.packet[o + 4..self.header_len],
            None => &[],
        }
    }

    /// Byte offset of the extension block within the packet, if any.
    #[inline]
    pub fn extension_block_offset(&self) -> Option<usize> {
        self.ext_offset.map(|o| o + 4)
    }

    /// Offset of the payload: fixed header, CSRCs and extension.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Number of padding bytes at the end of the packet (0 without the P bit).
    #[inline]
    pub fn padding_len(&self) -> u8 {
        self.padding_len
    }

    /// The payload without the padding.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.packet[self.header_len..self.packet.len() - usize::from(self.padding_len)]
    }
}

#[inline]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Returns the fixed header of `buf` for writing, after checking its length and version.
fn fixed_mut(buf: &mut [u8]) -> Result<&mut [u8; FIXED_HEADER_LEN], RtpError> {
    let len = buf.len();
    let fixed: &mut [u8; FIXED_HEADER_LEN] = buf
        .get_mut(..FIXED_HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(RtpError::TooShort(len))?;
    if fixed[0] >> 6 != 2 {
        return Err(RtpError::BadVersion(fixed[0] >> 6));
    }
    Ok(fixed)
}

/// Overwrites the SSRC of the RTP packet in `buf`.
pub fn write_ssrc(buf: &mut [u8], ssrc: u32) -> Result<(), RtpError> {
    fixed_mut(buf)?[8..12].copy_from_slice(&ssrc.to_be_bytes());
    Ok(())
}

/// Overwrites the sequence number of the RTP packet in `buf`.
pub fn write_sequence_number(buf: &mut [u8], seq: u16) -> Result<(), RtpError> {
    fixed_mut(buf)?[2..4].copy_from_slice(&seq.to_be_bytes());
    Ok(())
}

/// Overwrites the timestamp of the RTP packet in `buf`.
pub fn write_timestamp(buf: &mut [u8], ts: u32) -> Result<(), RtpError> {
    fixed_mut(buf)?[4..8].copy_from_slice(&ts.to_be_bytes());
    Ok(())
}

/// Overwrites the payload type; only the low 7 bits of `pt` are used.
pub fn write_payload_type(buf: &mut [u8], pt: u8) -> Result<(), RtpError> {
    let f = fixed_mut(buf)?;
    f[1] = (f[1] & 0x80) | (pt & 0x7f);
    Ok(())
}

/// Sets or clears the marker bit.
pub fn write_marker(buf: &mut [u8], marker: bool) -> Result<(), RtpError> {
    let f = fixed_mut(buf)?;
    f[1] = (f[1] & 0x7f) | (u8::from(marker) << 7);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// V=2 P=1 X=1 CC=1, M=1 PT=96, seq 0x1234, ts, ssrc, one CSRC,
    /// one-byte extension with one word, 2 payload bytes, 2 padding bytes.
    fn sample() -> Vec<u8> {
        vec![
            0xb1, 0xe0, 0x12, 0x34, // V P X CC, M PT, seq
            0xde, 0xad, 0xbe, 0xef, // timestamp
            0x01, 0x02, 0x03, 0x04, // ssrc
            0xca, 0xfe, 0xba, 0xbe, // csrc
            0xbe, 0xde, 0x00, 0x01, // extension header, 1 word
            0x10, 0xff, 0x00, 0x00, // id 1, one byte 0xff, two padding bytes
            0xaa, 0xbb, // payload
            0x00, 0x02, // padding
        ]
    }

    #[test]
    fn parses_all_fields() {
        let p = sample();
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!(h.version(), 2);
        assert!(h.has_padding() && h.has_extension() && h.marker());
        assert_eq!(h.payload_type(), 96);
        assert_eq!(h.sequence_number(), 0x1234);
        assert_eq!(h.timestamp(), 0xdeadbeef);
        assert_eq!(h.ssrc(), 0x01020304);
        assert_eq!(h.csrcs().collect::<Vec<_>>(), vec![0xcafebabe]);
        assert_eq!(h.extension_profile(), Some(0xbede));
        assert_eq!(h.extension_block(), &[0x10, 0xff, 0, 0]);
        assert_eq!(h.header_len(), 24);
        assert_eq!(h.padding_len(), 2);
        assert_eq!(h.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn rejects_bad_input() {
        let mut p = sample();
        assert_eq!(RtpHeader::parse(&p[..11]), Err(RtpError::TooShort(11)));
        assert_eq!(RtpHeader::parse(&p[..14]), Err(RtpError::CsrcTruncated));
        assert_eq!(
            RtpHeader::parse(&p[..22]),
            Err(RtpError::ExtensionTruncated)
        );
        let n = p.len();
        p[n - 1] = 5;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding(5)));
        p[n - 1] = 0;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadPadding(0)));
        p[0] = 0x40;
        assert_eq!(RtpHeader::parse(&p), Err(RtpError::BadVersion(1)));
    }

    #[test]
    fn setters_rewrite_in_place() {
        let mut p = sample();
        write_ssrc(&mut p, 7).unwrap();
        write_sequence_number(&mut p, 9).unwrap();
        write_timestamp(&mut p, 11).unwrap();
        write_payload_type(&mut p, 111).unwrap();
        write_marker(&mut p, false).unwrap();
        let h = RtpHeader::parse(&p).unwrap();
        assert_eq!((h.ssrc(), h.sequence_number(), h.timestamp()), (7, 9, 11));
        assert_eq!((h.payload_type(), h.marker()), (111, false));
        assert_eq!(h.payload(), &[0xaa, 0xbb]);
        assert!(write_ssrc(&mut [0x80; 11], 1).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(h) = RtpHeader::parse(&bytes) {
                let _ = (h.payload(), h.extension_block(), h.csrcs().count(), h.extension_profile());
                prop_assert!(h.header_len() + usize::from(h.padding_len()) <= bytes.len());
            }
        }

        #[test]
        fn setters_then_parse(ssrc: u32, seq: u16, ts: u32, pt in 0u8..128, m: bool) {
            let mut p = sample();
            write_ssrc(&mut p, ssrc).unwrap();
            write_sequence_number(&mut p, seq).unwrap();
            write_timestamp(&mut p, ts).unwrap();
            write_payload_type(&mut p, pt).unwrap();
            write_marker(&mut p, m).unwrap();
            let h = RtpHeader::parse(&p).unwrap();
            prop_assert_eq!((h.ssrc(), h.sequence_number(), h.timestamp(), h.payload_type(), h.marker()), (ssrc, seq, ts, pt, m));
            prop_assert_eq!(h.payload(), &[0xaa, 0xbb][..]);
        }
    }
}
