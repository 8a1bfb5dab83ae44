//! DataChannels (RFC 8831): an SCTP association over each transport's DTLS
//! connection (webrtc-sctp), channels opened with DCEP (RFC 8832, message
//! layouts from webrtc-data), and the fan-out of a published channel to the
//! channels Weir opens toward its subscribers.
//!
//! ```text
//! client ─ DTLS ─ SCTP ─ DataPublisher ─┬─ DataSubscriber ─ SCTP ─ DTLS ─ client
//!   (opens "chat")        (read loop)   └─ DataSubscriber ─ SCTP ─ DTLS ─ client
//!                                            (writer task, bounded backlog)
//! ```
//!
//! The publisher's read loop hands each message to every subscriber's queue
//! without waiting on any of them. A subscriber's writer moves its queue
//! into its SCTP stream. What waits for one subscriber (its queue plus the
//! bytes its stream has not had acknowledged) is bounded: past the bound a
//! partially reliable channel drops the message and counts it, a reliable
//! one closes with a reason, because dropping would break its promise.
//!
//! A malformed SCTP packet or a bogus DCEP message ends that transport's
//! association, and so its channels, with the reason; its media and every
//! other transport go on.
mod backlog;
mod dcep;
mod link;
mod packet;
mod publisher;
mod subscriber;

pub(crate) use link::{DataSide, LinkRole};
pub use publisher::DataPublisher;
pub(crate) use publisher::{DataPublisherInner, TapSender};
pub use subscriber::DataSubscriber;
pub(crate) use subscriber::SubscriberPipe;

use bytes::Bytes;

use crate::types::{DataPublisherId, TransportId};

/// How far a channel goes to deliver a message (RFC 8832 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// Every message arrives.
    Reliable,
    /// A message is retransmitted at most this many times
    /// (`maxRetransmits`).
    MaxRetransmits(u32),
    /// A message is given up after this many milliseconds
    /// (`maxPacketLifeTime`).
    MaxLifetime(u32),
}

impl Reliability {
    /// Whether every message must arrive.
    pub fn is_reliable(&self) -> bool {
        *self == Reliability::Reliable
    }
}

/// What a channel is, from its DATA_CHANNEL_OPEN. A subscriber's channel
/// gets the publisher's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataChannelParams {
    /// The label the client gave it.
    pub label: String,
    /// The sub-protocol name (often empty).
    pub protocol: String,
    /// Whether messages arrive in the order they were sent.
    pub ordered: bool,
    /// Reliable or partially reliable.
    pub reliability: Reliability,
    /// The DCEP priority (256 is "normal").
    pub priority: u16,
}

/// A published data channel as the router lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPublisherInfo {
    /// Its id.
    pub id: DataPublisherId,
    /// The publish transport that owns it.
    pub transport: TransportId,
    /// Its parameters.
    pub params: DataChannelParams,
}

/// One data channel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataMessage {
    /// Its bytes (at most [`MAX_MESSAGE_SIZE`]).
    pub data: Bytes,
    /// `true` for a text (UTF-8 string) message, `false` for binary.
    pub is_text: bool,
}

/// The largest message Weir receives and forwards (also announced in SDP
/// as `a=max-message-size`).
pub const MAX_MESSAGE_SIZE: usize = crate::sdp::MAX_MESSAGE_SIZE;

/// Counters of one data publisher or subscriber.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataChannelStats {
    /// Messages received (publisher) or handed to SCTP (subscriber).
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages a subscriber dropped because its backlog was full
    /// (partially reliable channels only) or they exceeded its peer's
    /// `a=max-message-size`.
    pub dropped_messages: u64,
    /// Their bytes.
    pub dropped_bytes: u64,
}
