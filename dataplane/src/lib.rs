//! The Weir data plane: one worker thread per core, each owning a UDP port,
//! the transports placed on it and the tracks they publish.
//!
//! The logic lives in sans-IO state machines ([`core::Core`], [`ice`],
//! [`forwarder::Forwarder`], [`srtp::SrtpSession`]); [`driver`] is the thin
//! IO loop around them.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod bwe;
pub mod core;
pub mod counters;
pub mod demux;
pub mod driver;
pub mod fanout;
pub mod forwarder;
pub mod ice;
pub mod io;
pub mod layers;
pub mod packet;
pub mod packet_pool;
pub mod rtcp;
pub mod srtp;

pub use crate::core::{
    CoreInput, DownstreamSummary, InboundSpec, RelayFeedback, RelayTapSender, SessionEvent,
    SessionId, SubscriberLayers, SubscriberSpec, TrackKey,
};
pub use driver::{DataPlane, DataPlaneConfig};
pub use packet::Kind;
