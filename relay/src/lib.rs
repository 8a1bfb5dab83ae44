//! Weir relay: tracks of one Weir server pulled into routers of another,
//! over one QUIC connection per pair of servers.
//!
//! * [`proto`]: the wire protocol without IO — framed, versioned control
//!   messages on one bidirectional stream and compact headers for RTP and
//!   RTCP-feedback datagrams.
//! * [`auth`]: both servers prove a shared cluster secret, bound to the TLS
//!   session.
#![deny(missing_docs)]
#![warn(unreachable_pub)]

pub mod auth;
pub mod proto;
