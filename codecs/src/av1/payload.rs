//! The AV1 RTP payload (AV1 RTP spec §4): aggregation header and OBU headers.

use thiserror::Error;

/// Why an AV1 RTP payload is malformed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Av1Error {
    /// The payload ends inside an element or a length field.
    #[error("AV1 payload truncated")]
    Truncated,
    /// A LEB128 length longer than 8 bytes or past `usize`.
    #[error("invalid LEB128 length")]
    BadLeb128,
    /// An OBU header has its forbidden bit set.
    #[error("OBU forbidden bit set")]
    ForbiddenBit,
    /// The aggregation header's W field promises more elements than there are.
    #[error("fewer OBU elements than W says")]
    MissingElements,
}

/// OBU type of a sequence header.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type of a temporal delimiter.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
/// OBU type of a frame header.
pub const OBU_FRAME_HEADER: u8 = 3;
/// OBU type of a frame (header and tile group).
pub const OBU_FRAME: u8 = 6;

/// An OBU header (AV1 spec §5.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObuHeader {
    /// obu_type.
    pub obu_type: u8,
    /// obu_has_size_field.
    pub has_size_field: bool,
    /// temporal_id, from the extension header.
    pub temporal_id: Option<u8>,
    /// spatial_id, from the extension header.
    pub spatial_id: Option<u8>,
}

impl ObuHeader {
    /// Parses the 1- or 2-byte OBU header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Self, Av1Error> {
        let &h = b.first().ok_or(Av1Error::Truncated)?;
        if h & 0x80 != 0 {
            return Err(Av1Error::ForbiddenBit);
        }
        let mut o = Self {
            obu_type: (h >> 3) & 0x0f,
            has_size_field: h & 0x02 != 0,
            temporal_id: None,
            spatial_id: None,
        };
        if h & 0x04 != 0 {
            let &e = b.get(1).ok_or(Av1Error::Truncated)?;
            o.temporal_id = Some(e >> 5);
            o.spatial_id = Some((e >> 3) & 0x03);
        }
        Ok(o)
    }
}

/// What one AV1 RTP payload contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Av1Payload {
    /// Z: the first element continues an OBU from the previous packet.
    pub continues_previous: bool,
    /// Y: the last element continues in the next packet.
    pub continues_next: bool,
    /// W: the element count, or 0 when every element carries a length.
    pub w: u8,
    /// N: the first packet of a coded video sequence, i.e. a key frame.
    pub new_coded_video_sequence: bool,
    /// Number of OBU elements.
    pub element_count: usize,
    /// Header of the first OBU that starts in this packet.
    pub first_obu: Option<ObuHeader>,
    /// A sequence header OBU starts in this packet.
    pub has_sequence_header: bool,
    /// temporal_id of the first OBU with an extension header.
    pub temporal_id: Option<u8>,
    /// spatial_id of the first OBU with an extension header.
    pub spatial_id: Option<u8>,
}

