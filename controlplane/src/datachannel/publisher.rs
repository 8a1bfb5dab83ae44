//! `DataPublisher`: a channel a client opened on its publish transport, read
//! by one loop that hands every message to the channel's subscribers.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::watch;
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

/// A published data channel's shared state.
pub(crate) struct DataPublisherInner {
    pub(crate) info: DataPublisherInfo,
    stream: Arc<Stream>,
    link: Arc<Link>,
    subscribers: Mutex<Vec<Arc<SubscriberPipe>>>,
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
        Arc::new(Self {
            info: DataPublisherInfo {
                id,
                transport: link.transport.clone(),
                params: incoming.params,
            },
            stream: incoming.stream,
            link,
            subscribers: Mutex::new(Vec::new()),
            closed: watch::channel(None).0,
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            router,
        })
    }

    pub(crate) fn params(&self) -> &DataChannelParams {
        &self.info.params
    }

    /// Starts the read loop.
    pub(crate) fn start(self: &Arc<Self>) {
        let this = self.clone();
        self.link
            .runtime
            .spawn(async move { this.read_loop().await });
    }

    async fn read_loop(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_MESSAGE_SIZE];
        let mut closed = self.closed.subscribe();
        loop {
            let read = tokio::select! {
                r = self.stream.read_sctp(&mut buf) => r,
                _ = closed.wait_for(Option::is_some) => return,
            };
            let (n, ppi) = match read {
                Ok((0, PayloadProtocolIdentifier::Unknown)) => {
                    let reason = match self.link.ended_reason() {
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
                        Ok(Dcep::Open(_)) => self.link.fail(format!(
                            "stream {}: DATA_CHANNEL_OPEN on a channel already open",
                            self.stream.stream_identifier()
                        )),
                        Err(e) => self
                            .link
                            .fail(format!("stream {}: {e}", self.stream.stream_identifier())),
                    }
                    continue;
                }
                // Deprecated partial-message PPIDs and unknown ones.
                PayloadProtocolIdentifier::Unknown => {
                    self.link.fail(format!(
                        "stream {}: a message with a PPID WebRTC does not use",
                        self.stream.stream_identifier()
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
            self.messages.fetch_add(1, Ordering::Relaxed);
            self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            let msg = DataMessage { data, is_text };
            let subscribers = {
                let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
                subs.retain(|s| !s.is_closed());
                subs.clone()
            };
            for s in subscribers {
                s.offer(&msg);
            }
        }
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
        if let Some(router) = self.router.upgrade() {
            router.remove_data(&self.info.id);
        }
        let stream = self.stream.clone();
        self.link.runtime.spawn(async move {
            // Resets our outgoing stream: the client's channel closes.
            let _ = stream.shutdown(std::net::Shutdown::Both).await;
        });
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

    /// Its SCTP stream id on the publish transport.
    pub fn stream_id(&self) -> u16 {
        self.inner.stream.stream_identifier()
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
