//! `DataPublisher`: a channel a client opened on its publish transport, read
//! by one loop that hands every message to the channel's subscribers (and
//! to relay taps). A channel of another server, fed by a relay, is the same
//! object without an SCTP stream.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use webrtc_sctp::chunk::chunk_payload_data::PayloadProtocolIdentifier;
use webrtc_sctp::stream::Stream;

use super::dcep::{self, Dcep};
use super::link::{Incoming, Link};
use super::subscriber::SubscriberPipe;
use super::{
    DataChannelParams, DataChannelStats, DataMessage, DataPublisherInfo, MAX_MESSAGE_SIZE,
};
use crate::router::RouterInner;
use crate::types::DataPublisherId;

/// Where a published channel's messages come from.
enum Source {
    /// A client's SCTP stream on a publish transport.
    Sctp {
        stream: Arc<Stream>,
        link: Arc<Link>,
    },
    /// Another server, through a relay ([`crate::RemoteData::push`]).
    Relay,
}

/// A relay's copy of a channel's messages ([`crate::DataTap`]).
pub(crate) struct TapSender {
    pub(crate) tx: mpsc::Sender<DataMessage>,
    /// Messages of a partially reliable channel dropped on a full queue.
    pub(crate) dropped: Arc<AtomicU64>,
    /// Set when a reliable channel's tap overflowed and was cut off.
    pub(crate) overflow: Arc<Mutex<Option<String>>>,
}

impl TapSender {
    /// Queues a message; `false` once the tap is gone or was cut off.
    fn offer(&self, msg: &DataMessage, reliable: bool) -> bool {
        match self.tx.try_send(msg.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) if reliable => {
                // Dropping would break a reliable channel's promise: end
                // the tap, which ends the relayed channel with this reason.
                *self.overflow.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                    "the relay fell behind ({} messages queued)",
                    self.tx.max_capacity()
                ));
                false
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }
}

/// A published data channel's shared state.
pub(crate) struct DataPublisherInner {
    pub(crate) info: DataPublisherInfo,
    source: Source,
    subscribers: Mutex<Vec<Arc<SubscriberPipe>>>,
    taps: Mutex<Vec<TapSender>>,
    closed: watch::Sender<Option<String>>,
    messages: AtomicU64,
    bytes: AtomicU64,
    router: Weak<RouterInner>,
}

impl DataPublisherInner {
    /// Wraps a channel the peer opened; [`Self::start`] begins reading.
    pub(crate) fn new(
        id: DataPublisherId,
        link: Arc<Link>,
        incoming: Incoming,
        router: Weak<RouterInner>,
    ) -> Arc<Self> {
        let info = DataPublisherInfo {
            id,
            transport: link.transport.clone(),
            params: incoming.params,
        };
        Self::with_source(
            info,
            Source::Sctp {
                stream: incoming.stream,
                link,
            },
            router,
        )
    }

    /// A channel of another server; a relay feeds it with [`Self::deliver`].
    pub(crate) fn new_relayed(info: DataPublisherInfo, router: Weak<RouterInner>) -> Arc<Self> {
        Self::with_source(info, Source::Relay, router)
    }

    fn with_source(
        info: DataPublisherInfo,
        source: Source,
        router: Weak<RouterInner>,
    ) -> Arc<Self> {
        Arc::new(Self {
            info,
            source,
            subscribers: Mutex::new(Vec::new()),
            taps: Mutex::new(Vec::new()),
            closed: watch::channel(None).0,
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            router,
        })
    }

    pub(crate) fn params(&self) -> &DataChannelParams {
        &self.info.params
    }

    /// Starts the read loop (of a client's channel; a relayed one has
    /// none).
    pub(crate) fn start(self: &Arc<Self>) {
        let Source::Sctp { stream, link } = &self.source else {
            return;
        };
        let (this, stream, link) = (self.clone(), stream.clone(), link.clone());
        link.runtime
            .clone()
            .spawn(async move { this.read_loop(stream, link).await });
    }

