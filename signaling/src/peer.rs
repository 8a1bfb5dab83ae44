//! One WebSocket session: a participant's requests, its two transports, and
//! everything the server tells it.
//!
//! The session task handles one request at a time, so the SDK sees each
//! participant's calls in order. Whatever happens elsewhere reaches the
//! session as a [`SessionEvent`] on its own channel: a `publish` that
//! resolved, a renegotiation the SDK asked for, a room change. Messages to the
//! client go through one bounded queue per socket, which the SDK's callbacks
//! (on SDK threads) can write to as well; a client too slow to drain it is
//! disconnected rather than buffered without bound.

use crate::protocol::{
    self, kind_str, DataObject, ErrorCode, Failure, OfferData, OfferTrack, PeerObject, Request,
    RequestId, RoomName, ServerMessage, TrackObject, TransportKind,
};
use crate::room::{Member, Room, RoomEvent};
use crate::App;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use weir::{
    DataPublisher, DataPublisherId, DataSubscriber, PublishTransport, Publisher,
    SubscribeTransport, Subscriber, TrackId, TransportConfig,
};

/// How long closing a participant's SDK objects may take before we move on.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `publishData` waits for the client's channel to open.
const DATA_PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// `publishData` requests one participant may have waiting at once.
const MAX_DATA_PUBLISHING: usize = 16;
/// How long the close frame may take to go out.
const WRITER_TIMEOUT: Duration = Duration::from_secs(2);

/// Close codes (RFC 6455 §7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TRY_AGAIN: u16 = 1013;

/// Something a session learns from outside its own socket.
///
/// The large payloads are boxed: each session's unbounded channel
/// allocates its queue in blocks of 32 events, so the enum's size is paid
/// 32 times per session (7 KiB at 232 bytes) even when it stays empty.
pub(crate) enum SessionEvent {
    /// A `publish(mid)` started by this session resolved.
    Published {
        mid: String,
        result: Box<Result<Publisher, weir::Error>>,
    },
    /// A `data_publish(label)` started by this session resolved.
    DataPublished {
        id: Option<RequestId>,
        label: String,
        result: Box<Result<DataPublisher, weir::Error>>,
    },
    /// The subscribe transport has a new offer of its own.
    NegotiationNeeded(String),
    /// The room changed.
    Room(Box<RoomEvent>),
}

enum Outgoing {
    Text(String),
    Close(u16, &'static str),
}

/// The sending half of a socket; cheap to clone into SDK callbacks.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    overflow: Arc<Notify>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Outbox {
    fn send(&self, msg: &ServerMessage) {
        self.metrics.sent(msg.type_index());
        if let ServerMessage::Error { code, .. } = msg {
            self.metrics.error(*code);
        }
        match self.tx.try_send(Outgoing::Text(msg.to_json())) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.overflow.notify_one(),
            // The writer is gone: the socket is closing.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientGone,
    Leave,
    Shutdown,
    SlowReader,
    Flood,
}

/// Token bucket for incoming messages.
struct Bucket {
    tokens: f64,
    last: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            last: Instant::now(),
            rate: f64::from(rate),
            burst: f64::from(burst),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A participant after `join`.
struct Joined {
    room: Arc<Room>,
    name: String,
    /// Created by the first request that needs it (an offer, a candidate
    /// or `publishData`): a peer that only watches never pays for one
    /// (about 6 KiB of server memory per peer, and its tasks).
    publish: Option<PublishTransport>,
    subscribe: SubscribeTransport,
    /// Offered mids whose `publish` has not resolved yet.
    publishing: HashMap<String, JoinHandle<()>>,
    /// Mids whose `publish` resolved; a renegotiation does not publish them again.
    published_mids: HashSet<String>,
    publishers: HashMap<TrackId, Publisher>,
    subscribers: HashMap<TrackId, Subscriber>,
    /// `publishData` requests waiting for their channel.
    data_publishing: Vec<JoinHandle<()>>,
    data_publishers: HashMap<DataPublisherId, DataPublisher>,
    data_subscribers: HashMap<DataPublisherId, DataSubscriber>,
}

impl Joined {
    /// The publish transport, created on first use with its candidate and
    /// state callbacks.
    async fn publish_transport(&mut self, outbox: &Outbox) -> Result<PublishTransport, Failure> {
        if let Some(p) = &self.publish {
            return Ok(p.clone());
        }
        let publish = self
            .room
            .router()
            .create_publish_transport(TransportConfig::default())
            .await
            .map_err(|e| Failure::sdk(&e))?;
        let (on_candidate, on_state) = transport_callbacks(TransportKind::Publish, outbox);
        publish.on_ice_candidate(on_candidate);
        publish.on_connection_state(on_state);
        self.publish = Some(publish.clone());
        Ok(publish)
    }

