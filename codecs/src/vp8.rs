//! VP8 payload descriptor (RFC 7741 §4.2) and an in-place picture-id patcher.

use thiserror::Error;

/// Why a VP8 payload descriptor is malformed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Vp8Error {
    /// The payload ends inside the descriptor.
    #[error("VP8 payload descriptor truncated")]
    Truncated,
    /// The caller's buffer is too small for the descriptor.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// A patch asks to write a field the descriptor does not carry.
    #[error("field {0} not present in the descriptor")]
    FieldAbsent(&'static str),
}

/// A picture id with the width it was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PictureId {
    /// The value: 7 bits, or 15 bits when `long`.
    pub value: u16,
    /// The M bit: the 15-bit form.
    pub long: bool,
}

impl PictureId {
    /// Reads a picture id at the start of `b`: returns it and its length.
    #[inline]
    pub(crate) fn read(b: &[u8]) -> Option<(Self, usize)> {
        let &first = b.first()?;
        if first & 0x80 != 0 {
            let &second = b.get(1)?;
            let value = (u16::from(first & 0x7f) << 8) | u16::from(second);
            Some((Self { value, long: true }, 2))
        } else {
            Some((
                Self {
                    value: u16::from(first),
                    long: false,
                },
                1,
            ))
        }
    }

    /// Writes this id at the start of `b`, masking the value to its width.
    pub(crate) fn write(self, b: &mut [u8]) -> Option<usize> {
        if self.long {
            let v = self.value & 0x7fff;
            b.get_mut(..2)?.copy_from_slice(&(v | 0x8000).to_be_bytes());
            Some(2)
        } else {
            *b.first_mut()? = (self.value & 0x7f) as u8;
            Some(1)
        }
    }

    /// Width in bits (7 or 15), which a rewrite keeps.
    pub fn bits(&self) -> u8 {
        if self.long {
            15
        } else {
            7
        }
    }
}

/// A parsed VP8 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vp8Descriptor {
    /// N: the frame is not used as a reference and can be dropped.
    pub non_reference: bool,
    /// S: this packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index (0..=7).
    pub partition_index: u8,
    /// I: the picture id.
    pub picture_id: Option<PictureId>,
    /// L: temporal level zero index.
    pub tl0_pic_idx: Option<u8>,
    /// T: the temporal layer index (0..=3).
    pub tid: Option<u8>,
    /// Y: layer sync, meaningful only with `tid`.
    pub layer_sync: bool,
    /// K: the temporal key frame index (0..=31).
    pub key_idx: Option<u8>,
    /// Length of the descriptor; the VP8 payload starts here.
    pub header_len: usize,
    /// The packet starts a key frame (S=1, PID=0 and the payload header P bit is 0).
    pub keyframe: bool,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of an RTP payload.
    #[inline]
    pub fn parse(payload: &[u8]) -> Result<Self, Vp8Error> {
        let &b0 = payload.first().ok_or(Vp8Error::Truncated)?;
        let mut d = Self {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_index: b0 & 0x07,
            picture_id: None,
            tl0_pic_idx: None,
            tid: None,
            layer_sync: false,
            key_idx: None,
            header_len: 1,
            keyframe: false,
        };
        let mut pos = 1;
        if b0 & 0x80 != 0 {
            let &x = payload.get(pos).ok_or(Vp8Error::Truncated)?;
            pos += 1;
            if x & 0x80 != 0 {
                let rest = payload.get(pos..).ok_or(Vp8Error::Truncated)?;
                let (pid, n) = PictureId::read(rest).ok_or(Vp8Error::Truncated)?;
                d.picture_id = Some(pid);
                pos += n;
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(*payload.get(pos).ok_or(Vp8Error::Truncated)?);
                pos += 1;
            }
            if x & 0x30 != 0 {
                let &b = payload.get(pos).ok_or(Vp8Error::Truncated)?;
                pos += 1;
                if x & 0x20 != 0 {
                    d.tid = Some(b >> 6);
                    d.layer_sync = b & 0x20 != 0;
                }
                if x & 0x10 != 0 {
                    d.key_idx = Some(b & 0x1f);
                }
            }
        }
        d.header_len = pos;
        if d.start_of_partition && d.partition_index == 0 {
            // The first byte of the VP8 frame tag: P (bit 0) is 0 for key frames.
            if let Some(&tag) = payload.get(pos) {
                d.keyframe = tag & 0x01 == 0;
            }
        }
        Ok(d)
    }

    /// Writes the descriptor into `out` and returns its length.
    ///
    /// `header_len` and `keyframe` are derived values and are not written; the
    /// reserved bits are zero.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, Vp8Error> {
        let has_x = self.picture_id.is_some()
            || self.tl0_pic_idx.is_some()
            || self.tid.is_some()
            || self.key_idx.is_some();
        let mut b = [0u8; 6];
        b[0] = (u8::from(has_x) << 7)
            | (u8::from(self.non_reference) << 5)
            | (u8::from(self.start_of_partition) << 4)
            | (self.partition_index & 0x07);
        let mut pos = 1;
        if has_x {
            b[1] = (u8::from(self.picture_id.is_some()) << 7)
                | (u8::from(self.tl0_pic_idx.is_some()) << 6)
                | (u8::from(self.tid.is_some()) << 5)
                | (u8::from(self.key_idx.is_some()) << 4);
            pos = 2;
            if let Some(pid) = self.picture_id {
                // `b` has room for the 2-byte form here.
                pos += pid.write(&mut b[pos..]).ok_or(Vp8Error::BufferTooSmall)?;
            }
            if let Some(t) = self.tl0_pic_idx {
                b[pos] = t;
                pos += 1;
            }
            if self.tid.is_some() || self.key_idx.is_some() {
                let tid = self
                    .tid
                    .map_or(0, |t| ((t & 3) << 6) | (u8::from(self.layer_sync) << 5));
                b[pos] = tid | self.key_idx.map_or(0, |k| k & 0x1f);
                pos += 1;
            }
        }
        out.get_mut(..pos)
            .ok_or(Vp8Error::BufferTooSmall)?
            .copy_from_slice(&b[..pos]);
        Ok(pos)
    }
}

