//! Weir: an embeddable WebRTC SFU.
//!
//! This facade re-exports the SDK of [`weir_controlplane`] (the `Worker` pool,
//! `Router`s, transports, publishers and subscribers) together with the codec
//! facts of [`weir_codecs`]. See `README.md` and `docs/` for the design.
#![deny(missing_docs)]

pub use weir_controlplane::*;

/// Codec payload parsers and RTP header extensions.
pub use weir_codecs as codecs;
/// The data plane: per-core workers, demux, SRTP, forwarding.
pub use weir_dataplane as dataplane;
/// The relay between Weir servers over QUIC (`RelayEndpoint`).
pub use weir_relay as relay;