    /// An `offer` message for the subscribe transport: the SDP with the
    /// current subscriptions and data channels, as the client needs them to
    /// map m-sections to tracks.
    fn offer(&self, id: Option<RequestId>, sdp: String) -> ServerMessage {
        ServerMessage::Offer {
            id,
            sdp,
            tracks: offer_tracks(&self.subscribe),
            data: offer_data(&self.data_subscribers),
        }
    }
}

/// The candidate and connection-state callbacks of one of a peer's
/// transports: each sends the client a message naming the transport.
fn transport_callbacks(
    kind: TransportKind,
    outbox: &Outbox,
) -> (
    impl Fn(weir::IceCandidate) + Send + Sync + 'static,
    impl Fn(weir::ConnectionState) + Send + Sync + 'static,
) {
    let ob = outbox.clone();
    let on_candidate = move |c: weir::IceCandidate| {
        ob.send(&ServerMessage::Candidate {
            transport: kind,
            candidate: (&c).into(),
        });
    };
    let ob = outbox.clone();
    let on_state = move |s: weir::ConnectionState| {
        ob.send(&ServerMessage::ConnectionState {
            transport: kind,
            state: s.to_string(),
        });
    };
    (on_candidate, on_state)
}

struct Session {
    app: Arc<App>,
    peer_id: String,
    outbox: Outbox,
    events: mpsc::UnboundedSender<SessionEvent>,
    joined: Option<Joined>,
    /// The `unsubscribe` whose offer arrives through `on_negotiation_needed`.
    offer_cause: Option<RequestId>,
}

fn next_peer_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("p{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs one WebSocket session to its end.
pub(crate) async fn run(socket: WebSocket, app: Arc<App>) {
    let _live = crate::SessionGuard::new(&app);
    let peer_id = next_peer_id();
    tracing::debug!(peer = %peer_id, "connected");

    let (sink, stream) = socket.split();
    let (tx, rx) = mpsc::channel(app.limits.outbox_capacity.max(1));
    let writer = tokio::spawn(write_loop(sink, rx));
    let overflow = Arc::new(Notify::new());
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut session = Session {
        outbox: Outbox {
            tx: tx.clone(),
            overflow: overflow.clone(),
            metrics: app.metrics.clone(),
        },
        app,
        peer_id,
        events: events_tx,
        joined: None,
        offer_cause: None,
    };

    let end = session.read_loop(stream, events_rx, &overflow).await;
    tracing::debug!(peer = %session.peer_id, ?end, "disconnecting");
    match end {
        End::SlowReader => session.app.metrics.dropped_slow(),
        End::Flood => session.app.metrics.dropped_flood(),
        _ => {}
    }
    session.cleanup().await;

    let close = match end {
        End::ClientGone => None,
        End::Leave => Some((CLOSE_NORMAL, "left")),
        End::Shutdown => Some((CLOSE_GOING_AWAY, "server shutting down")),
        End::SlowReader => Some((CLOSE_TRY_AGAIN, "not reading fast enough")),
        End::Flood => Some((CLOSE_POLICY, "too many messages")),
    };
    if let Some((code, reason)) = close {
        // The queue may be full (a slow reader): wait a little, then give up.
        let _ = tokio::time::timeout(WRITER_TIMEOUT, tx.send(Outgoing::Close(code, reason))).await;
    } else {
        let _ = tx.try_send(Outgoing::Close(CLOSE_NORMAL, ""));
    }
    drop(tx);
    drop(session);
    let abort = writer.abort_handle();
    if tokio::time::timeout(WRITER_TIMEOUT, writer).await.is_err() {
        abort.abort();
    }
}

/// Messages written into the WebSocket's buffer before one flush.
const WRITE_BATCH: usize = 64;
/// Bytes of text past which a batch is flushed: the WebSocket keeps its
/// write buffer's capacity for the connection's lifetime, so an unbounded
/// batch would cost every member of a big room up to 128 KiB for good.
const WRITE_BATCH_BYTES: usize = 8 * 1024;

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Outgoing>) {
    let mut next = None;
    loop {
        let out = match next.take() {
            Some(out) => out,
            None => match rx.recv().await {
                Some(out) => out,
                None => return,
            },
        };
        match out {
            Outgoing::Text(text) => {
                // Whatever is already queued rides in the same write: a
                // room's join storm (one `peerJoined` per member per join)
                // then costs one syscall per batch, not one per message.
                let mut bytes = text.len();
                if sink.feed(Message::Text(text.into())).await.is_err() {
                    return;
                }
                for _ in 1..WRITE_BATCH {
                    if bytes >= WRITE_BATCH_BYTES {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(Outgoing::Text(text)) => {
                            bytes += text.len();
                            if sink.feed(Message::Text(text.into())).await.is_err() {
                                return;
                            }
                        }
                        Ok(close) => {
                            next = Some(close);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            Outgoing::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                let _ = sink.close().await;
                return;
            }
        }
    }
}

impl Session {
    async fn read_loop(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        mut events: mpsc::UnboundedReceiver<SessionEvent>,
        overflow: &Notify,
    ) -> End {
        let mut shutdown = self.app.shutdown.clone();
        let mut bucket = Bucket::new(
            self.app.limits.messages_per_second,
            self.app.limits.message_burst,
        );
        loop {
            tokio::select! {
                frame = stream.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Binary(_))) => {
                            if !bucket.take(Instant::now()) {
                                return End::Flood;
                            }
                            self.app.metrics.received(protocol::RequestKind::Invalid);
                            self.send_error(None, Failure::new(
                                ErrorCode::BadJson,
                                "binary frames are not accepted; send JSON text",
                            ));
                            continue;
                        }
                        // Pings are answered by the WebSocket layer.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | None => return End::ClientGone,
                        Some(Err(e)) => {
                            // Includes messages over the size limit.
                            tracing::debug!(peer = %self.peer_id, error = %e, "socket error");
                            return End::ClientGone;
                        }
                    };
                    if !bucket.take(Instant::now()) {
                        return End::Flood;
                    }
                    if self.handle_text(text.as_str()).await == Flow::Leave {
                        return End::Leave;
                    }
                }
                Some(ev) = events.recv() => self.handle_event(ev).await,
                _ = overflow.notified() => return End::SlowReader,
                () = stopped(&mut shutdown) => return End::Shutdown,
            }
        }
    }

