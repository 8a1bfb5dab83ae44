//! VP9 payload descriptor (RFC 9628 §4.2), its scalability structure, and an
//! in-place picture-id patcher.

use thiserror::Error;

pub use crate::vp8::PictureId;

/// Why a VP9 payload descriptor is malformed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Vp9Error {
    /// The payload ends inside the descriptor.
    #[error("VP9 payload descriptor truncated")]
    Truncated,
    /// More than three P_DIFFs in flexible mode.
    #[error("too many reference indices")]
    TooManyPDiffs,
    /// A patch asks to write a field the descriptor does not carry.
    #[error("field {0} not present in the descriptor")]
    FieldAbsent(&'static str),
}

/// Layer indices (the L byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vp9Layers {
    /// TID: temporal layer id (0..=7).
    pub temporal_id: u8,
    /// U: switching-up point: a higher temporal layer can be switched to here.
    pub switching_up: bool,
    /// SID: spatial layer id (0..=7).
    pub spatial_id: u8,
    /// D: the frame depends on the lower spatial layer of the same picture.
    pub inter_layer_dependency: bool,
    /// TL0PICIDX, present in non-flexible mode.
    pub tl0_pic_idx: Option<u8>,
}

/// A parsed VP9 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vp9Descriptor<'a> {
    /// P: the frame uses inter-picture prediction.
    pub inter_picture_predicted: bool,
    /// F: flexible mode (references are signalled with P_DIFFs).
    pub flexible: bool,
    /// B: first packet of a layer frame.
    pub start_of_frame: bool,
    /// E: last packet of a layer frame.
    pub end_of_frame: bool,
    /// Z: the frame is not used as a reference for the next spatial layer.
    pub not_upswitch_reference: bool,
    /// I: the picture id.
    pub picture_id: Option<PictureId>,
    /// L: layer indices.
    pub layers: Option<Vp9Layers>,
    p_diffs: [u8; 3],
    p_diff_count: u8,
    /// V: the scalability structure.
    pub scalability_structure: Option<ScalabilityStructure<'a>>,
    /// Length of the descriptor; the VP9 frame data starts here.
    pub header_len: usize,
}

impl<'a> Vp9Descriptor<'a> {
    /// Parses the descriptor at the start of an RTP payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, Vp9Error> {
        let &b0 = payload.first().ok_or(Vp9Error::Truncated)?;
        let flexible = b0 & 0x10 != 0;
        let mut d = Self {
            inter_picture_predicted: b0 & 0x40 != 0,
            flexible,
            start_of_frame: b0 & 0x08 != 0,
            end_of_frame: b0 & 0x04 != 0,
            not_upswitch_reference: b0 & 0x01 != 0,
            picture_id: None,
            layers: None,
            p_diffs: [0; 3],
            p_diff_count: 0,
            scalability_structure: None,
            header_len: 0,
        };
        let mut pos = 1;
        let byte = |pos: usize| payload.get(pos).copied().ok_or(Vp9Error::Truncated);
        if b0 & 0x80 != 0 {
            let rest = payload.get(pos..).ok_or(Vp9Error::Truncated)?;
            let (pid, n) = PictureId::read(rest).ok_or(Vp9Error::Truncated)?;
            d.picture_id = Some(pid);
            pos += n;
        }
        if b0 & 0x20 != 0 {
            let l = byte(pos)?;
            pos += 1;
            let tl0_pic_idx = if flexible {
                None
            } else {
                pos += 1;
                Some(byte(pos - 1)?)
            };
            d.layers = Some(Vp9Layers {
                temporal_id: l >> 5,
                switching_up: l & 0x10 != 0,
                spatial_id: (l >> 1) & 0x07,
                inter_layer_dependency: l & 0x01 != 0,
                tl0_pic_idx,
            });
        }
        if flexible && d.inter_picture_predicted {
            loop {
                let p = byte(pos)?;
                pos += 1;
                let slot = d
                    .p_diffs
                    .get_mut(usize::from(d.p_diff_count))
                    .ok_or(Vp9Error::TooManyPDiffs)?;
                *slot = p >> 1;
                d.p_diff_count += 1;
                if p & 0x01 == 0 {
                    break;
                }
            }
        }
        if b0 & 0x02 != 0 {
            let rest = payload.get(pos..).ok_or(Vp9Error::Truncated)?;
            let ss = ScalabilityStructure::parse(rest)?;
            pos += ss.bytes.len();
            d.scalability_structure = Some(ss);
        }
        d.header_len = pos;
        Ok(d)
    }

    /// The reference picture-id differences (flexible mode).
    pub fn p_diffs(&self) -> &[u8] {
        &self.p_diffs[..usize::from(self.p_diff_count)]
    }

    /// Spatial id, 0 when the descriptor carries no layer indices.
    pub fn spatial_id(&self) -> u8 {
        self.layers.map_or(0, |l| l.spatial_id)
    }

    /// The packet starts a key frame: the first packet of a base-layer frame that
    /// uses no inter-picture prediction.
    pub fn is_keyframe(&self) -> bool {
        self.start_of_frame && !self.inter_picture_predicted && self.spatial_id() == 0
    }
}