    async fn read_loop(self: Arc<Self>, stream: Arc<Stream>, link: Arc<Link>) {
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE];
        let mut closed = self.closed.subscribe();
        loop {
            let read = tokio::select! {
                r = stream.read_sctp(&mut buf) => r,
                _ = closed.wait_for(Option::is_some) => return,
            };
            let (n, ppi) = match read {
                Ok((0, PayloadProtocolIdentifier::Unknown)) => {
                    let reason = match link.ended_reason() {
                        Some(r) => format!("the SCTP association ended: {r}"),
                        None => "the client closed the channel".to_owned(),
                    };
                    return self.close(reason);
                }
                Ok(r) => r,
                Err(webrtc_sctp::Error::ErrShortBuffer { .. }) => {
                    return self.close(format!(
                        "the client sent a message over {MAX_MESSAGE_SIZE} bytes"
                    ));
                }
                Err(e) => return self.close(format!("reading the channel failed: {e}")),
            };
            let is_text = match ppi {
                PayloadProtocolIdentifier::String => true,
                PayloadProtocolIdentifier::Binary => false,
                PayloadProtocolIdentifier::StringEmpty => true,
                PayloadProtocolIdentifier::BinaryEmpty => false,
                PayloadProtocolIdentifier::Dcep => {
                    match dcep::parse(&buf[..n]) {
                        // A late ACK is harmless; Weir never sent an OPEN here.
                        Ok(Dcep::Ack) => continue,
                        Ok(Dcep::Open(_)) => link.fail(format!(
                            "stream {}: DATA_CHANNEL_OPEN on a channel already open",
                            stream.stream_identifier()
                        )),
                        Err(e) => link.fail(format!("stream {}: {e}", stream.stream_identifier())),
                    }
                    continue;
                }
                // Deprecated partial-message PPIDs and unknown ones.
                PayloadProtocolIdentifier::Unknown => {
                    link.fail(format!(
                        "stream {}: a message with a PPID WebRTC does not use",
                        stream.stream_identifier()
                    ));
                    continue;
                }
            };
            let data = match ppi {
                PayloadProtocolIdentifier::StringEmpty | PayloadProtocolIdentifier::BinaryEmpty => {
                    Bytes::new()
                }
                _ => Bytes::copy_from_slice(&buf[..n]),
            };
            self.deliver(DataMessage { data, is_text });
        }
    }

    /// Hands one message to every subscriber and relay tap.
    pub(crate) fn deliver(&self, msg: DataMessage) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(msg.data.len() as u64, Ordering::Relaxed);
        let subscribers = {
            let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
            subs.retain(|s| !s.is_closed());
            subs.clone()
        };
        for s in subscribers {
            s.offer(&msg);
        }
        let reliable = self.info.params.reliability.is_reliable();
        self.taps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|t| t.offer(&msg, reliable));
    }

    /// Adds a relay tap; `false` if this publisher closed already.
    pub(crate) fn attach_tap(&self, tap: TapSender) -> bool {
        let mut taps = self.taps.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.borrow().is_some() {
            return false;
        }
        taps.push(tap);
        true
    }

    /// A receiver of the close reason.
    pub(crate) fn closed_watch(&self) -> watch::Receiver<Option<String>> {
        self.closed.subscribe()
    }

    /// Adds a subscriber whose channel is open; `false` if this publisher
    /// closed already.
    pub(crate) fn attach(&self, pipe: Arc<SubscriberPipe>) -> bool {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.borrow().is_some() {
            return false;
        }
        subs.push(pipe);
        true
    }

    /// Why it closed, if it did.
    pub(crate) fn closed_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }

    /// Closes the channel toward its client and every subscriber's, and
    /// leaves the router. The first reason wins.
    pub(crate) fn close(&self, reason: String) {
        let first = self.closed.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason.clone());
            true
        });
        if !first {
            return;
        }
        tracing::debug!(data = %self.info.id, "data publisher closed: {reason}");
        let subscribers =
            std::mem::take(&mut *self.subscribers.lock().unwrap_or_else(|e| e.into_inner()));
        for s in subscribers {
            s.close(format!("the publisher's channel closed: {reason}"));
        }
        // Their receivers see the end after the messages already queued.
        self.taps.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if let Some(router) = self.router.upgrade() {
            router.remove_data(&self.info.id);
        }
        if let Source::Sctp { stream, link } = &self.source {
            let stream = stream.clone();
            link.runtime.spawn(async move {
                // Resets our outgoing stream: the client's channel closes.
                let _ = stream.shutdown(std::net::Shutdown::Both).await;
            });
        }
    }

    fn stats(&self) -> DataChannelStats {
        DataChannelStats {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            ..Default::default()
        }
    }
}

/// A data channel a client publishes: every message it sends on it reaches
/// every [`crate::DataSubscriber`] of it, with its type (text or binary).
#[derive(Clone)]
pub struct DataPublisher {
    pub(crate) inner: Arc<DataPublisherInner>,
}

impl std::fmt::Debug for DataPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPublisher")
            .field("id", &self.inner.info.id)
            .finish()
    }
}

impl DataPublisher {
    /// Its id, unique in the worker.
    pub fn id(&self) -> &DataPublisherId {
        &self.inner.info.id
    }

    /// What the router lists about it.
    pub fn info(&self) -> DataPublisherInfo {
        self.inner.info.clone()
    }

    /// Its label.
    pub fn label(&self) -> &str {
        &self.inner.info.params.label
    }

    /// Its SCTP stream id on the publish transport (0 for a channel of
    /// another server, which has none here).
    pub fn stream_id(&self) -> u16 {
        match &self.inner.source {
            Source::Sctp { stream, .. } => stream.stream_identifier(),
            Source::Relay => 0,
        }
    }

    /// Messages and bytes received from the client.
    pub fn stats(&self) -> DataChannelStats {
        self.inner.stats()
    }

    /// Why it closed, or `None` while open.
    pub fn closed_reason(&self) -> Option<String> {
        self.inner.closed_reason()
    }

    /// Resolves with the reason once it closed (the client closed it, its
    /// association or transport ended, or [`Self::close`]).
    pub async fn closed(&self) -> String {
        let mut rx = self.inner.closed.subscribe();
        let reason = rx.wait_for(Option::is_some).await.map(|r| r.clone());
        match reason {
            Ok(r) => r.unwrap_or_default(),
            Err(_) => "closed".into(),
        }
    }

    /// Closes it: the client's channel and every subscriber's close.
    pub async fn close(&self) {
        self.inner.close("closed by the application".into());
    }
}
