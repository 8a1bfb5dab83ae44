//! `DataSubscriber`: a channel Weir opens toward a subscribe transport's
//! client, fed by one publisher.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, watch};
use webrtc_sctp::chunk::chunk_payload_data::PayloadProtocolIdentifier;
use webrtc_sctp::stream::Stream;

use super::backlog::{Admit, Backlog};
use super::dcep::{self, Dcep};
use super::link::{ppi_for, wire_payload, DataSide, Link};
use super::publisher::DataPublisherInner;
use super::{DataChannelParams, DataChannelStats, DataMessage};
use crate::error::{Error, Result};
use crate::types::DataPublisherId;

/// One subscriber's queue, writer and state.
pub(crate) struct SubscriberPipe {
    runtime: tokio::runtime::Handle,
    publisher: DataPublisherId,
    params: DataChannelParams,
    stream_id: u16,
    /// Bound on queued + unacknowledged bytes.
    limit: usize,
    backlog: Backlog,
    tx: mpsc::UnboundedSender<DataMessage>,
    rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<DataMessage>>>,
    stream: OnceLock<Arc<Stream>>,
    /// The peer's `a=max-message-size`, once the association is up.
    max_send: OnceLock<usize>,
    opened: watch::Sender<bool>,
    closed: watch::Sender<Option<String>>,
    messages: AtomicU64,
    bytes: AtomicU64,
    dropped_messages: AtomicU64,
    dropped_bytes: AtomicU64,
}

impl SubscriberPipe {
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        publisher: &DataPublisherInner,
        stream_id: u16,
        limit: usize,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            runtime,
            publisher: publisher.info.id.clone(),
            params: publisher.params().clone(),
            stream_id,
            limit,
            backlog: Backlog::default(),
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            stream: OnceLock::new(),
            max_send: OnceLock::new(),
            opened: watch::channel(false).0,
            closed: watch::channel(None).0,
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dropped_messages: AtomicU64::new(0),
            dropped_bytes: AtomicU64::new(0),
        })
    }

    pub(crate) fn publisher_id(&self) -> &DataPublisherId {
        &self.publisher
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Waits for the association, opens the channel and joins the
    /// publisher's fan-out. Ends the pipe with the reason on failure.
    pub(crate) async fn run(
        self: Arc<Self>,
        side: Arc<DataSide>,
        publisher: Arc<DataPublisherInner>,
    ) {
        let mut closed = self.closed.subscribe();
        let link = tokio::select! {
            l = side.link() => l,
            _ = closed.wait_for(Option::is_some) => return,
        };
        let link = match link {
            Ok(l) => l,
            Err(e) => return self.close(e.to_string()),
        };
        let stream = match link.open(self.stream_id, &self.params).await {
            Ok(s) => s,
            Err(e) => return self.close(e.to_string()),
        };
        let _ = self.stream.set(stream.clone());
        let _ = self.max_send.set(link.max_send);
        if self.is_closed() {
            // Closed while opening: reset what we just opened.
            let _ = stream.shutdown(std::net::Shutdown::Both).await;
            return;
        }
        let Some(rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        link.runtime
            .spawn(self.clone().read_loop(stream.clone(), link.clone()));
        link.runtime.spawn(self.clone().write_loop(stream, rx));
        if !publisher.attach(self.clone()) {
            let reason = publisher.closed_reason().unwrap_or_default();
            return self.close(format!("the publisher's channel closed: {reason}"));
        }
        self.opened.send_replace(true);
    }

    /// Reads what the client sends on the channel: DCEP ACK (after which
    /// the channel's reliability applies), and the stream's end when the
    /// client closes it. Data from the client is discarded: a subscriber
    /// receives only.
    async fn read_loop(self: Arc<Self>, stream: Arc<Stream>, link: Arc<Link>) {
        let mut buf = vec![0u8; 2048];
        let mut closed = self.closed.subscribe();
        loop {
            let read = tokio::select! {
                r = stream.read_sctp(&mut buf) => r,
                _ = closed.wait_for(Option::is_some) => return,
            };
            match read {
                Ok((0, PayloadProtocolIdentifier::Unknown)) => {
                    let reason = match link.ended_reason() {
                        Some(r) => format!("the SCTP association ended: {r}"),
                        None => "the client closed the channel".to_owned(),
                    };
                    return self.close(reason);
                }
                Ok((n, PayloadProtocolIdentifier::Dcep)) => match dcep::parse(&buf[..n]) {
                    Ok(Dcep::Ack) => {
                        let (unordered, kind, value) = dcep::stream_reliability(&self.params);
                        stream.set_reliability_params(unordered, kind, value);
                    }
                    Ok(Dcep::Open(_)) => link.fail(format!(
                        "stream {}: DATA_CHANNEL_OPEN on a channel Weir opened",
                        self.stream_id
                    )),
                    Err(e) => link.fail(format!("stream {}: {e}", self.stream_id)),
                },
                Ok(_) | Err(webrtc_sctp::Error::ErrShortBuffer { .. }) => {}
                Err(e) => return self.close(format!("reading the channel failed: {e}")),
            }
        }
    }

    async fn write_loop(
        self: Arc<Self>,
        stream: Arc<Stream>,
        mut rx: mpsc::UnboundedReceiver<DataMessage>,
    ) {
        let mut closed = self.closed.subscribe();
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = closed.wait_for(Option::is_some) => None,
            };
            let Some(msg) = msg else { break };
            let len = msg.data.len();
            let written = stream
                .write_sctp(&wire_payload(&msg.data), ppi_for(msg.is_text, len))
                .await;
            self.backlog.release(len);
            match written {
                Ok(_) => {
                    self.messages.fetch_add(1, Ordering::Relaxed);
                    self.bytes.fetch_add(len as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.close(format!("sending failed: {e}"));
                    break;
                }
            }
        }
        // Whatever is left was never sent; release its booking.
        rx.close();
        while let Ok(m) = rx.try_recv() {
            self.backlog.release(m.data.len());
        }
    }

    /// Queues a message from the publisher, or drops it, or closes this
    /// subscriber, by the backlog bound.
    pub(crate) fn offer(&self, msg: &DataMessage) {
        let len = msg.data.len();
        let reliable = self.params.reliability.is_reliable();
        let max_send = self
            .max_send
            .get()
            .copied()
            .unwrap_or(super::MAX_MESSAGE_SIZE);
        if len > max_send {
            if reliable {
                self.close(format!(
                    "a {len}-byte message exceeds the client's a=max-message-size of {max_send}"
                ));
            } else {
                self.count_drop(len);
            }
            return;
        }
        let in_sctp = self.stream.get().map_or(0, |s| s.buffered_amount());
        match self.backlog.admit(len, in_sctp, self.limit, reliable) {
            Admit::Send => {
                if self.tx.send(msg.clone()).is_err() {
                    self.backlog.release(len);
                }
            }
            Admit::Drop => self.count_drop(len),
            Admit::Close => self.close(format!(
                "the client is too slow: more than {} bytes are waiting on a reliable channel",
                self.limit
            )),
        }
    }

    fn count_drop(&self, len: usize) {
        self.dropped_messages.fetch_add(1, Ordering::Relaxed);
        self.dropped_bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Closes the channel toward the client (a stream reset). The first
    /// reason wins.
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
        tracing::debug!(data = %self.publisher, stream = self.stream_id, "data subscriber closed: {reason}");
        if let Some(stream) = self.stream.get().cloned() {
            self.runtime.spawn(async move {
                let _ = stream.shutdown(std::net::Shutdown::Both).await;
            });
        }
    }

    fn stats(&self) -> DataChannelStats {
        DataChannelStats {
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped_messages: self.dropped_messages.load(Ordering::Relaxed),
            dropped_bytes: self.dropped_bytes.load(Ordering::Relaxed),
        }
    }
}

