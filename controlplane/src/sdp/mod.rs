//! SDP offer/answer for WebRTC transports (JSEP, RFC 8829): parsing remote
//! descriptions with the `sdp` crate and writing ours as text.
//!
//! Weir is always ICE-lite and always bundles everything on one 5-tuple with
//! rtcp-mux. It prefers the DTLS server role (`a=setup:passive` in answers,
//! `actpass` in offers) and takes the client role when the peer asks for it:
//! webrtc-rs and pion answer an ICE-lite offer with `passive`.
mod codec;
mod parse;
mod write;

pub(crate) use codec::{Format, DD_URI, TWCC_URI};
pub(crate) use parse::{parse, RemoteDescription, Setup};
#[cfg(test)]
pub(crate) use write::{publish_answer, subscribe_offer};
pub(crate) use write::{
    publish_answer_with_data, subscribe_offer_with_data, AcceptedData, AcceptedMedia, DataSlot,
    LocalParams, OfferSlot, RtxOffer, MAX_MESSAGE_SIZE, SCTP_PORT,
};

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
