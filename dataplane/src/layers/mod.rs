//! Simulcast and SVC for one subscriber of one video track: which layers it
//! receives and how their VP8/VP9 picture ids are rewritten.
//!
//! This is the middle part of layer selection: the codec parsers in
//! `weir-codecs` say what a packet is ([`weir_codecs::PacketFacts`]); the
//! [`LayerSelector`] decides per packet whether this subscriber gets it and
//! when a keyframe is needed; the [`PictureIdRewriter`] patches the payload
//! descriptor of what is forwarded. Sequence numbers, timestamps and SSRC
//! stay with the [`Forwarder`](crate::forwarder::Forwarder). The bandwidth
//! allocator sits above and only calls [`LayerSelector::set_max`].
//!
//! Per packet of the track, on the subscriber's core:
//!
//! ```text
//! let lp = LayerPacket::from_facts(encoding, &facts, marker);
//! match selector.on_packet(now, &lp) {
//!     Decision::Drop => { forwarder skips it (no sequence gap); rewriter.on_dropped(encoding, payload) }
//!     Decision::Forward { set_marker } => { forwarder writes it with `set_marker`;
//!                                           rewriter.rewrite(encoding, &mut out_payload) }
//! }
//! while let Some(encoding) = selector.poll_keyframe_request(now) { send a PLI to that encoding }
//! while let Some(ev) = selector.poll_event() { tell the application }
//! ```
//!
//! Everything here is sans-IO: time is an argument, nothing allocates.

mod rates;
mod rewrite;
mod selector;
mod structure;

#[cfg(test)]
mod tests;

pub use rates::LayerRates;
pub use rewrite::{PictureIdRewriter, RewriteError};
pub use selector::{
    Decision, LayerPacket, LayerSelector, Layers, LayersChanged, Layout, KEYFRAME_RETRY_INITIAL,
    KEYFRAME_RETRY_MAX,
};
pub use structure::StreamLayers;