    fn send(&self, msg: &ServerMessage) {
        self.outbox.send(msg);
    }

    fn send_error(&self, id: Option<RequestId>, failure: Failure) {
        tracing::debug!(peer = %self.peer_id, code = failure.code.as_str(), message = %failure.message, "request failed");
        self.send(&ServerMessage::error(id, failure));
    }

    async fn handle_text(&mut self, text: &str) -> Flow {
        let env = match protocol::parse(text) {
            Ok(env) => env,
            Err(e) => {
                self.app.metrics.received(protocol::RequestKind::Invalid);
                self.send_error(e.id, e.failure);
                return Flow::Continue;
            }
        };
        self.app.metrics.received(env.request.kind());
        let id = env.id;
        match self.dispatch(id.clone(), env.request).await {
            Ok(flow) => flow,
            Err(failure) => {
                self.send_error(id, failure);
                Flow::Continue
            }
        }
    }

    async fn dispatch(&mut self, id: Option<RequestId>, req: Request) -> Result<Flow, Failure> {
        if let Request::Join { room, name, hidden } = req {
            if self.joined.is_some() {
                return Err(Failure::new(
                    ErrorCode::AlreadyJoined,
                    "already joined; a session joins one room",
                ));
            }
            self.join(id, room, name, hidden).await?;
            return Ok(Flow::Continue);
        }
        let Some(j) = self.joined.as_mut() else {
            return Err(Failure::new(ErrorCode::NotJoined, "send `join` first"));
        };
        match req {
            Request::Join { .. } => unreachable!("handled above"),
            Request::Publish { sdp } => {
                let publish = j.publish_transport(&self.outbox).await?;
                let answer = publish
                    .get_answer(&sdp)
                    .await
                    .map_err(|e| Failure::sdk(&e))?;
                self.outbox.send(&ServerMessage::Answer {
                    id,
                    transport: TransportKind::Publish,
                    sdp: answer,
                });
                for t in publish.offered_tracks() {
                    if j.publishing.contains_key(&t.mid) || j.published_mids.contains(&t.mid) {
                        continue;
                    }
                    let transport = publish.clone();
                    let events = self.events.clone();
                    let mid = t.mid.clone();
                    let task = tokio::spawn(async move {
                        let result = transport.publish(&mid).await;
                        let _ = events.send(SessionEvent::Published {
                            mid,
                            result: Box::new(result),
                        });
                    });
                    j.publishing.insert(t.mid, task);
                }
            }
            Request::Unpublish { track_id } => {
                let Some(publisher) = j.publishers.remove(&track_id) else {
                    return Err(Failure::new(
                        ErrorCode::UnknownTrack,
                        format!("you publish no live track '{track_id}'"),
                    ));
                };
                publisher.close().await;
                j.room.remove_track(&track_id);
                self.outbox.send(&ServerMessage::Unpublished {
                    id,
                    track_id: track_id.to_string(),
                });
            }
            Request::Subscribe { track_id } => {
                let Some(track) = j.room.track(&track_id) else {
                    return Err(Failure::new(
                        ErrorCode::UnknownTrack,
                        format!("no live track '{track_id}' in this room"),
                    ));
                };
                if track.peer_id == self.peer_id {
                    return Err(Failure::new(
                        ErrorCode::UnknownTrack,
                        format!("track '{track_id}' is your own"),
                    ));
                }
                if j.subscribers.contains_key(&track_id) {
                    return Err(Failure::new(
                        ErrorCode::AlreadySubscribed,
                        format!("already subscribed to track '{track_id}'"),
                    ));
                }
                let (subscriber, sdp) = j
                    .subscribe
                    .subscribe(&track_id)
                    .await
                    .map_err(|e| Failure::sdk(&e))?;
                j.subscribers.insert(track_id, subscriber);
                self.outbox.send(&j.offer(id, sdp));
            }
            Request::Unsubscribe { track_id } => {
                if !j.subscribers.contains_key(&track_id) {
                    return Err(Failure::new(
                        ErrorCode::UnknownTrack,
                        format!("not subscribed to track '{track_id}'"),
                    ));
                }
                j.subscribe
                    .unsubscribe(&track_id)
                    .await
                    .map_err(|e| Failure::sdk(&e))?;
                j.subscribers.remove(&track_id);
                self.outbox.send(&ServerMessage::Unsubscribed {
                    id: id.clone(),
                    track_id: track_id.to_string(),
                });
                // The fresh offer comes through `on_negotiation_needed`.
                self.offer_cause = id;
            }
            Request::Answer { sdp } => {
                j.subscribe
                    .set_answer(&sdp)
                    .await
                    .map_err(|e| Failure::sdk(&e))?;
                self.outbox.send(&ServerMessage::AnswerAccepted { id });
            }
            Request::Candidate {
                transport,
                candidate,
            } => {
                let r = match transport {
                    TransportKind::Publish => j
                        .publish_transport(&self.outbox)
                        .await?
                        .add_ice_candidate(candidate.as_ref()),
                    TransportKind::Subscribe => j.subscribe.add_ice_candidate(candidate.as_ref()),
                };
                r.map_err(|e| Failure::sdk(&e))?;
            }
            Request::PublishData { label } => {
                j.data_publishing.retain(|t| !t.is_finished());
                if j.data_publishing.len() >= MAX_DATA_PUBLISHING {
                    return Err(Failure::new(
                        ErrorCode::DataFailed,
                        format!("{MAX_DATA_PUBLISHING} publishData requests are already waiting"),
                    ));
                }
                let transport = j.publish_transport(&self.outbox).await?;
                let events = self.events.clone();
                let task = tokio::spawn(async move {
                    let result = match tokio::time::timeout(
                        DATA_PUBLISH_TIMEOUT,
                        transport.data_publish(&label),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(weir::Error::DataChannel(format!(
                            "no channel labelled '{label}' opened within {} s",
                            DATA_PUBLISH_TIMEOUT.as_secs()
                        ))),
                    };
                    let _ = events.send(SessionEvent::DataPublished {
                        id,
                        label,
                        result: Box::new(result),
                    });
                });
                j.data_publishing.push(task);
            }
            Request::SubscribeData { data_id } => {
                let Some(data) = j.room.data(&data_id) else {
                    return Err(Failure::new(
                        ErrorCode::UnknownData,
                        format!("no live data channel '{data_id}' in this room"),
                    ));
                };
                if data.peer_id == self.peer_id {
                    return Err(Failure::new(
                        ErrorCode::UnknownData,
                        format!("data channel '{data_id}' is your own"),
                    ));
                }
                j.data_subscribers
                    .retain(|_, s| s.closed_reason().is_none());
                if j.data_subscribers.contains_key(&data_id) {
                    return Err(Failure::new(
                        ErrorCode::AlreadySubscribed,
                        format!("already subscribed to data channel '{data_id}'"),
                    ));
                }
                let (subscriber, sdp) = j
                    .subscribe
                    .data_subscribe(&data_id)
                    .await
                    .map_err(|e| Failure::sdk(&e))?;
                j.data_subscribers.insert(data_id, subscriber);
                self.outbox.send(&j.offer(id, sdp));
            }
            Request::SetPreferredLayers {
                track_id,
                spatial,
                temporal,
            } => {
                let Some(subscriber) = j.subscribers.get(&track_id) else {
                    return Err(Failure::new(
                        ErrorCode::UnknownTrack,
                        format!("not subscribed to track '{track_id}'"),
                    ));
                };
                subscriber.set_preferred_layers(spatial, temporal);
                self.outbox.send(&ServerMessage::PreferredLayersSet {
                    id,
                    track_id: track_id.to_string(),
                    spatial,
                    temporal,
                });
            }
            Request::Leave => return Ok(Flow::Leave),
        }
        Ok(Flow::Continue)
    }

