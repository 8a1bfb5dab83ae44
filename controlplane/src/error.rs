//! The SDK's error type.

/// Everything an SDK call can fail with.
///
/// A failed call leaves its object usable: after `InvalidSdp`, for example,
/// the transport accepts a corrected offer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An offer or answer could not be parsed or negotiated.
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    /// An ICE candidate string did not parse.
    #[error("invalid ICE candidate: {0}")]
    InvalidCandidate(String),
    /// No track with that id exists in the router (or the transport).
    #[error("unknown track '{0}'")]
    UnknownTrack(String),
    /// The transport already subscribes to that track.
    #[error("already subscribed to track '{0}'")]
    AlreadySubscribed(String),
    /// The track was published already.
    #[error("track already published as '{0}'")]
    AlreadyPublished(String),
    /// `set_answer` was called while no offer is outstanding.
    #[error("no offer is waiting for an answer")]
    NoPendingOffer,
    /// The object was closed.
    #[error("closed")]
    Closed,
    /// The data plane could not start or refused a command.
    #[error("data plane: {0}")]
    DataPlane(String),
    /// The DTLS handshake or SRTP key export failed.
    #[error("DTLS: {0}")]
    Dtls(String),
    /// A data channel or its SCTP association failed or was closed; the
    /// message says why.
    #[error("data channel: {0}")]
    DataChannel(String),
    /// No data channel with that id exists in the router, or the client has
    /// no data channel m-section on this transport.
    #[error("unknown data channel '{0}'")]
    UnknownDataChannel(String),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Shorthand for SDK results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
