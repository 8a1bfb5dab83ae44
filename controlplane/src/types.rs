//! Identifiers and plain values of the SDK.
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A published track, unique within a [`crate::Worker`].
    TrackId
);
string_id!(
    /// A router (room), unique within a [`crate::Worker`].
    RouterId
);
string_id!(
    /// A transport, unique within a [`crate::Worker`].
    TransportId
);
string_id!(
    /// A published data channel, unique within a [`crate::Worker`].
    DataPublisherId
);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        })
    }
}

/// A server ICE candidate, in the shape browsers take in `addIceCandidate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCandidate {
    /// The `candidate:` attribute value (without the `a=` prefix).
    pub candidate: String,
    /// The media id the candidate belongs to (the first bundled m-section).
    pub sdp_mid: String,
    /// The index of that m-section.
    pub sdp_mline_index: u16,
}

/// The state of a transport's ICE + DTLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Created; no valid ICE check yet.
    New,
    /// ICE checked; DTLS handshake under way.
    Connecting,
    /// DTLS done, SRTP keys installed: media flows.
    Connected,
    /// ICE consent expired or DTLS failed.
    Failed,
    /// Closed by the application.
    Closed,
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionState::New => "new",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Failed => "failed",
            ConnectionState::Closed => "closed",
        })
    }
}