    async fn join(
        &mut self,
        id: Option<RequestId>,
        room_name: RoomName,
        name: Option<String>,
        hidden: bool,
    ) -> Result<(), Failure> {
        let room = self.app.rooms.enter(&room_name)?;
        let subscribe = match room
            .router()
            .create_subscribe_transport(TransportConfig::default())
            .await
        {
            Ok(t) => t,
            Err(e) => {
                if let Some(router) = self.app.rooms.abandon(&room) {
                    router.close().await;
                }
                return Err(Failure::new(
                    ErrorCode::Internal,
                    format!("could not create transports: {}", Failure::sdk(&e).message),
                ));
            }
        };

        let name = name.unwrap_or_default();
        let (tracks, peers, data_publishers) = room.admit(
            &self.peer_id,
            Member {
                name: name.clone(),
                hidden,
                events: self.events.clone(),
            },
        );
        self.app.metrics.peer_joined();
        tracing::info!(peer = %self.peer_id, room = %room.name(), "joined");
        self.send(&ServerMessage::Joined {
            id,
            peer_id: self.peer_id.clone(),
            room: room.name().to_string(),
            tracks,
            peers,
            data_publishers,
        });

        // Registered after `joined` went out, so the client knows who it is
        // before its first candidate or state change arrives. (The publish
        // transport, made later, registers its own.)
        let (on_candidate, on_state) = transport_callbacks(TransportKind::Subscribe, &self.outbox);
        subscribe.on_ice_candidate(on_candidate);
        subscribe.on_connection_state(on_state);
        let ob = self.outbox.clone();
        subscribe.on_layers_changed(move |track, spatial, temporal| {
            ob.send(&ServerMessage::LayersChanged {
                track_id: track.to_string(),
                spatial,
                temporal,
            });
        });
        let events = self.events.clone();
        subscribe.on_negotiation_needed(move |sdp| {
            let _ = events.send(SessionEvent::NegotiationNeeded(sdp));
        });

        self.joined = Some(Joined {
            room,
            name,
            publish: None,
            subscribe,
            publishing: HashMap::new(),
            published_mids: HashSet::new(),
            publishers: HashMap::new(),
            subscribers: HashMap::new(),
            data_publishing: Vec::new(),
            data_publishers: HashMap::new(),
            data_subscribers: HashMap::new(),
        });
        Ok(())
    }

