//! Weir relay: tracks of one Weir server pulled into routers of another,
//! over one QUIC connection per pair of servers.
//!
//! * [`proto`]: the wire protocol without IO — framed, versioned control
//!   messages on one bidirectional stream and compact headers for RTP and
//!   RTCP-feedback datagrams.
//! * [`auth`]: both servers prove a shared cluster secret, bound to the TLS
//!   session.
//! * [`RelayEndpoint`] / [`RelayPeer`]: the quinn-based IO. A peer serves
//!   the routers its endpoint was given ([`RelayEndpoint::serve_router`])
//!   and pulls tracks of the other side into local routers
//!   ([`RelayPeer::pull`]), and data channels the same way
//!   ([`RelayPeer::pull_data`], one QUIC stream per channel).
//!
//! # Data path
//! On the origin, a data-plane tap on the publishing core hands each
//! published packet (decrypted, with its layer facts) to the served track's
//! task, which keeps it in a retransmission ring and sends it as one
//! datagram. On the downstream server, the datagram loop rebuilds the
//! packet and feeds it to a relayed track registered on one data-plane
//! core, which fans it out to local subscribers exactly like a local
//! publisher's packet (same layer selection, same NACK rings). Keyframe
//! requests and NACKs those rings cannot answer go back as feedback
//! datagrams. See `docs/relay.md`.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

#[cfg(test)]
mod alloc_tests;
mod arena;
pub mod auth;
#[doc(hidden)]
pub mod bench_support;
mod counters;
mod data;
mod endpoint;
mod filter;
mod peer;
pub mod proto;
mod resume;
mod ring;
mod transport;

pub use counters::RelayCounters;
pub use data::{DataCatalogEvent, PulledData};
pub use endpoint::{CatalogEvent, RelayConfig, RelayEndpoint};
pub use peer::{DownstreamReport, PulledTrack, RelayPeer};
pub use transport::ALPN;

/// Errors of the relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A configuration that cannot work.
    #[error("relay configuration: {0}")]
    Config(String),
    /// A socket or QUIC connection error.
    #[error("relay IO: {0}")]
    Io(String),
    /// The peer refused us (wrong cluster secret, other version).
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The peer broke the protocol.
    #[error("relay protocol: {0}")]
    Protocol(proto::ProtoError),
    /// The connection or stream ended.
    #[error("relay connection closed: {0}")]
    Closed(String),
    /// Something took too long.
    #[error("relay timeout: {0}")]
    Timeout(&'static str),
    /// The origin has no such router or track.
    #[error("unknown track at the origin: {0}")]
    UnknownTrack(String),
    /// The local router refused the track.
    #[error("local router: {0}")]
    Router(String),
}
