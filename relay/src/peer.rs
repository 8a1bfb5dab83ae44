//! One authenticated connection to a peer server: its control stream, its
//! datagrams, the tracks it serves to the peer and pulls from it.
//!
//! Tasks per connection: a control writer (the only writer of the stream),
//! a control reader, and a datagram loop that owns the pulled tracks (so a
//! packet finds its track without a lock). Each served track has a task
//! reading its data-plane tap; each pulled track a task sending its
//! feedback upstream. When the connection ends, the datagram loop drops
//! the pulled tracks, which ends them in their routers.
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{broadcast, mpsc, oneshot};
use weir_codecs::RtpHeader;
use weir_controlplane::{
    CodecParams, DataChannelParams, DataPublisherId, MediaKind, RemoteTrack, RemoteTrackSpec,
    Router, RouterEvent, RouterId, TrackId, TrackInfo, TrackTap, TransportId,
};
use weir_dataplane::layers::StreamLayers;
use weir_dataplane::packet::{LayerFacts, MediaPacket};
use weir_dataplane::packet_pool::{PacketPool, PacketRef};
use weir_dataplane::RelayFeedback;

use crate::arena::{SendArena, CHUNKS};
use crate::counters::RelayCounters;
use crate::data::{self, DataCatalog, PulledData};
use crate::endpoint::{read_message, CatalogEvent, EndpointInner};
use crate::filter::{KeyframeFor, LayerFilter};
use crate::proto::bundle::{
    self, record_prefix, BUNDLE_HEADER_LEN, BUNDLE_TYPE, RECORD_PREFIX_LEN,
};
use crate::proto::control::{
    capabilities, Announce, ControlMessage, ErrorCode, FrameReader, LayerStructure, TrackKind,
};
use crate::proto::datagram::{
    write_feedback, write_rtp_header, Datagram, Feedback, RtpFacts, SvcFacts, MAX_NACK_SEQS,
    RTP_HEADER_LEN, RTP_HEADER_MAX_LEN,
};
use crate::proto::RelayTrackId;
use crate::resume::{FeedbackRoute, Route, TrackKey};
use crate::ring::SentRing;
use crate::RelayError;

/// Retransmission rings kept per served track (one per SSRC: simulcast
/// encodings).
const MAX_RINGS: usize = 4;

/// How long a pull waits for the origin's announce.
const PULL_TIMEOUT: Duration = Duration::from_secs(10);

enum DgramCmd {
    AddPulled(RelayTrackId, Box<Pulled>),
    RemovePulled(RelayTrackId),
}

enum ServeCmd {
    Keyframe(Option<u8>),
    Layers(Option<(u8, u8)>),
    Nack { ssrc: u32, seqs: Vec<u16> },
    Stop,
}

/// A pulled track, owned by the datagram loop.
struct Pulled {
    remote: RemoteTrack,
    /// Packets read but not yet handed to the data plane.
    batch: Vec<PacketRef>,
    /// The origin's latest sender report for this track.
    sender_report: Option<(u64, u32)>,
    /// Which track it is, to resume it after a lost connection.
    key: TrackKey,
    /// Where its feedback goes.
    route: Route,
    _gauge: PulledGauge,
}

/// Counts a pulled track in `live_pulled_tracks` while it lives.
struct PulledGauge(Arc<RelayCounters>);

impl Drop for PulledGauge {
    fn drop(&mut self) {
        RelayCounters::dec(&self.0.live_pulled_tracks);
    }
}

impl Pulled {
    /// Hands the packets read so far to the data plane.
    fn flush(&mut self) {
        match self.batch.len() {
            0 => {}
            1 => {
                if let Some(p) = self.batch.pop() {
                    self.remote.push(p);
                }
            }
            _ => {
                // Sized for a whole batch: one allocation per batch handed
                // to the data plane, none per packet.
                let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
                self.remote.push_batch(batch);
            }
        }
    }
}

pub(crate) struct PeerInner {
    endpoint: Arc<EndpointInner>,
    conn: quinn::Connection,
    server_id: String,
    /// The peer's hello capabilities ([`capabilities`]).
    capabilities: u32,
    ctl: mpsc::UnboundedSender<ControlMessage>,
    dgram: mpsc::UnboundedSender<DgramCmd>,
    pending: Mutex<HashMap<u32, oneshot::Sender<Result<Announce, RelayError>>>>,
    next_request: AtomicU32,
    served: Mutex<HashMap<RelayTrackId, mpsc::UnboundedSender<ServeCmd>>>,
    /// What the peer reports of each track we serve it.
    reports: Mutex<HashMap<RelayTrackId, DownstreamReport>>,
    next_track: AtomicU32,
    /// The peer's own tracks, per router, as its `TrackState`s told.
    remote: Mutex<HashMap<RouterId, BTreeSet<TrackId>>>,
    /// The peer's own data channels, as its `DataState`s told.
    remote_data: Mutex<DataCatalog>,
}

impl PeerInner {
    pub(crate) fn start(
        endpoint: Arc<EndpointInner>,
        conn: quinn::Connection,
        server_id: String,
        capabilities: u32,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        reader: FrameReader,
    ) -> Arc<PeerInner> {
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let (dgram, dgram_rx) = mpsc::unbounded_channel();
        RelayCounters::inc(&endpoint.counters.live_peers);
        let peer = Arc::new(PeerInner {
            endpoint,
            conn,
            server_id,
            capabilities,
            ctl,
            dgram,
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU32::new(1),
            served: Mutex::new(HashMap::new()),
            reports: Mutex::new(HashMap::new()),
            next_track: AtomicU32::new(1),
            remote: Mutex::new(HashMap::new()),
            remote_data: Mutex::new(HashMap::new()),
        });
        tokio::spawn(control_writer(send, ctl_rx));
        // Listed before anything is read from the peer: the catalog events
        // its first messages cause must find it in `RelayEndpoint::peers`
        // (weir-server's cluster pulls a track through the listed peer, and
        // an event that came first was skipped: the track was never pulled).
        peer.endpoint.add_peer(peer.clone());
        tokio::spawn(data::accept_streams(
            Arc::downgrade(&peer),
            peer.conn.clone(),
        ));
        tokio::spawn(control_reader(Arc::downgrade(&peer), recv, reader));
        tokio::spawn(datagram_loop(Arc::downgrade(&peer), dgram_rx));
        peer
    }

