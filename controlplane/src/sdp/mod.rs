//! SDP offer/answer for WebRTC transports (JSEP, RFC 8829): parsing remote
//! descriptions with the `sdp` crate and writing ours as text.
//!
//! Weir is always ICE-lite, always bundles everything on one 5-tuple with
//! rtcp-mux, and is always the DTLS server: it answers publish offers with
//! `a=setup:passive` and offers `a=setup:actpass` on subscribe transports,
//! requiring the answer to say `active`.
mod codec;
mod parse;
mod write;

pub(crate) use codec::Format;
pub(crate) use parse::{parse, RemoteDescription, Setup};
pub(crate) use write::{publish_answer, subscribe_offer, AcceptedMedia, LocalParams, OfferSlot};

/// Why an SDP was refused. The message is meant for the application's
/// developer, so it names the line or attribute at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SdpError {
    /// The text is not SDP.
    #[error("unparsable SDP: {0}")]
    Syntax(String),
    /// Something required is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A value is present but wrong.
    #[error("{0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests;