/// The scalability structure (SS) of RFC 9628 §4.2.1, validated and borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScalabilityStructure<'a> {
    bytes: &'a [u8],
}

impl<'a> ScalabilityStructure<'a> {
    fn parse(b: &'a [u8]) -> Result<Self, Vp9Error> {
        let &h = b.first().ok_or(Vp9Error::Truncated)?;
        let n_s = usize::from(h >> 5) + 1;
        let mut pos = 1;
        if h & 0x10 != 0 {
            pos += 4 * n_s;
        }
        if h & 0x08 != 0 {
            let n_g = *b.get(pos).ok_or(Vp9Error::Truncated)?;
            pos += 1;
            for _ in 0..n_g {
                let &g = b.get(pos).ok_or(Vp9Error::Truncated)?;
                pos += 1 + usize::from((g >> 2) & 0x03);
            }
        }
        let bytes = b.get(..pos).ok_or(Vp9Error::Truncated)?;
        Ok(Self { bytes })
    }

    /// N_S + 1: the number of spatial layers.
    pub fn spatial_layers(&self) -> u8 {
        (self.bytes[0] >> 5) + 1
    }

    /// Width and height of each spatial layer, if the Y bit is set.
    pub fn resolutions(&self) -> Option<impl Iterator<Item = (u16, u16)> + 'a> {
        if self.bytes[0] & 0x10 == 0 {
            return None;
        }
        let end = 1 + 4 * usize::from(self.spatial_layers());
        let it = self.bytes[1..end].chunks_exact(4).map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u16::from_be_bytes([c[2], c[3]]),
            )
        });
        Some(it)
    }

    /// The picture group description, if the G bit is set.
    pub fn picture_group(&self) -> Option<PictureGroupIter<'a>> {
        if self.bytes[0] & 0x08 == 0 {
            return None;
        }
        let start = 1 + if self.bytes[0] & 0x10 != 0 {
            4 * usize::from(self.spatial_layers())
        } else {
            0
        };
        // N_G at `start`, then its entries, all validated in `parse`.
        Some(PictureGroupIter {
            rest: self.bytes.get(start + 1..).unwrap_or(&[]),
        })
    }

    /// Number of temporal layers the picture group cycles through (highest
    /// TID + 1), if the G bit is set. Without a picture group (flexible mode)
    /// the structure says nothing about temporal layers.
    pub fn temporal_layers(&self) -> Option<u8> {
        let max = self.picture_group()?.map(|e| e.temporal_id).max();
        // An empty group (N_G = 0) describes no temporal pattern either.
        max.map(|t| t + 1)
    }

    /// The raw SS bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// One picture of the picture group of a scalability structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PictureGroupEntry<'a> {
    /// Temporal layer id of the picture.
    pub temporal_id: u8,
    /// Switching-up point.
    pub switching_up: bool,
    /// P_DIFFs of its references.
    pub p_diffs: &'a [u8],
}

/// Iterator over a picture group.
#[derive(Debug, Clone)]
pub struct PictureGroupIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for PictureGroupIter<'a> {
    type Item = PictureGroupEntry<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&g, tail) = self.rest.split_first()?;
        let r = usize::from((g >> 2) & 0x03);
        let p_diffs = tail.get(..r)?;
        // In bounds: `get(..r)` succeeded.
        self.rest = &tail[r..];
        Some(PictureGroupEntry {
            temporal_id: g >> 5,
            switching_up: g & 0x10 != 0,
            p_diffs,
        })
    }
}

/// A per-subscriber rewrite of the VP9 descriptor, applied in place.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Vp9Patch {
    /// New picture id (masked to the existing width).
    pub picture_id: Option<u16>,
    /// New TL0PICIDX (non-flexible mode only).
    pub tl0_pic_idx: Option<u8>,
}

impl Vp9Patch {
    /// Rewrites the fields of the descriptor at the start of `payload`; fails without
    /// writing if a field the patch sets is absent.
    pub fn apply(&self, payload: &mut [u8]) -> Result<(), Vp9Error> {
        let (pid, has_tl0) = {
            let d = Vp9Descriptor::parse(payload)?;
            (d.picture_id, d.layers.and_then(|l| l.tl0_pic_idx).is_some())
        };
        if self.picture_id.is_some() && pid.is_none() {
            return Err(Vp9Error::FieldAbsent("picture id"));
        }
        if self.tl0_pic_idx.is_some() && !has_tl0 {
            return Err(Vp9Error::FieldAbsent("TL0PICIDX"));
        }
        // Layout from the parse: byte 0, picture id, L byte, TL0PICIDX.
        let mut pos = 1;
        if let Some(old) = pid {
            if let Some(v) = self.picture_id {
                let slot = payload.get_mut(pos..).ok_or(Vp9Error::Truncated)?;
                PictureId {
                    value: v,
                    long: old.long,
                }
                .write(slot)
                .ok_or(Vp9Error::Truncated)?;
            }
            pos += if old.long { 2 } else { 1 };
        }
        if let Some(t) = self.tl0_pic_idx {
            *payload.get_mut(pos + 1).ok_or(Vp9Error::Truncated)? = t;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "vp9_tests.rs"]
mod tests;