    pub(crate) fn server_id(&self) -> &str {
        &self.server_id
    }

    pub(crate) fn endpoint(&self) -> &Arc<EndpointInner> {
        &self.endpoint
    }

    fn remote_data(&self) -> std::sync::MutexGuard<'_, DataCatalog> {
        self.remote_data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_open(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    pub(crate) fn send_ctl(&self, msg: ControlMessage) {
        let _ = self.ctl.send(msg);
    }

    fn served(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RelayTrackId, mpsc::UnboundedSender<ServeCmd>>> {
        self.served.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reports(&self) -> std::sync::MutexGuard<'_, HashMap<RelayTrackId, DownstreamReport>> {
        self.reports.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u32, oneshot::Sender<Result<Announce, RelayError>>>>
    {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remote(&self) -> std::sync::MutexGuard<'_, HashMap<RouterId, BTreeSet<TrackId>>> {
        self.remote.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer told of one of its tracks.
    fn track_state(&self, router: RouterId, track: TrackId, live: bool) {
        let changed = {
            let mut remote = self.remote();
            if live {
                remote
                    .entry(router.clone())
                    .or_default()
                    .insert(track.clone())
            } else {
                let set = remote.entry(router.clone()).or_default();
                let was = set.remove(&track);
                if set.is_empty() {
                    remote.remove(&router);
                }
                was
            }
        };
        if changed {
            let _ = self.endpoint.catalog.send(CatalogEvent {
                peer: self.server_id.clone(),
                router,
                track,
                live,
            });
        }
    }

    /// The connection ended: every track and data channel of the peer
    /// ended for us.
    fn forget_remote(&self) {
        let remote_data = std::mem::take(&mut *self.remote_data());
        for (router, channels) in remote_data {
            for data in channels.into_keys() {
                let _ = self.endpoint.data_catalog.send(data::DataCatalogEvent {
                    peer: self.server_id.clone(),
                    router: router.clone(),
                    data,
                    params: None,
                });
            }
        }
        let remote = std::mem::take(&mut *self.remote());
        for (router, tracks) in remote {
            for track in tracks {
                let _ = self.endpoint.catalog.send(CatalogEvent {
                    peer: self.server_id.clone(),
                    router: router.clone(),
                    track,
                    live: false,
                });
            }
        }
    }

    /// The peer asks for a track of one of our routers.
    fn serve(self: &Arc<Self>, request: u32, router: String, track: String) {
        let router_id = RouterId(router);
        let track_id = TrackId(track);
        let Some(router) = self.endpoint.router(&router_id) else {
            self.send_ctl(ControlMessage::Error {
                request,
                code: ErrorCode::UnknownTrack,
                message: format!("no router {router_id} here"),
            });
            return;
        };
        // Listen before tapping, so the track's end cannot slip between.
        let events = router.events();
        let tap = match router.tap_track(&track_id, self.endpoint.config.tap_capacity) {
            Ok(t) => t,
            Err(e) => {
                self.send_ctl(ControlMessage::Error {
                    request,
                    code: ErrorCode::UnknownTrack,
                    message: e.to_string(),
                });
                return;
            }
        };
        let id = self.next_track.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.served().insert(id, tx);
        self.reports().insert(
            id,
            DownstreamReport {
                router: router_id.clone(),
                track: track_id.clone(),
                fraction_lost: 0,
                cumulative_lost: 0,
                jitter: 0,
                rtt: None,
                bandwidth_bps: None,
                updated: None,
            },
        );
        let info = tap.info().clone();
        let codec = tap.codec().clone();
        self.send_ctl(ControlMessage::Announce(Announce {
            request,
            track: id,
            name: info.id.to_string(),
            kind: match info.kind {
                MediaKind::Audio => TrackKind::Audio,
                MediaKind::Video => TrackKind::Video,
            },
            codec: crate::proto::control::CodecParams {
                name: codec.name,
                clock_rate: codec.clock_rate,
                channels: codec.channels.unwrap_or(0),
                fmtp: codec.fmtp.unwrap_or_default(),
                rtcp_fb: codec.rtcp_fb,
            },
            layers: LayerStructure {
                encodings: tap.encodings(),
                spatial: 1,
                temporal: 1,
            },
        }));
        RelayCounters::inc(&self.endpoint.counters.live_served_tracks);
        tracing::debug!(peer = %self.server_id, track = %info.id, relay_id = id, "relay: serving track");
        tokio::spawn(serve_track(self.clone(), id, tap, events, rx));
    }
}

/// Writes control messages in order; the only writer of the stream.
async fn control_writer(
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<ControlMessage>,
) {
    let mut out = Vec::new();
    while let Some(msg) = rx.recv().await {
        out.clear();
        if msg.encode(&mut out).is_err() {
            tracing::warn!("relay: control message too large, not sent");
            continue;
        }
        if send.write_all(&out).await.is_err() {
            break;
        }
    }
    let _ = send.finish();
}

async fn control_reader(
    peer: Weak<PeerInner>,
    mut recv: quinn::RecvStream,
    mut reader: FrameReader,
) {
    loop {
        let msg = read_message(&mut recv, &mut reader).await;
        let Some(peer) = peer.upgrade() else { return };
        let msg = match msg {
            Ok(m) => m,
            Err(RelayError::Protocol(crate::proto::ProtoError::UnknownType { value, .. })) => {
                // A newer peer's message: skip it, as the version allows.
                tracing::debug!(peer = %peer.server_id, "relay: unknown control message {value}");
                continue;
            }
            Err(RelayError::Protocol(e)) => {
                RelayCounters::inc(&peer.endpoint.counters.malformed);
                tracing::warn!(peer = %peer.server_id, "relay: protocol violation, closing: {e}");
                peer.conn.close(3u32.into(), b"protocol violation");
                return;
            }
            Err(_) => return,
        };
        match msg {
            ControlMessage::Subscribe {
                request,
                router,
                track,
            } => peer.serve(request, router, track),
            ControlMessage::Announce(a) => {
                if let Some(tx) = peer.pending().remove(&a.request) {
                    let _ = tx.send(Ok(a));
                }
            }
            ControlMessage::Error {
                request,
                code,
                message,
            } => match peer.pending().remove(&request) {
                Some(tx) => {
                    let _ = tx.send(Err(match code {
                        ErrorCode::UnknownTrack => RelayError::UnknownTrack(message),
                        _ => RelayError::Refused(message),
                    }));
                }
                None => {
                    tracing::info!(peer = %peer.server_id, "relay: peer error {code:?}: {message}")
                }
            },
            ControlMessage::Unsubscribe { track } => {
                if let Some(tx) = peer.served().get(&track) {
                    let _ = tx.send(ServeCmd::Stop);
                }
            }
            ControlMessage::KeyframeRequest { track, encoding } => {
                if let Some(tx) = peer.served().get(&track) {
                    let _ = tx.send(ServeCmd::Keyframe(encoding));
                }
            }
            ControlMessage::Layers { track, wanted } => {
                RelayCounters::inc(&peer.endpoint.counters.layer_updates_received);
                if let Some(tx) = peer.served().get(&track) {
                    let _ = tx.send(ServeCmd::Layers(wanted));
                }
            }
            ControlMessage::Close { track, reason } => {
                tracing::debug!(peer = %peer.server_id, track, "relay: origin closed track: {reason}");
                let _ = peer.dgram.send(DgramCmd::RemovePulled(track));
            }
            ControlMessage::TrackState {
                router,
                track,
                live,
            } => peer.track_state(RouterId(router), TrackId(track), live),
            ControlMessage::DataState { router, data, info } => {
                let mut catalog = peer.remote_data();
                data::remote_state(
                    &peer,
                    &mut catalog,
                    &peer.endpoint.data_catalog,
                    RouterId(router),
                    DataPublisherId(data),
                    info,
                );
            }
            ControlMessage::Hello(_) => {
                RelayCounters::inc(&peer.endpoint.counters.malformed);
                tracing::warn!(peer = %peer.server_id, "relay: second hello, closing");
                peer.conn.close(3u32.into(), b"protocol violation");
                return;
            }
        }
    }
}

/// Owns the pulled tracks; reads every datagram of the connection.
async fn datagram_loop(peer: Weak<PeerInner>, mut cmds: mpsc::UnboundedReceiver<DgramCmd>) {
    let Some((conn, counters, server_id)) = peer.upgrade().map(|p| {
        (
            p.conn.clone(),
            p.endpoint.counters.clone(),
            p.server_id.clone(),
        )
    }) else {
        return;
    };
    let mut pulled: HashMap<RelayTrackId, Box<Pulled>> = HashMap::new();
    // Received packets go into pooled buffers, handed back when the data
    // plane drops its last reference: no allocation per packet once warm.
    let mut pool = PacketPool::new(RECV_POOL);
    let mut misses = 0;
    let reason = loop {
        tokio::select! {
            // Commands first: a track added before its first datagram
            // arrived must be known when that datagram is read, even if
            // both are ready when a starved loop wakes up.
            biased;
            cmd = cmds.recv() => match cmd {
                Some(DgramCmd::AddPulled(id, p)) => {
                    pulled.insert(id, p);
                }
                Some(DgramCmd::RemovePulled(id)) => {
                    pulled.remove(&id);
                }
                None => break quinn::ConnectionError::LocallyClosed,
            },
            d = conn.read_datagram() => {
                let mut d = match d {
                    Ok(d) => d,
                    Err(e) => break e,
                };
                // Take what else has arrived too, so a burst reaches each
                // data-plane core as one message and one wake-up.
                let mut ended = None;
                for _ in 0..BATCH {
                    match bundle::split(&d) {
                        Ok(records) => {
                            if records.bundled() {
                                RelayCounters::inc(&counters.bundles_received);
                            }
                            for record in records {
                                handle_datagram(record, &mut pulled, &mut pool, &peer, &counters);
                            }
                        }
                        Err(_) => RelayCounters::inc(&counters.malformed),
                    }
                    match conn.read_datagram().now_or_never() {
                        Some(Ok(next)) => d = next,
                        Some(Err(e)) => {
                            ended = Some(e);
                            break;
                        }
                        None => break,
                    }
                }
                for p in pulled.values_mut() {
                    p.flush();
                }
                if pool.misses() != misses {
                    counters
                        .recv_pool_misses
                        .fetch_add(pool.misses() - misses, Ordering::Relaxed);
                    misses = pool.misses();
                }
                if let Some(e) = ended {
                    break e;
                }
            }
        }
    };
    if matches!(reason, quinn::ConnectionError::TimedOut) {
        RelayCounters::inc(&counters.peers_timed_out);
        tracing::warn!(peer = %server_id, "relay: peer timed out; its tracks end");
    } else {
        tracing::info!(peer = %server_id, "relay: connection ended: {reason}");
    }
    RelayCounters::dec(&counters.live_peers);
    // With a resume window, a failed connection's tracks wait to be pulled
    // again; otherwise (or closed on purpose) dropping them ends them in
    // their routers.
    let window = peer
        .upgrade()
        .map_or(Duration::ZERO, |p| p.endpoint.config.resume_window);
    let failed = !matches!(reason, quinn::ConnectionError::LocallyClosed);
    match peer.upgrade() {
        Some(p) if failed && !window.is_zero() => {
            for (_, t) in pulled.drain() {
                let Pulled {
                    remote,
                    sender_report,
                    key,
                    route,
                    ..
                } = *t;
                p.endpoint
                    .orphans
                    .keep(key, remote, route, sender_report, window);
            }
        }
        _ => drop(pulled),
    }
    if let Some(peer) = peer.upgrade() {
        peer.endpoint.remove_peer(&peer);
        peer.forget_remote();
        peer.pending().clear();
        for tx in peer.served().values() {
            let _ = tx.send(ServeCmd::Stop);
        }
    }
}

/// Most datagrams read before the packets go to the data plane.
const BATCH: usize = 64;

/// Pooled packet buffers of one connection's received media, as many as a
/// data-plane core's pool: the downstream rings of ten busy tracks keep
/// 10,240 packets. Each slot's 2 KiB is reserved on first use, so a quiet
/// connection costs little. Past it packets are heap-allocated and counted
/// in `recv_pool_misses`.
const RECV_POOL: usize = 16_384;

fn handle_datagram(
    d: &[u8],
    pulled: &mut HashMap<RelayTrackId, Box<Pulled>>,
    pool: &mut PacketPool,
    peer: &Weak<PeerInner>,
    counters: &RelayCounters,
) {
    match Datagram::parse(d) {
        Ok(Datagram::Rtp(rtp)) => {
            let Some(p) = pulled.get_mut(&rtp.track) else {
                // In flight after an unsubscribe, or bogus.
                RelayCounters::inc(&counters.malformed);
                return;
            };
            let mut packet = pool.take();
            if media_packet(&rtp.facts, rtp.rtp, &mut p.sender_report, &mut packet) {
                RelayCounters::inc(&counters.rtp_received);
                p.batch.push(packet.share());
            } else {
                RelayCounters::inc(&counters.malformed);
            }
        }
        Ok(Datagram::Feedback { track, feedback }) => {
            RelayCounters::inc(&counters.feedback_received);
            let Some(peer) = peer.upgrade() else { return };
            let cmd = match feedback {
                Feedback::Pli { encoding } | Feedback::Fir { encoding } => {
                    ServeCmd::Keyframe(encoding)
                }
                Feedback::Nack { ssrc, seqs } => ServeCmd::Nack { ssrc, seqs },
                // Kept for the application (`RelayPeer::downstream_reports`);
                // the layers the origin sends follow the wanted layers,
                // which already reflect each subscriber's bandwidth.
                Feedback::ReceiverReport {
                    fraction_lost,
                    cumulative_lost,
                    jitter,
                    rtt_ms,
                } => {
                    if let Some(r) = peer.reports().get_mut(&track) {
                        r.fraction_lost = fraction_lost;
                        r.cumulative_lost = cumulative_lost;
                        r.jitter = jitter;
                        r.rtt = rtt_ms.map(|ms| Duration::from_millis(u64::from(ms)));
                        r.updated = Some(Instant::now());
                    }
                    return;
                }
                Feedback::Bandwidth { bps } => {
                    if let Some(r) = peer.reports().get_mut(&track) {
                        r.bandwidth_bps = Some(bps);
                        r.updated = Some(Instant::now());
                    }
                    return;
                }
            };
            let served = peer.served();
            let Some(tx) = served.get(&track) else { return };
            let _ = tx.send(cmd);
        }
        Err(_) => RelayCounters::inc(&counters.malformed),
    }
}

/// Rebuilds the published packet from a relayed one into `out` (a pooled
/// buffer: copying 1,200 bytes costs less than an allocation); `false` if
/// it is not RTP. The RTP header is parsed again here: the relay header is
/// trusted for layer facts only.
pub(crate) fn media_packet(
    facts: &RtpFacts,
    rtp: &[u8],
    sender_report: &mut Option<(u64, u32)>,
    out: &mut MediaPacket,
) -> bool {
    let Ok(h) = RtpHeader::parse(rtp) else {
        return false;
    };
    if facts.sender_report.is_some() {
        *sender_report = facts.sender_report;
    }
    let mut data = std::mem::take(&mut out.data);
    data.clear();
    data.extend_from_slice(rtp);
    *out = MediaPacket {
        data,
        payload_offset: h.header_len(),
        payload_len: h.payload().len(),
        seq: h.sequence_number(),
        timestamp: h.timestamp(),
        ssrc: h.ssrc(),
        marker: h.marker(),
        keyframe: facts.keyframe,
        layers: LayerFacts {
            encoding: facts.encoding,
            spatial: facts.spatial,
            temporal: facts.temporal,
            frame_start: facts.frame_start,
            frame_end: facts.frame_end,
            switching_point: facts.switching_point,
            switch_up_to: facts.svc.map_or(0, |s| s.switch_up_to),
            structure: facts
                .svc
                .and_then(|s| s.structure)
                .map(|(spatial, temporal)| StreamLayers { spatial, temporal }),
            // Checked to lie inside the packet by the datagram parser.
            dd: facts.svc.and_then(|s| s.dd),
        },
        sender_report: *sender_report,
    };
    true
}

/// The SVC facts of a packet the relay header carries beyond its layer
/// ids, `None` when it has none (most packets: the header stays short).
fn svc_facts(l: &LayerFacts) -> Option<SvcFacts> {
    let structure = l
        .structure
        .filter(|s| s.spatial > 0 && s.temporal > 0)
        .map(|s| (s.spatial, s.temporal));
    let dd = l.dd.filter(|(_, len)| *len > 0);
    (l.switch_up_to != 0 || structure.is_some() || dd.is_some()).then_some(SvcFacts {
        switch_up_to: l.switch_up_to,
        structure,
        dd,
    })
}

/// Sends one served track's packets to the peer and answers its feedback.
async fn serve_track(
    peer: Arc<PeerInner>,
    id: RelayTrackId,
    mut tap: TrackTap,
    mut events: broadcast::Receiver<RouterEvent>,
    mut cmds: mpsc::UnboundedReceiver<ServeCmd>,
) {
    let counters = peer.endpoint.counters.clone();
    let mut sender = RtpSender {
        conn: peer.conn.clone(),
        counters: counters.clone(),
        id,
        last_sr: None,
        warned: false,
        arena: SendArena::new(),
        allocations: CHUNKS as u64,
        bundle: peer.endpoint.config.bundle && peer.capabilities & capabilities::BUNDLE != 0,
        max: 0,
        records: 0,
        firsts: 0,
        first_len: 0,
        body: 0,
    };
    let mut outgoing = Outgoing {
        filter: LayerFilter::new(tap.encodings()),
        rings: Vec::new(),
        n: 0,
        drop_every: peer.endpoint.config.drop_every_nth_rtp,
        counters: counters.clone(),
    };
    let mut synced = 0;
    let mut tap_dropped = 0;
    // Taken from the tap, not sent yet.
    let mut carry: Option<PacketRef> = None;
    let track = tap.info().id.clone();
    let conn = peer.conn.clone();
    let conn_closed = conn.closed();
    tokio::pin!(conn_closed);
    let close = loop {
        tokio::select! {
            _ = &mut conn_closed => break None,
            p = tap.recv(), if carry.is_none() => {
                let Some(p) = p else { break Some("the track ended") };
                carry = Some(p);
            }
            // A packet left over from the last datagram goes first, but
            // commands (NACKs, stop) get their turn between datagrams even
            // while the tap never runs dry.
            _ = std::future::ready(()), if carry.is_some() => {}
            cmd = cmds.recv() => match cmd {
                Some(ServeCmd::Keyframe(encoding)) => {
                    RelayCounters::inc(&counters.keyframe_requests);
                    tap.request_keyframe(encoding);
                }
                Some(ServeCmd::Layers(wanted)) => {
                    tracing::debug!(peer = %peer.server_id, track = %track, ?wanted, "relay: downstream wants layers");
                    outgoing.filter.set_wanted(wanted, |k| {
                        RelayCounters::inc(&counters.keyframe_requests);
                        tap.request_keyframe(match k {
                            KeyframeFor::Encoding(e) => Some(e),
                            KeyframeFor::Stream => None,
                        });
                    });
                }
                Some(ServeCmd::Nack { ssrc, seqs }) => {
                    for seq in seqs {
                        RelayCounters::inc(&counters.nacks_received);
                        let hit = outgoing
                            .rings
                            .iter()
                            .find(|(s, _)| *s == ssrc)
                            .and_then(|(_, ring)| ring.get(ssrc, seq).cloned());
                        match hit {
                            Some(p) => {
                                RelayCounters::inc(&counters.retransmits_sent);
                                sender.send(&p, true).await;
                            }
                            None => RelayCounters::inc(&counters.retransmit_misses),
                        }
                    }
                }
                Some(ServeCmd::Stop) | None => break None,
            },
            ev = events.recv() => match ev {
                Ok(RouterEvent::TrackClosed(t)) if t == track => break Some("the track ended"),
                Err(broadcast::error::RecvError::Closed) => break Some("the router closed"),
                _ => {}
            },
        }
        // One datagram per turn, filled with what the tap already holds
        // when bundling: never waits for more.
        if let Some(p) = carry.take() {
            if outgoing.take(&p) {
                if sender.begin(&p, false) && sender.bundle {
                    while let Some(q) = tap.try_recv() {
                        if outgoing.take(&q) && !sender.push(&q) {
                            carry = Some(q);
                            break;
                        }
                    }
                }
                sender.flush().await;
            }
            if outgoing.n / 1024 != synced {
                synced = outgoing.n / 1024;
                sync_tap_dropped(&tap, &mut tap_dropped, &counters);
            }
        }
    };
    if let Some(reason) = close {
        peer.send_ctl(ControlMessage::Close {
            track: id,
            reason: reason.into(),
        });
    }
    sync_tap_dropped(&tap, &mut tap_dropped, &counters);
    peer.served().remove(&id);
    peer.reports().remove(&id);
    RelayCounters::dec(&counters.live_served_tracks);
}

/// What a served track keeps of the packets it sends.
struct Outgoing {
    /// What the downstream server wants.
    filter: LayerFilter,
    /// One ring per SSRC: simulcast encodings number their packets
    /// independently. At most one per encoding, so a short list.
    rings: Vec<(u32, SentRing)>,
    /// Packets taken from the tap.
    n: u64,
    /// Test-mode loss emulation ([`crate::RelayConfig::drop_every_nth_rtp`]).
    drop_every: u64,
    counters: Arc<RelayCounters>,
}

impl Outgoing {
    /// Keeps `p` for retransmission; whether to send it now (`false`: no
    /// one downstream wants its layer, or the loss emulation drops it).
    fn take(&mut self, p: &PacketRef) -> bool {
        if !self.filter.pass(&p.layers, p.keyframe) {
            RelayCounters::inc(&self.counters.layers_filtered);
            return false;
        }
        match self.rings.iter().position(|(ssrc, _)| *ssrc == p.ssrc) {
            Some(i) => self.rings[i].1.put(p),
            None => {
                // A publisher cycling SSRCs: keep the newest ones.
                if self.rings.len() == MAX_RINGS {
                    self.rings.remove(0);
                }
                let mut ring = SentRing::new();
                ring.put(p);
                self.rings.push((p.ssrc, ring));
            }
        }
        self.n += 1;
        if self.drop_every > 0 && self.n % self.drop_every == 0 {
            RelayCounters::inc(&self.counters.emulated_drops);
            return false;
        }
        true
    }
}

/// Adds what the data plane dropped at `tap` since the last call to the
/// endpoint's `tap_dropped`.
fn sync_tap_dropped(tap: &TrackTap, seen: &mut u64, counters: &RelayCounters) {
    let now = tap.dropped();
    counters
        .tap_dropped
        .fetch_add(now - *seen, Ordering::Relaxed);
    *seen = now;
}

/// A record's relay header: bytes, length, and the sender report it
/// carries.
type RecordHeader = ([u8; RTP_HEADER_MAX_LEN], usize, Option<(u64, u32)>);

/// Writes RTP datagrams of one served track: one record per datagram, or
/// several (a bundle) when the peer takes them and they fit.
///
/// Calling order: [`RtpSender::begin`] with a datagram's first packet,
/// [`RtpSender::push`] more while it returns `true`, then
/// [`RtpSender::flush`]; [`RtpSender::send`] does all three for one packet.
struct RtpSender {
    conn: quinn::Connection,
    counters: Arc<RelayCounters>,
    id: RelayTrackId,
    last_sr: Option<(u64, u32)>,
    warned: bool,
    /// Datagram buffers, reused: no allocation per datagram.
    arena: SendArena,
    /// `arena.allocations()` already counted.
    allocations: u64,
    /// Whether to bundle: the peer takes bundles and the config allows.
    bundle: bool,
    /// The datagram begun: `max_datagram_size` when it was begun, its
    /// records, first transmissions among them, the first record's
    /// length, and the bytes after the bundle header.
    max: usize,
    records: u32,
    firsts: u64,
    first_len: usize,
    body: usize,
}

impl RtpSender {
    /// The relay header of `p`; its sender report only when it changed
    /// since the last record written.
    fn header(&self, p: &MediaPacket, retransmission: bool) -> Option<RecordHeader> {
        let sender_report = (p.sender_report != self.last_sr)
            .then_some(p.sender_report)
            .flatten();
        let l = p.layers;
        let facts = RtpFacts {
            encoding: l.encoding,
            spatial: l.spatial,
            temporal: l.temporal,
            keyframe: p.keyframe,
            frame_start: l.frame_start,
            frame_end: l.frame_end,
            switching_point: l.switching_point,
            retransmission,
            sender_report,
            svc: svc_facts(&l),
        };
        let mut header = [0u8; RTP_HEADER_MAX_LEN];
        let Ok(n) = write_rtp_header(&mut header, self.id, &facts) else {
            RelayCounters::inc(&self.counters.malformed);
            return None;
        };
        Some((header, n, sender_report))
    }

    /// Starts a datagram with `p`; `false` (counted) when `p` cannot be
    /// sent at all.
    fn begin(&mut self, p: &MediaPacket, retransmission: bool) -> bool {
        let Some(max) = self.conn.max_datagram_size() else {
            RelayCounters::inc(&self.counters.datagram_send_failed);
            return false;
        };
        let Some((header, n, sender_report)) = self.header(p, retransmission) else {
            return false;
        };
        let len = n + p.data.len();
        if len > max {
            RelayCounters::inc(&self.counters.datagram_too_large);
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    len,
                    max,
                    "relay: RTP datagram larger than the connection allows; dropped (counted in datagram_too_large)"
                );
            }
            return false;
        }
        // Room for a bundle header in front, written only if a second
        // record joins (otherwise skipped when the datagram is sent).
        self.arena.begin(BUNDLE_HEADER_LEN + max);
        self.arena.append(&[0; BUNDLE_HEADER_LEN]);
        self.arena.append(&header[..n]);
        self.arena.append(&p.data);
        if sender_report.is_some() {
            self.last_sr = sender_report;
        }
        self.max = max;
        self.records = 1;
        self.firsts = u64::from(!retransmission);
        self.first_len = len;
        self.body = len;
        true
    }

    /// Adds `p` (a first transmission) to the datagram begun if bundling is
    /// on and it fits; `false` leaves `p` for the next datagram.
    fn push(&mut self, p: &MediaPacket) -> bool {
        if !self.bundle || self.records == 0 {
            return false;
        }
        // Cheap size check first: most refusals are a full datagram.
        let bundled =
            |body: usize, len: usize| 1 + RECORD_PREFIX_LEN + body + RECORD_PREFIX_LEN + len;
        if bundled(self.body, RTP_HEADER_LEN + p.data.len()) > self.max {
            return false;
        }
        let Some((header, n, sender_report)) = self.header(p, false) else {
            // Counted; nothing to send for it, the datagram goes on.
            return true;
        };
        let len = n + p.data.len();
        if bundled(self.body, len) > self.max {
            return false;
        }
        let Ok(prefix) = record_prefix(len) else {
            return false;
        };
        self.arena.append(&prefix);
        self.arena.append(&header[..n]);
        self.arena.append(&p.data);
        if sender_report.is_some() {
            self.last_sr = sender_report;
        }
        self.records += 1;
        self.firsts += 1;
        self.body += RECORD_PREFIX_LEN + len;
        true
    }

    /// Sends the datagram begun. Waits while quinn's datagram send buffer
    /// is full (congestion control holds it back): the backlog then builds
    /// in the bounded tap, whose overflow the data plane counts, instead
    /// of quinn silently dropping the oldest datagrams.
    async fn flush(&mut self) {
        let records = std::mem::take(&mut self.records);
        if records == 0 {
            return;
        }
        let skip = if records == 1 {
            BUNDLE_HEADER_LEN
        } else {
            // `begin` checked the first record fits a datagram, hence a u16.
            let mut head = [BUNDLE_TYPE, 0, 0];
            if let Ok(prefix) = record_prefix(self.first_len) {
                head[1..].copy_from_slice(&prefix);
            }
            self.arena.patch(0, &head);
            0
        };
        let datagram = self.arena.finish(skip);
        let len = datagram.len();
        if self.arena.allocations() != self.allocations {
            self.counters.send_chunk_allocations.fetch_add(
                self.arena.allocations() - self.allocations,
                Ordering::Relaxed,
            );
            self.allocations = self.arena.allocations();
        }
        match self.conn.send_datagram_wait(datagram).await {
            Ok(()) => {
                self.counters
                    .rtp_sent
                    .fetch_add(self.firsts, Ordering::Relaxed);
                self.counters
                    .rtp_bytes_sent
                    .fetch_add(len as u64, Ordering::Relaxed);
                if records > 1 {
                    RelayCounters::inc(&self.counters.bundles_sent);
                }
            }
            Err(quinn::SendDatagramError::TooLarge) => {
                RelayCounters::inc(&self.counters.datagram_too_large)
            }
            Err(_) => RelayCounters::inc(&self.counters.datagram_send_failed),
        }
    }

    /// Sends one packet in a datagram of its own.
    async fn send(&mut self, p: &MediaPacket, retransmission: bool) {
        if self.begin(p, retransmission) {
            self.flush().await;
        }
    }
}

/// Sends a pulled track's keyframe requests and NACK misses to the origin,
/// and the layers its subscribers here want: on change only, at most once
/// per [`LAYERS_INTERVAL`], on the control stream (reliable); after a
/// resume, again on the new connection with the next feedback.
async fn feedback_task(
    route: Route,
    counters: Arc<RelayCounters>,
    mut rx: mpsc::Receiver<RelayFeedback>,
) {
    let mut batch = Vec::new();
    let mut out = Vec::new();
    // The latest wanted layers from the data plane, and what was last sent
    // (on which connection, when); `pending` while they differ.
    let mut wanted: Option<Option<(u8, u8)>> = None;
    let mut sent: Option<(Option<(u8, u8)>, usize)> = None;
    let mut sent_at: Option<tokio::time::Instant> = None;
    let mut pending = false;
    loop {
        let due = sent_at.map(|t| t + LAYERS_INTERVAL);
        let first = tokio::select! {
            first = rx.recv() => match first {
                Some(f) => Some(f),
                None => break,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if pending && due.is_some() => None,
        };
        batch.clear();
        batch.extend(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut keyframe: Option<Option<u8>> = None;
        let mut report = None;
        let mut nacks: HashMap<u32, Vec<u16>> = HashMap::new();
        for fb in &batch {
            match *fb {
                RelayFeedback::KeyframeRequest { encoding } => {
                    // One request for all encodings covers any single one.
                    keyframe = Some(match keyframe {
                        Some(Some(e)) if Some(e) == encoding => Some(e),
                        Some(_) => None,
                        None => encoding,
                    });
                }
                RelayFeedback::Nack { ssrc, seq } => {
                    let list = nacks.entry(ssrc).or_default();
                    if !list.contains(&seq) {
                        list.push(seq);
                    }
                }
                RelayFeedback::Layers { wanted: w } => {
                    wanted = Some(w.map(|l| (l.spatial, l.temporal)));
                }
                RelayFeedback::Report(r) => report = Some(r),
            }
        }
        let mut feedback: Vec<Feedback> = Vec::new();
        if let Some(encoding) = keyframe {
            feedback.push(Feedback::Pli { encoding });
        }
        for (ssrc, seqs) in nacks {
            for chunk in seqs.chunks(MAX_NACK_SEQS) {
                feedback.push(Feedback::Nack {
                    ssrc,
                    seqs: chunk.to_vec(),
                });
            }
        }
        if let Some(r) = report {
            feedback.push(Feedback::ReceiverReport {
                fraction_lost: r.fraction_lost,
                cumulative_lost: r.cumulative_lost,
                jitter: r.jitter,
                rtt_ms: r
                    .rtt
                    .map(|d| d.as_millis().min(u128::from(u32::MAX)) as u32),
            });
            if let Some(bps) = r.bandwidth_bps {
                feedback.push(Feedback::Bandwidth { bps });
            }
        }
        // The connection of the moment: a resumed track's feedback goes
        // on the new one.
        let FeedbackRoute {
            conn,
            track: id,
            ctl,
            layers,
        } = route.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for fb in feedback {
            out.clear();
            if write_feedback(&mut out, id, &fb).is_err() {
                continue;
            }
            if conn
                .send_datagram(bytes::Bytes::copy_from_slice(&out))
                .is_ok()
            {
                RelayCounters::inc(&counters.feedback_sent);
            } else {
                RelayCounters::inc(&counters.datagram_send_failed);
            }
        }
        pending = false;
        if let Some(w) = wanted.filter(|_| layers) {
            let now = tokio::time::Instant::now();
            let on = (w, conn.stable_id());
            if sent != Some(on) {
                if sent_at.is_none_or(|t| now >= t + LAYERS_INTERVAL) {
                    let _ = ctl.send(ControlMessage::Layers {
                        track: id,
                        wanted: w,
                    });
                    RelayCounters::inc(&counters.layer_updates_sent);
                    sent = Some(on);
                    sent_at = Some(now);
                } else {
                    // Sent when the interval is over.
                    pending = true;
                }
            }
        }
    }
}

/// How one track this server relays fares past the peer that pulls it:
/// the peer's summary of its subscribers' receiver reports and the
/// bandwidth its allocator gives them (sent about once a second while the
/// track has subscribers there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamReport {
    /// The router the track is published in here.
    pub router: RouterId,
    /// The track.
    pub track: TrackId,
    /// The worst subscriber's fraction lost since its previous report
    /// (RFC 3550, /256).
    pub fraction_lost: u8,
    /// The worst subscriber's cumulative packets lost.
    pub cumulative_lost: u32,
    /// The worst subscriber's interarrival jitter, in RTP timestamp units
    /// of the track's codec.
    pub jitter: u32,
    /// The longest round-trip time from the peer to a subscriber (the
    /// relay hop itself is in [`RelayPeer::quic_stats`]).
    pub rtt: Option<Duration>,
    /// The most bandwidth the peer gives any subscriber for the track,
    /// bit/s.
    pub bandwidth_bps: Option<u64>,
    /// When the last report came; `None` before the first.
    pub updated: Option<Instant>,
}

/// Least time between two wanted-layer updates of one pulled track.
const LAYERS_INTERVAL: Duration = Duration::from_millis(100);

/// A track pulled from a peer into a local router. Dropping it (or
/// [`PulledTrack::close`]) unsubscribes and ends the track in the router.
#[derive(Debug)]
pub struct PulledTrack {
    info: TrackInfo,
    relay_id: RelayTrackId,
    peer: Weak<PeerInner>,
    resumed: bool,
}

impl PulledTrack {
    /// The track as the local router lists it.
    pub fn info(&self) -> &TrackInfo {
        &self.info
    }

    /// Whether this pull took over a track still waiting since its
    /// connection failed (see [`crate::RelayConfig::with_resume_window`]):
    /// the router never saw it end, and its subscribers stayed.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Ends the pull.
    pub fn close(self) {}
}

impl Drop for PulledTrack {
    fn drop(&mut self) {
        if let Some(peer) = self.peer.upgrade() {
            peer.send_ctl(ControlMessage::Unsubscribe {
                track: self.relay_id,
            });
            let _ = peer.dgram.send(DgramCmd::RemovePulled(self.relay_id));
        }
    }
}

/// An authenticated connection to a peer server. Cheap to clone. The
/// connection lives until [`RelayPeer::close`], [`RelayEndpoint::close`]
/// or a failure, whether or not a handle is kept.
///
/// [`RelayEndpoint::close`]: crate::RelayEndpoint::close
#[derive(Clone)]
pub struct RelayPeer {
    inner: Arc<PeerInner>,
}

impl std::fmt::Debug for RelayPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayPeer")
            .field("server_id", &self.inner.server_id)
            .finish()
    }
}

impl RelayPeer {
    pub(crate) fn from_inner(inner: Arc<PeerInner>) -> Self {
        Self { inner }
    }