/// A per-subscriber rewrite of the VP8 descriptor, applied in place while forwarding.
///
/// The picture id keeps the width the publisher used, so the payload never moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Vp8Patch {
    /// New picture id (masked to the existing width).
    pub picture_id: Option<u16>,
    /// New TL0PICIDX.
    pub tl0_pic_idx: Option<u8>,
}

impl Vp8Patch {
    /// Rewrites the fields of the descriptor at the start of `payload`.
    ///
    /// Fails without writing anything if the payload lacks a field the patch sets.
    pub fn apply(&self, payload: &mut [u8]) -> Result<(), Vp8Error> {
        let d = Vp8Descriptor::parse(payload)?;
        if self.picture_id.is_some() && d.picture_id.is_none() {
            return Err(Vp8Error::FieldAbsent("picture id"));
        }
        if self.tl0_pic_idx.is_some() && d.tl0_pic_idx.is_none() {
            return Err(Vp8Error::FieldAbsent("TL0PICIDX"));
        }
        // Offsets follow from the parse: byte 0, X byte, then picture id, then TL0PICIDX.
        let mut pos = 2;
        if let Some(old) = d.picture_id {
            if let Some(v) = self.picture_id {
                let new = PictureId {
                    value: v,
                    long: old.long,
                };
                let slot = payload.get_mut(pos..).ok_or(Vp8Error::Truncated)?;
                new.write(slot).ok_or(Vp8Error::Truncated)?;
            }
            pos += if old.long { 2 } else { 1 };
        }
        if let Some(t) = self.tl0_pic_idx {
            *payload.get_mut(pos).ok_or(Vp8Error::Truncated)? = t;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc7741_full_descriptor() {
        // X=1 S=1 PID=0; I L T K; M=1 picture id 0x1234; TL0PICIDX 5; TID 2 Y=1 KEYIDX 3;
        // then a key-frame tag (P=0).
        let p = [0x90, 0xf0, 0x92, 0x34, 0x05, 0xa3, 0x10, 0x02, 0x00];
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert!(d.start_of_partition && !d.non_reference && d.partition_index == 0);
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x1234,
                long: true
            })
        );
        assert_eq!(d.tl0_pic_idx, Some(5));
        assert_eq!((d.tid, d.layer_sync, d.key_idx), (Some(2), true, Some(3)));
        assert_eq!(d.header_len, 6);
        assert!(d.keyframe);
    }

    #[test]
    fn short_picture_id_and_delta_frame() {
        // X=1 N=1 S=1; I only; 7-bit picture id 17; tag with P=1.
        let p = [0xb0, 0x80, 17, 0x01];
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert!(d.non_reference);
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 17,
                long: false
            })
        );
        assert_eq!(d.header_len, 3);
        assert!(!d.keyframe);
        assert_eq!(Vp8Descriptor::parse(&[0x10]).unwrap().header_len, 1);
    }

    #[test]
    fn truncated() {
        for p in [
            &[][..],
            &[0x80],
            &[0x80, 0x80],
            &[0x80, 0x80, 0x80],
            &[0x80, 0x40],
            &[0x80, 0x20],
        ] {
            assert_eq!(Vp8Descriptor::parse(p), Err(Vp8Error::Truncated));
        }
    }

    #[test]
    fn patch_keeps_width() {
        let mut p = [0x90, 0xc0, 0x12, 0x07, 0x00];
        Vp8Patch {
            picture_id: Some(0x1ff),
            tl0_pic_idx: Some(9),
        }
        .apply(&mut p)
        .unwrap();
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(
            d.picture_id,
            Some(PictureId {
                value: 0x7f,
                long: false
            })
        );
        assert_eq!(d.tl0_pic_idx, Some(9));
        let mut q = [0x10, 0x00];
        assert!(Vp8Patch {
            picture_id: Some(1),
            tl0_pic_idx: None
        }
        .apply(&mut q)
        .is_err());
    }

    fn descriptor() -> impl Strategy<Value = Vp8Descriptor> {
        (
            any::<(bool, bool)>(),
            0u8..8,
            proptest::option::of((any::<u16>(), any::<bool>())),
            proptest::option::of(any::<u8>()),
            proptest::option::of(0u8..4),
            any::<bool>(),
            proptest::option::of(0u8..32),
        )
            .prop_map(|((n, s), pid, pic, tl0, tid, y, k)| Vp8Descriptor {
                non_reference: n,
                start_of_partition: s,
                partition_index: pid,
                picture_id: pic.map(|(v, long)| PictureId {
                    value: if long { v & 0x7fff } else { v & 0x7f },
                    long,
                }),
                tl0_pic_idx: tl0,
                tid,
                layer_sync: y && tid.is_some(),
                key_idx: k,
                header_len: 0,
                keyframe: false,
            })
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(d) = Vp8Descriptor::parse(&bytes) {
                prop_assert!(d.header_len <= bytes.len());
            }
        }

        #[test]
        fn write_then_parse(d in descriptor(), tag: u8) {
            let mut buf = [0u8; 8];
            let n = d.write(&mut buf).unwrap();
            buf[n] = tag;
            let got = Vp8Descriptor::parse(&buf[..=n]).unwrap();
            let keyframe = d.start_of_partition && d.partition_index == 0 && tag & 1 == 0;
            prop_assert_eq!(got, Vp8Descriptor { header_len: n, keyframe, ..d });
        }

        #[test]
        fn patch_then_parse(d in descriptor(), pic: u16, tl0: u8) {
            let mut buf = [0u8; 8];
            let n = d.write(&mut buf).unwrap();
            let patch = Vp8Patch {
                picture_id: d.picture_id.map(|_| pic),
                tl0_pic_idx: d.tl0_pic_idx.map(|_| tl0),
            };
            patch.apply(&mut buf[..n]).unwrap();
            let got = Vp8Descriptor::parse(&buf[..n]).unwrap();
            let mask = |p: PictureId| if p.long { 0x7fff } else { 0x7f };
            prop_assert_eq!(got.picture_id, d.picture_id.map(|p| PictureId { value: pic & mask(p), long: p.long }));
            prop_assert_eq!(got.tl0_pic_idx, d.tl0_pic_idx.map(|_| tl0));
            prop_assert_eq!((got.tid, got.key_idx, got.header_len), (d.tid, d.key_idx, n));
        }
    }
}