/// Reads a LEB128 value (at most 8 bytes, AV1 spec §4.10.5); returns it and its length.
pub fn read_leb128(b: &[u8]) -> Result<(u64, usize), Av1Error> {
    let mut v = 0u64;
    for i in 0..8 {
        let &byte = b.get(i).ok_or(Av1Error::Truncated)?;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(Av1Error::BadLeb128)
}

impl Av1Payload {
    /// Parses the aggregation header and walks every OBU element.
    pub fn parse(payload: &[u8]) -> Result<Self, Av1Error> {
        let (&agg, mut rest) = payload.split_first().ok_or(Av1Error::Truncated)?;
        let w = (agg >> 4) & 0x03;
        let mut p = Self {
            continues_previous: agg & 0x80 != 0,
            continues_next: agg & 0x40 != 0,
            w,
            new_coded_video_sequence: agg & 0x08 != 0,
            element_count: 0,
            first_obu: None,
            has_sequence_header: false,
            temporal_id: None,
            spatial_id: None,
        };
        while !rest.is_empty() {
            // With W > 0 the last element has no length field and runs to the end.
            let last = w != 0 && p.element_count + 1 == usize::from(w);
            let element = if last {
                core::mem::take(&mut rest)
            } else {
                let (len, n) = read_leb128(rest)?;
                let len = usize::try_from(len).map_err(|_| Av1Error::BadLeb128)?;
                let body = rest
                    .get(n..)
                    .and_then(|r| r.get(..len))
                    .ok_or(Av1Error::Truncated)?;
                // In bounds: the `get`s above found `n + len` bytes.
                rest = &rest[n + len..];
                body
            };
            let fragment = p.element_count == 0 && p.continues_previous;
            p.element_count += 1;
            if fragment || element.is_empty() {
                continue;
            }
            let obu = ObuHeader::parse(element)?;
            p.first_obu.get_or_insert(obu);
            p.has_sequence_header |= obu.obu_type == OBU_SEQUENCE_HEADER;
            if p.temporal_id.is_none() && obu.temporal_id.is_some() {
                p.temporal_id = obu.temporal_id;
                p.spatial_id = obu.spatial_id;
            }
        }
        if w != 0 && p.element_count != usize::from(w) {
            return Err(Av1Error::MissingElements);
        }
        Ok(p)
    }

    /// The packet starts a key frame (the N bit).
    pub fn is_keyframe(&self) -> bool {
        self.new_coded_video_sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keyframe_with_sequence_header() {
        // Z=0 Y=0 W=2 N=1; element 1: length 2, sequence header OBU (type 1) + 1 byte;
        // element 2 (no length): frame OBU (type 6) with extension tid 2 sid 1.
        let p = [0x28, 0x02, 0x08, 0xaa, 0x34, 0x48, 0xbb, 0xcc];
        let a = Av1Payload::parse(&p).unwrap();
        assert!(a.is_keyframe() && a.has_sequence_header);
        assert_eq!(a.element_count, 2);
        assert_eq!(a.first_obu.unwrap().obu_type, OBU_SEQUENCE_HEADER);
        assert_eq!((a.temporal_id, a.spatial_id), (Some(2), Some(1)));
    }

    #[test]
    fn fragment_continuation() {
        // Z=1 Y=1 W=1: one element, the middle of an OBU: no header to read.
        let a = Av1Payload::parse(&[0xd0, 0xff, 0xff]).unwrap();
        assert!(a.continues_previous && a.continues_next && !a.is_keyframe());
        assert_eq!(a.first_obu, None);
        // W=0: every element has a length.
        let a = Av1Payload::parse(&[0x00, 0x01, 0x30, 0x01, 0x10]).unwrap();
        assert_eq!(a.element_count, 2);
        assert_eq!(a.first_obu.unwrap().obu_type, OBU_FRAME);
    }

    #[test]
    fn errors() {
        assert_eq!(Av1Payload::parse(&[]), Err(Av1Error::Truncated));
        assert_eq!(
            Av1Payload::parse(&[0x00, 0x05, 0x30]),
            Err(Av1Error::Truncated)
        );
        assert_eq!(
            Av1Payload::parse(&[0x20, 0x01, 0x30]),
            Err(Av1Error::MissingElements)
        );
        assert_eq!(
            Av1Payload::parse(&[0x10, 0x80]),
            Err(Av1Error::ForbiddenBit)
        );
        assert_eq!(read_leb128(&[0x80; 9]), Err(Av1Error::BadLeb128));
        assert_eq!(read_leb128(&[0xe5, 0x8e, 0x26]), Ok((624_485, 3)));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let _ = Av1Payload::parse(&bytes);
        }

        #[test]
        fn leb128_roundtrip(v in 0u64..(1 << 56)) {
            let mut b = Vec::new();
            let mut x = v;
            loop {
                let byte = (x & 0x7f) as u8;
                x >>= 7;
                if x == 0 { b.push(byte); break; }
                b.push(byte | 0x80);
            }
            prop_assert_eq!(read_leb128(&b), Ok((v, b.len())));
        }
    }
}
