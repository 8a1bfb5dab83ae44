//! The Weir SDK: a signaling-agnostic WebRTC SFU.
//!
//! ```text
//! Worker (data-plane cores) ─ Router (a room) ─┬─ PublishTransport ── Publisher (a track)
//!                                              │                    └ DataPublisher (a data channel)
//!                                              └─ SubscribeTransport ─ Subscriber
//!                                                                   └ DataSubscriber
//! ```
//!
//! The application owns signaling: it carries offers, answers and candidates
//! between its clients and these objects however it likes (the reference
//! server in `signaling/` uses WebSocket JSON). Media never passes through
//! this crate after the DTLS handshake: the data plane (`weir-dataplane`)
//! forwards it on the core that owns each transport. DataChannels are the
//! exception: SCTP runs here, over each transport's DTLS connection
//! ([`DataPublisher`], [`DataSubscriber`]).
//!
//! ```no_run
//! # async fn demo(client_offer: String) -> Result<(), weir_controlplane::Error> {
//! use weir_controlplane::*;
//! let worker = Worker::new(WorkerConfig::default()).await?;
//! let router = worker.create_router(RouterConfig::default());
//! let publish = router.create_publish_transport(TransportConfig::default()).await?;
//! let answer = publish.get_answer(&client_offer).await?; // → to the publisher
//! let video = publish.publish("0").await?;               // mid "0"; waits for media
//! let subscribe = router.create_subscribe_transport(TransportConfig::default()).await?;
//! let (_subscriber, offer) = subscribe.subscribe(video.id()).await?; // → to a subscriber
//! # let subscriber_answer = String::new();
//! subscribe.set_answer(&subscriber_answer).await?;
//! # Ok(()) }
//! ```
//!
//! Data channels go the same way: the client opens a channel in its offer's
//! data channel m-section, the application publishes it by label, and each
//! subscriber gets a channel of the same label and reliability.
//!
//! ```no_run
//! # async fn demo(publish: weir_controlplane::PublishTransport,
//! #     subscribe: weir_controlplane::SubscribeTransport) -> weir_controlplane::Result<()> {
//! let chat = publish.data_publish("chat").await?; // resolves when the client's channel opens
//! let (subscriber, offer) = subscribe.data_subscribe(chat.id()).await?; // → to the subscriber
//! # let answer = String::new();
//! subscribe.set_answer(&answer).await?;
//! subscriber.opened().await?; // Weir opened "chat" toward the subscriber
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod candidate;
mod datachannel;
mod dtls;
mod dtls_backoff;
mod dtls_slot;
mod error;
mod publish;
mod redact;
mod relay;
mod router;
mod sdp;
mod stats;
mod subscribe;
mod transport;
mod types;
mod worker;

pub use datachannel::{
    DataChannelParams, DataChannelStats, DataMessage, DataPublisher, DataPublisherInfo,
    DataSubscriber, Reliability, MAX_MESSAGE_SIZE,
};
pub use dtls::{dtls_srtp_handshake, sha256_fingerprint};
pub use dtls_backoff::FlightBackoff;
pub use error::{Error, Result};
pub use publish::{OfferedTrack, PublishTransport, Publisher};
pub use relay::{
    CodecParams, DataTap, RemoteData, RemoteDataSpec, RemoteTrack, RemoteTrackSpec, TrackTap,
};
pub use router::{Router, RouterConfig, RouterEvent, TrackInfo, TransportConfig};
pub use stats::{escape_label, StreamStats};
pub use subscribe::{SubscribeTransport, Subscriber};
pub use types::*;
pub use worker::{IoBackend, Placement, Worker, WorkerConfig};

/// Entry points for the fuzz targets in `controlplane/fuzz`; not API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `text` as a remote description; if it parses, answers it as a
    /// publish offer and writes a subscribe offer.
    pub fn sdp(text: &str) {
        let Ok(remote) = crate::sdp::parse(text) else {
            return;
        };
        let local = crate::sdp::LocalParams {
            ice_ufrag: "fuzz".into(),
            ice_pwd: "fuzzfuzzfuzzfuzzfuzzfuzz".into(),
            fingerprint: "00".into(),
            candidate: std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
            session_id: 1,
            version: 1,
        };
        let _ = crate::sdp::publish_answer_with_data(&remote, &local);
    }
}
