//! The layer structure a published stream announces in-band.
//!
//! SDP does not say how a VP9 or AV1 sender layers its stream
//! (`scalabilityMode` is the sender's private choice), so the structure is
//! read from the stream itself: the VP9 scalability structure (RFC 9628
//! §4.2.1, sent with key pictures and whenever the layering changes) and the
//! Dependency Descriptor's template structure (sent with keyframes). The
//! publisher's core reads it once per packet that carries it; each
//! subscriber's [`LayerSelector`](super::LayerSelector) adopts it through
//! [`on_stream_layers`](super::LayerSelector::on_stream_layers).

use weir_codecs::{DependencyStructure, Vp9Descriptor};

use super::Layout;

/// Spatial and temporal layer counts of one stream (one simulcast encoding,
/// or the only stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamLayers {
    /// Number of spatial layers (1 without spatial scalability).
    pub spatial: u8,
    /// Number of temporal layers (1 without temporal scalability).
    pub temporal: u8,
}

/// Temporal layers assumed for a VP9 structure without a picture group.
const FLEXIBLE_TEMPORAL_LAYERS: u8 = 3;

/// VP9's V bit: the descriptor carries a scalability structure.
const VP9_V_BIT: u8 = 0x02;

impl StreamLayers {
    /// The counts a VP9 payload's scalability structure announces, if it
    /// carries one. Without a picture group (flexible mode, which Chromium
    /// uses for SVC) the temporal count is taken as 3, the most any WebRTC
    /// scalability mode has (`L*T3`), so that layer events name real
    /// layers; a sender with more would have its top ones filtered.
    pub fn from_vp9(payload: &[u8]) -> Option<Self> {
        // Most packets carry no SS: skip the parse for them.
        if payload.first()? & VP9_V_BIT == 0 {
            return None;
        }
        let ss = Vp9Descriptor::parse(payload).ok()?.scalability_structure?;
        Some(Self {
            spatial: ss.spatial_layers(),
            temporal: ss.temporal_layers().unwrap_or(FLEXIBLE_TEMPORAL_LAYERS),
        })
    }

    /// The counts of a Dependency Descriptor template structure.
    pub fn from_dependency_structure(s: &DependencyStructure) -> Self {
        // Both counts are at most 4 by the descriptor's format.
        Self {
            spatial: s.spatial_layer_count().min(usize::from(u8::MAX)) as u8,
            temporal: s.temporal_layer_count().min(usize::from(u8::MAX)) as u8,
        }
    }

    /// The layout of a single (non-simulcast) stream with these counts.
    pub fn layout(self) -> Layout {
        if self.spatial > 1 {
            Layout::Svc {
                spatial: self.spatial,
                temporal: self.temporal.max(1),
            }
        } else {
            Layout::Single {
                temporal: self.temporal.max(1),
            }
        }
    }
}