    async fn handle_event(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::Published { mid, result } => {
                let result = *result;
                let Some(j) = self.joined.as_mut() else {
                    if let Ok(p) = result {
                        p.close().await;
                    }
                    return;
                };
                j.publishing.remove(&mid);
                match result {
                    Ok(publisher) => {
                        j.published_mids.insert(mid);
                        let info = publisher.info();
                        let kind = kind_str(info.kind);
                        j.publishers.insert(info.id.clone(), publisher);
                        self.outbox.send(&ServerMessage::Published {
                            track_id: info.id.to_string(),
                            mid: info.mid.clone(),
                            kind,
                            codec: info.codec.clone(),
                        });
                        j.room.add_track(TrackObject {
                            track_id: info.id.to_string(),
                            peer_id: self.peer_id.clone(),
                            name: j.name.clone(),
                            kind,
                            codec: info.codec,
                        });
                    }
                    // The transport closed or the mid went away in a renegotiation.
                    Err(weir::Error::Closed) => {}
                    Err(e) => self.send_error(
                        None,
                        Failure::new(
                            ErrorCode::from_sdk(&e),
                            format!("publishing mid '{mid}' failed: {e}"),
                        ),
                    ),
                }
            }
            SessionEvent::NegotiationNeeded(sdp) => {
                let Some(j) = self.joined.as_ref() else {
                    return;
                };
                self.outbox.send(&j.offer(self.offer_cause.take(), sdp));
            }
            SessionEvent::DataPublished { id, label, result } => {
                let result = *result;
                let Some(j) = self.joined.as_mut() else {
                    if let Ok(p) = result {
                        p.close().await;
                    }
                    return;
                };
                match result {
                    Ok(publisher) => {
                        let data = DataObject::new(&publisher.info(), &self.peer_id, &j.name);
                        j.data_publishers
                            .insert(publisher.id().clone(), publisher.clone());
                        self.outbox.send(&ServerMessage::DataPublished {
                            id,
                            data: data.clone(),
                        });
                        j.room.add_data(data);
                        // It may have closed before the room knew of it.
                        if publisher.closed_reason().is_some() {
                            j.room.remove_data(publisher.id());
                        }
                    }
                    Err(e) => self.send_error(
                        id,
                        Failure::new(
                            ErrorCode::from_sdk(&e),
                            format!("publishing data channel '{label}' failed: {e}"),
                        ),
                    ),
                }
            }
            SessionEvent::Room(ev) => self.handle_room_event(*ev),
        }
    }

