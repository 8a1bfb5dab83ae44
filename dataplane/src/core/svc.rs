//! Layer facts of a published video packet: the codec's payload descriptor,
//! the Dependency Descriptor when one is negotiated (its template structure
//! cached per stream), and the layer structure the stream announces.

use weir_codecs::{Codec, DependencyDescriptor, DependencyStructure, Extensions, RtpHeader};

use crate::layers::StreamLayers;
use crate::packet::LayerFacts;

/// Whether the packet starts a keyframe, and its layer facts.
///
/// `dd_ext_id` is the Dependency Descriptor's extension id when negotiated;
/// `dd_cache` holds the stream's last template structure. A descriptor that
/// does not parse (lost structure, garbage) is ignored and the payload
/// descriptor alone speaks, so a stream keeps flowing while a keyframe
/// brings the structure back.
pub(super) fn video_layer_facts(
    codec: Codec,
    header: &RtpHeader<'_>,
    encoding: u8,
    dd_ext_id: Option<u8>,
    dd_cache: &mut Option<DependencyStructure>,
) -> (bool, LayerFacts) {
    let payload = header.payload();
    let dd = dd_ext_id.and_then(|id| {
        let value = Extensions::from_header(header).ok()?.get(id)?;
        DependencyDescriptor::parse_with_cache(value, dd_cache).ok()
    });
    let structure = match &dd {
        Some(d) if d.structure_attached => dd_cache
            .as_ref()
            .map(StreamLayers::from_dependency_structure),
        _ if codec == Codec::Vp9 => StreamLayers::from_vp9(payload),
        _ => None,
    };
    match weir_codecs::facts_with_descriptor(codec, payload, dd.as_ref()) {
        Ok(f) => {
            // Only frame starts are switch candidates; the structure walk
            // is per frame, not per packet.
            let switch_up_to = match (&dd, dd_cache.as_ref()) {
                (Some(d), Some(s)) if f.switching_point && f.frame_start => {
                    s.switch_up_to(&d.frame.dtis).unwrap_or(0)
                }
                _ => 0,
            };
            (
                f.keyframe && f.frame_start,
                LayerFacts {
                    encoding,
                    spatial: f.spatial_id.unwrap_or(0),
                    temporal: f.temporal_id.unwrap_or(0),
                    frame_start: f.frame_start,
                    frame_end: f.frame_end || header.marker(),
                    switching_point: f.switching_point,
                    switch_up_to,
                    structure,
                },
            )
        }
        Err(_) => (
            false,
            LayerFacts {
                encoding,
                structure,
                ..LayerFacts::default()
            },
        ),
    }
}