/// A subscription to a [`crate::DataPublisher`]: Weir opens a channel toward
/// the subscribe transport's client with the publisher's label, protocol,
/// ordering and reliability, and forwards every message into it.
#[derive(Clone)]
pub struct DataSubscriber {
    pub(crate) pipe: Arc<SubscriberPipe>,
}

impl std::fmt::Debug for DataSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSubscriber")
            .field("publisher", &self.pipe.publisher)
            .field("stream_id", &self.pipe.stream_id)
            .finish()
    }
}

impl DataSubscriber {
    /// The data publisher subscribed to.
    pub fn data_publisher_id(&self) -> &DataPublisherId {
        &self.pipe.publisher
    }

    /// The channel's parameters (the publisher's).
    pub fn params(&self) -> &DataChannelParams {
        &self.pipe.params
    }

    /// Its label (the publisher's).
    pub fn label(&self) -> &str {
        &self.pipe.params.label
    }

    /// The SCTP stream id of the channel Weir opens (the client's
    /// `RTCDataChannel.id`), fixed when subscribing.
    pub fn stream_id(&self) -> u16 {
        self.pipe.stream_id
    }

    /// Resolves once Weir opened the channel (sent DATA_CHANNEL_OPEN) and
    /// forwards to it; fails with the reason if it closed first.
    pub async fn opened(&self) -> Result<()> {
        let mut opened = self.pipe.opened.subscribe();
        let mut closed = self.pipe.closed.subscribe();
        tokio::select! {
            r = opened.wait_for(|o| *o) => r.map(|_| ()).map_err(|_| Error::Closed),
            r = closed.wait_for(Option::is_some) => {
                let reason = r.map(|r| r.clone().unwrap_or_default()).unwrap_or_default();
                Err(Error::DataChannel(reason))
            }
        }
    }

    /// Messages forwarded and dropped.
    pub fn stats(&self) -> DataChannelStats {
        self.pipe.stats()
    }

    /// Why it closed, or `None` while open.
    pub fn closed_reason(&self) -> Option<String> {
        self.pipe.closed.borrow().clone()
    }

    /// Resolves with the reason once it closed.
    pub async fn closed(&self) -> String {
        let mut rx = self.pipe.closed.subscribe();
        let reason = rx.wait_for(Option::is_some).await.map(|r| r.clone());
        match reason {
            Ok(r) => r.unwrap_or_default(),
            Err(_) => "closed".into(),
        }
    }

    /// Closes the channel toward the client.
    pub async fn close(&self) {
        self.pipe.close("closed by the application".into());
    }
}