    fn handle_room_event(&mut self, ev: RoomEvent) {
        let msg = match ev {
            RoomEvent::PeerJoined(PeerObject { peer_id, name }) => {
                ServerMessage::PeerJoined { peer_id, name }
            }
            RoomEvent::PeerLeft(PeerObject { peer_id, name }) => {
                ServerMessage::PeerLeft { peer_id, name }
            }
            RoomEvent::TrackPublished(t) => ServerMessage::TrackPublished(t),
            RoomEvent::DataAdded(d) => ServerMessage::DataPublisherAdded(d),
            RoomEvent::DataRemoved(id) => {
                if let Some(j) = self.joined.as_mut() {
                    j.data_publishers.remove(&id);
                    j.data_subscribers.remove(&id);
                }
                ServerMessage::DataPublisherRemoved {
                    data_id: id.to_string(),
                }
            }
            RoomEvent::TrackUnpublished(id) => {
                if let Some(j) = self.joined.as_mut() {
                    // The SDK ended the track; our handles are stale. A
                    // subscriber's m-section goes away with the next offer.
                    j.publishers.remove(&id);
                    j.subscribers.remove(&id);
                }
                ServerMessage::TrackUnpublished {
                    track_id: id.to_string(),
                }
            }
        };
        self.send(&msg);
    }