    /// The peer's server id, from its hello.
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// The peer's UDP address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.conn.remote_address()
    }

    /// The largest datagram the connection carries now (`None`: the peer
    /// does not take datagrams).
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.inner.conn.max_datagram_size()
    }

    /// QUIC statistics of the connection (datagram frames sent and
    /// received, lost packets, congestion window, round-trip time).
    pub fn quic_stats(&self) -> quinn::ConnectionStats {
        self.inner.conn.stats()
    }

    /// What the peer reports of each track this server relays to it: one
    /// entry per served track, [`DownstreamReport::updated`] `None` until
    /// the first report.
    pub fn downstream_reports(&self) -> Vec<DownstreamReport> {
        self.inner.reports().values().cloned().collect()
    }

    /// Whether the connection is still up.
    pub fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    /// Resolves when the connection ends, with the reason.
    pub async fn closed(&self) -> String {
        self.inner.conn.closed().await.to_string()
    }

    /// The tracks published on the peer itself in its router `router`,
    /// as it last told (see [`crate::RelayEndpoint::catalog`]).
    pub fn remote_tracks(&self, router: &RouterId) -> Vec<TrackId> {
        self.inner
            .remote()
            .get(router)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The data channels published on the peer itself in its router
    /// `router`, with their parameters, as it last told (see
    /// [`crate::RelayEndpoint::data_catalog`]).
    pub fn remote_data(&self, router: &RouterId) -> Vec<(DataPublisherId, DataChannelParams)> {
        self.inner
            .remote_data()
            .get(router)
            .map(|m| {
                m.iter()
                    .map(|(id, info)| (id.clone(), data::params_of(info)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pulls the data channel `data` of the peer's router `remote_router`
    /// into the local router `into`, where it is listed and subscribable
    /// like a local channel (same id and parameters) until the returned
    /// handle is dropped, the origin ends it, or the connection is lost.
    /// Its messages cross on a QUIC stream of their own, in order and
    /// without loss, text or binary as sent.
    pub async fn pull_data(
        &self,
        remote_router: &RouterId,
        data: &DataPublisherId,
        into: &Router,
    ) -> Result<PulledData, RelayError> {
        data::pull_data(&self.inner, &self.inner.conn, remote_router, data, into).await
    }

    /// Closes the connection (its pulled tracks end).
    pub fn close(&self) {
        self.inner.conn.close(0u32.into(), b"closed");
    }

    /// Pulls `track` of the peer's router `remote_router` into the local
    /// router `into`, where it is listed and subscribable like a local
    /// track (same id) until the returned handle is dropped, the origin
    /// ends it, or the connection is lost.
    pub async fn pull(
        &self,
        remote_router: &RouterId,
        track: &TrackId,
        into: &Router,
    ) -> Result<PulledTrack, RelayError> {
        let peer = &self.inner;
        let request = peer.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        peer.pending().insert(request, tx);
        peer.send_ctl(ControlMessage::Subscribe {
            request,
            router: remote_router.to_string(),
            track: track.to_string(),
        });
        let announce = match tokio::time::timeout(PULL_TIMEOUT, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(RelayError::Closed("connection ended".into())),
            Err(_) => {
                peer.pending().remove(&request);
                return Err(RelayError::Timeout("announce"));
            }
        };
        let spec = RemoteTrackSpec {
            id: track.clone(),
            kind: match announce.kind {
                TrackKind::Audio => MediaKind::Audio,
                TrackKind::Video => MediaKind::Video,
            },
            codec: CodecParams {
                name: announce.codec.name,
                clock_rate: announce.codec.clock_rate,
                channels: (announce.codec.channels != 0).then_some(announce.codec.channels),
                fmtp: (!announce.codec.fmtp.is_empty()).then_some(announce.codec.fmtp),
                rtcp_fb: announce.codec.rtcp_fb,
            },
            encodings: announce.layers.encodings.max(1),
            origin: TransportId(format!("relay:{}", peer.server_id)),
        };
        let key: TrackKey = (
            peer.server_id.clone(),
            remote_router.clone(),
            track.clone(),
            into.id().clone(),
        );
        let counters = peer.endpoint.counters.clone();
        let new_route = FeedbackRoute {
            conn: peer.conn.clone(),
            track: announce.track,
            ctl: peer.ctl.clone(),
            layers: peer.capabilities & capabilities::LAYERS != 0,
        };
        let (remote, route, sender_report, resumed) = match peer.endpoint.orphans.take(&key) {
            // The same track, waiting since its connection failed: it goes
            // on, and the origin is asked for a keyframe so subscribers'
            // decoders recover from the gap.
            Some(o) => {
                *o.route.lock().unwrap_or_else(|e| e.into_inner()) = new_route;
                peer.send_ctl(ControlMessage::KeyframeRequest {
                    track: announce.track,
                    encoding: None,
                });
                RelayCounters::inc(&counters.tracks_resumed);
                tracing::info!(peer = %peer.server_id, %track, "relay: pulled track resumed");
                (o.remote, o.route, o.sender_report, true)
            }
            None => {
                let mut remote = match into.add_remote_track(spec) {
                    Ok(r) => r,
                    Err(e) => {
                        peer.send_ctl(ControlMessage::Unsubscribe {
                            track: announce.track,
                        });
                        return Err(RelayError::Router(e.to_string()));
                    }
                };
                let route: Route = Arc::new(Mutex::new(new_route));
                if let Some(feedback) = remote.take_feedback() {
                    tokio::spawn(feedback_task(route.clone(), counters.clone(), feedback));
                }
                (remote, route, None, false)
            }
        };
        let info = remote.info().clone();
        RelayCounters::inc(&counters.live_pulled_tracks);
        let pulled = Box::new(Pulled {
            remote,
            batch: Vec::new(),
            sender_report,
            key,
            route,
            _gauge: PulledGauge(counters),
        });
        if peer
            .dgram
            .send(DgramCmd::AddPulled(announce.track, pulled))
            .is_err()
        {
            return Err(RelayError::Closed("connection ended".into()));
        }
        Ok(PulledTrack {
            info,
            relay_id: announce.track,
            peer: Arc::downgrade(peer),
            resumed,
        })
    }
}
