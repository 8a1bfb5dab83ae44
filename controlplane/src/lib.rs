//! The Weir SDK: a signaling-agnostic WebRTC SFU.
//!
//! ```text
//! Worker (data-plane cores) ─ Router (a room) ─┬─ PublishTransport ── Publisher (a track)
//!                                              └─ SubscribeTransport ─ Subscriber
//! ```
//!
//! The application owns signaling: it carries offers, answers and candidates
//! between its clients and these objects however it likes (the reference
//! server in `signaling/` uses WebSocket JSON). Media never passes through
//! this crate after the DTLS handshake: the data plane (`weir-dataplane`)
//! forwards it on the core that owns each transport.
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
#![deny(missing_docs)]
#![warn(unreachable_pub)]

mod candidate;
mod dtls;
mod error;
mod publish;
mod redact;
mod router;
mod sdp;
mod subscribe;
mod transport;
mod types;
mod worker;

pub use error::{Error, Result};
pub use publish::{OfferedTrack, PublishTransport, Publisher};
pub use router::{Router, RouterConfig, RouterEvent, TrackInfo, TransportConfig};
pub use subscribe::{SubscribeTransport, Subscriber};
pub use types::*;
pub use worker::{IoBackend, Placement, Worker, WorkerConfig};

/// Entry points for the fuzz targets in `controlplane/fuzz`; not API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `text` as a remote description; if it parses, answers it as a
    /// publish offer and writes a subscribe offer.
    pub fn sdp(text: &str) {
        let Ok(remote) = crate::sdp::parse(text) else { return };
        let local = crate::sdp::LocalParams {
            ice_ufrag: "fuzz".into(),
            ice_pwd: "fuzzfuzzfuzzfuzzfuzzfuzz".into(),
            fingerprint: "00".into(),
            candidate: std::net::SocketAddr::from(([127, 0, 0, 1], 9)),
            session_id: 1,
            version: 1,
        };
        let _ = crate::sdp::publish_answer(&remote, &local);
    }
}