    /// Leaves the room and closes this participant's SDK objects.
    async fn cleanup(&mut self) {
        let Some(j) = self.joined.take() else {
            return;
        };
        for task in j.publishing.values() {
            task.abort();
        }
        for task in &j.data_publishing {
            task.abort();
        }
        let router = self.app.rooms.leave(&j.room, &self.peer_id);
        self.app.metrics.peer_left();
        tracing::info!(peer = %self.peer_id, room = %j.room.name(), "left");
        let close = async {
            for p in j.publishers.values() {
                p.close().await;
            }
            for d in j.data_publishers.values() {
                d.close().await;
            }
            if let Some(p) = &j.publish {
                p.close().await;
            }
            j.subscribe.close().await;
            if let Some(router) = router {
                router.close().await;
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
            tracing::warn!(peer = %self.peer_id, "closing transports timed out");
        }
    }
}

/// Completes when the server stops (or its stop signal is gone).
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = rx.wait_for(|stop| *stop).await.map(|_| ());
}

/// What the session loop does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Leave,
}

/// The data channels Weir opens (or opened) on the subscribe transport.
fn offer_data(subs: &HashMap<DataPublisherId, DataSubscriber>) -> Vec<OfferData> {
    let mut data: Vec<OfferData> = subs
        .values()
        .filter(|s| s.closed_reason().is_none())
        .map(|s| OfferData {
            data_id: s.data_publisher_id().to_string(),
            label: s.label().to_owned(),
            stream_id: s.stream_id(),
        })
        .collect();
    data.sort_by_key(|d| d.stream_id);
    data
}

fn offer_tracks(t: &SubscribeTransport) -> Vec<OfferTrack> {
    t.subscriptions()
        .into_iter()
        .map(|(mid, track, kind)| OfferTrack {
            mid,
            track_id: track.to_string(),
            kind: kind_str(kind),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_bursts_and_refills() {
        let mut b = Bucket::new(10, 3);
        let t0 = b.last;
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        // Refill stops at the burst size.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }
}
