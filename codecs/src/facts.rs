//! One codec-independent summary per packet: what a forwarder needs to pick layers
//! and rewrite picture ids, whatever the codec.

use thiserror::Error;

use crate::av1::{
    dependency_descriptor::Dti, Av1Error, Av1Payload, DependencyDescriptor, FrameDependency,
    OBU_FRAME, OBU_FRAME_HEADER, OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER,
};
use crate::h264::{H264Error, H264Payload};
use crate::opus::{OpusError, OpusToc};
use crate::vp8::{Vp8Descriptor, Vp8Error};
use crate::vp9::{Vp9Descriptor, Vp9Error};

/// The codecs whose payloads Weir understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus audio.
    Opus,
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// H.264 (RFC 6184).
    H264,
    /// AV1 (AV1 RTP specification).
    Av1,
}

/// A payload that the codec's parser rejected.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CodecError {
    /// Opus.
    #[error(transparent)]
    Opus(#[from] OpusError),
    /// VP8.
    #[error(transparent)]
    Vp8(#[from] Vp8Error),
    /// VP9.
    #[error(transparent)]
    Vp9(#[from] Vp9Error),
    /// H.264.
    #[error(transparent)]
    H264(#[from] H264Error),
    /// AV1.
    #[error(transparent)]
    Av1(#[from] Av1Error),
}

/// What a forwarder needs to know about one packet.
///
/// "Frame" means a layer frame for SVC codecs. `frame_end` only reflects what the
/// payload says (VP9's E bit, the Dependency Descriptor); OR it with the RTP marker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PacketFacts {
    /// Decoding can start at this packet's frame without earlier frames.
    pub keyframe: bool,
    /// Spatial layer id, when the codec or descriptor says.
    pub spatial_id: Option<u8>,
    /// Temporal layer id, when the codec or descriptor says.
    pub temporal_id: Option<u8>,
    /// A subscriber may switch up to this packet's layer here.
    pub switching_point: bool,
    /// First packet of a frame.
    pub frame_start: bool,
    /// Last packet of a frame, as far as the payload tells.
    pub frame_end: bool,
    /// VP8/VP9 picture id.
    pub picture_id: Option<u16>,
    /// VP8/VP9 TL0PICIDX.
    pub tl0_pic_idx: Option<u8>,
}

/// Summarizes one RTP payload. When the packet carries a Dependency Descriptor, its
/// resolved frame dependency supplies the layer ids and the switching point.
pub fn facts(
    codec: Codec,
    payload: &[u8],
    dd: Option<&FrameDependency>,
) -> Result<PacketFacts, CodecError> {
    let mut f = payload_facts(codec, payload)?;
    if let Some(dd) = dd {
        f.spatial_id = Some(dd.spatial_id);
        f.temporal_id = Some(dd.temporal_id);
        f.switching_point = f.keyframe || dd.dtis.iter().any(|d| d == Dti::Switch);
    }
    Ok(f)
}

/// Like [`facts`], and also takes frame start and end from the descriptor.
pub fn facts_with_descriptor(
    codec: Codec,
    payload: &[u8],
    dd: Option<&DependencyDescriptor>,
) -> Result<PacketFacts, CodecError> {
    let mut f = facts(codec, payload, dd.map(|d| &d.frame))?;
    if let Some(d) = dd {
        f.frame_start = d.start_of_frame;
        f.frame_end = d.end_of_frame;
    }
    Ok(f)
}

fn payload_facts(codec: Codec, payload: &[u8]) -> Result<PacketFacts, CodecError> {
    Ok(match codec {
        Codec::Opus => {
            OpusToc::parse(payload)?;
            // Every Opus packet decodes on its own.
            PacketFacts {
                keyframe: true,
                switching_point: true,
                frame_start: true,
                frame_end: true,
                ..PacketFacts::default()
            }
        }
        Codec::Vp8 => {
            let d = Vp8Descriptor::parse(payload)?;
            PacketFacts {
                keyframe: d.keyframe,
                spatial_id: None,
                temporal_id: d.tid,
                switching_point: d.keyframe || (d.tid.is_some() && d.layer_sync),
                frame_start: d.start_of_partition && d.partition_index == 0,
                frame_end: false,
                picture_id: d.picture_id.map(|p| p.value),
                tl0_pic_idx: d.tl0_pic_idx,
            }
        }
        Codec::Vp9 => {
            let d = Vp9Descriptor::parse(payload)?;
            let keyframe = d.is_keyframe();
            PacketFacts {
                keyframe,
                spatial_id: d.layers.map(|l| l.spatial_id),
                temporal_id: d.layers.map(|l| l.temporal_id),
                switching_point: keyframe || d.layers.is_some_and(|l| l.switching_up),
                frame_start: d.start_of_frame,
                frame_end: d.end_of_frame,
                picture_id: d.picture_id.map(|p| p.value),
                tl0_pic_idx: d.layers.and_then(|l| l.tl0_pic_idx),
            }
        }
        Codec::H264 => {
            let p = H264Payload::parse(payload)?;
            // Senders put SPS/PPS in the packet before the IDR slice; switching there
            // keeps the parameter sets the decoder needs.
            let keyframe = p.is_keyframe() || p.has_sps();
            PacketFacts {
                keyframe,
                switching_point: keyframe,
                frame_start: p.frame_start,
                ..PacketFacts::default()
            }
        }
        Codec::Av1 => {
            let p = Av1Payload::parse(payload)?;
            let starts = !p.continues_previous
                && p.first_obu.is_some_and(|o| {
                    matches!(
                        o.obu_type,
                        OBU_SEQUENCE_HEADER | OBU_TEMPORAL_DELIMITER | OBU_FRAME_HEADER | OBU_FRAME
                    )
                });
            PacketFacts {
                keyframe: p.is_keyframe(),
                spatial_id: p.spatial_id,
                temporal_id: p.temporal_id,
                switching_point: p.is_keyframe(),
                frame_start: starts,
                ..PacketFacts::default()
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases: &[(Codec, &[u8], PacketFacts)] = &[
            (
                Codec::Vp8,
                &[0x90, 0xe0, 0x92, 0x34, 0x05, 0x40, 0x00],
                PacketFacts {
                    keyframe: true,
                    temporal_id: Some(1),
                    switching_point: true,
                    frame_start: true,
                    picture_id: Some(0x1234),
                    tl0_pic_idx: Some(5),
                    ..Default::default()
                },
            ),
            (
                Codec::Vp9,
                &[0xf8, 0x05, 0x53, 0x03, 0x06],
                PacketFacts {
                    spatial_id: Some(1),
                    temporal_id: Some(2),
                    switching_point: true,
                    frame_start: true,
                    picture_id: Some(5),
                    ..Default::default()
                },
            ),
            (
                Codec::H264,
                &[0x7c, 0x85, 0x88],
                PacketFacts {
                    keyframe: true,
                    switching_point: true,
                    frame_start: true,
                    ..Default::default()
                },
            ),
            (
                Codec::Av1,
                &[0x18, 0x34, 0x48, 0xbb],
                PacketFacts {
                    keyframe: true,
                    spatial_id: Some(1),
                    temporal_id: Some(2),
                    switching_point: true,
                    frame_start: true,
                    ..Default::default()
                },
            ),
            (
                Codec::Opus,
                &[0xf8, 1, 2],
                PacketFacts {
                    keyframe: true,
                    switching_point: true,
                    frame_start: true,
                    frame_end: true,
                    ..Default::default()
                },
            ),
        ];
        for (codec, payload, expected) in cases {
            assert_eq!(
                facts(*codec, payload, None).as_ref(),
                Ok(expected),
                "{codec:?}"
            );
        }
        assert!(matches!(
            facts(Codec::Vp8, &[], None),
            Err(CodecError::Vp8(_))
        ));
    }

    #[test]
    fn descriptor_overrides_layers() {
        use crate::av1::dependency_descriptor::{ChainDiffs, Dtis, FrameDiffs};
        let dd = FrameDependency {
            spatial_id: 2,
            temporal_id: 1,
            dtis: Dtis::from_slice(&[Dti::NotPresent, Dti::Switch]).unwrap(),
            fdiffs: FrameDiffs::default(),
            chain_diffs: ChainDiffs::default(),
            resolution: None,
        };
        let f = facts(Codec::Vp8, &[0x00, 0x01], Some(&dd)).unwrap();
        assert_eq!(
            (f.spatial_id, f.temporal_id, f.switching_point),
            (Some(2), Some(1), true)
        );
    }

    proptest! {
        #[test]
        fn never_panics(c in 0usize..5, bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let codec = [Codec::Opus, Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1][c];
            let _ = facts(codec, &bytes, None);
        }
    }
}
