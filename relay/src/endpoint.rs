//! [`RelayEndpoint`]: one QUIC endpoint per server, which connects to peer
//! servers and accepts them, and the hello that authenticates each
//! connection.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use weir_controlplane::{DataPublisherId, Router, RouterEvent, RouterId, TrackId, TrackInfo};

use crate::auth::{ClusterKey, Role, EXPORTER_LABEL, EXPORTER_LEN};
use crate::counters::RelayCounters;
use crate::data::{self, DataCatalog, DataCatalogEvent};
use crate::peer::{PeerInner, RelayPeer};
use crate::proto::control::{ControlMessage, FrameReader, Hello};
use crate::resume::Orphans;
use crate::transport::{self, QuicSettings};
use crate::RelayError;

/// Configuration of a [`RelayEndpoint`].
#[derive(Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// This server's id in the cluster (sent in the hello, logged by peers).
    pub server_id: String,
    /// The secret every server of the cluster shares; a peer that cannot
    /// prove it is refused.
    pub cluster_secret: Vec<u8>,
    /// UDP address of the relay endpoint.
    pub bind: SocketAddr,
    /// QUIC keep-alive interval: traffic even when no track flows, so
    /// a silent peer means a dead one.
    pub keep_alive: Duration,
    /// A connection with nothing received for this long is dead: its
    /// pulled tracks end. Below 3 s, as the relay's contract says.
    pub idle_timeout: Duration,
    /// The first QUIC packets' size: a 1200-byte RTP packet and its relay
    /// header fit from the first datagram on.
    pub initial_mtu: u16,
    /// Packets a served track may queue between the data plane and the
    /// relay task before the data plane drops (and counts) them.
    pub tap_capacity: usize,
    /// A peer that has not completed its hello in this time is dropped.
    pub handshake_timeout: Duration,
    /// Test mode: drop every Nth RTP datagram this endpoint would send for
    /// the first time (0: never). Retransmissions are never dropped, so
    /// NACK recovery across the relay can be tested deterministically.
    pub drop_every_nth_rtp: u64,
    /// How long a pulled track whose connection failed stays in its
    /// router, subscribers attached, for a new pull of it (over a new
    /// connection) to take it over. Zero (the default): it ends at once,
    /// so subscribers see it end within the liveness bound.
    pub resume_window: Duration,
    /// The largest UDP payload this endpoint takes and path MTU discovery
    /// tries for: a bigger path lets several RTP packets share a QUIC
    /// datagram (see [`RelayConfig::bundle`]). Where the path is smaller
    /// (1,500-byte Ethernet: 1,452 over IPv6), discovery stops below it
    /// and each datagram carries one RTP packet. Above 6,500 bytes quinn
    /// sends without segmentation offload (GSO): its batches of 10 would
    /// exceed what one UDP send takes.
    pub max_udp_payload: u16,
    /// Whether to send several RTP packets a served track has queued in
    /// one QUIC datagram (a bundle) when they fit and the peer takes them.
    /// Only packets already queued are bundled: no added latency. Off, the
    /// hello does not offer bundles either, so peers send none.
    pub bundle: bool,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("server_id", &self.server_id)
            .field("bind", &self.bind)
            .field("keep_alive", &self.keep_alive)
            .field("idle_timeout", &self.idle_timeout)
            .field("initial_mtu", &self.initial_mtu)
            .field("drop_every_nth_rtp", &self.drop_every_nth_rtp)
            .field("resume_window", &self.resume_window)
            .field("max_udp_payload", &self.max_udp_payload)
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}

impl RelayConfig {
    /// A configuration with the defaults below.
    pub fn new(server_id: impl Into<String>, cluster_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            server_id: server_id.into(),
            cluster_secret: cluster_secret.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            // A dead peer is noticed within idle timeout + keep-alive
            // interval (sending a keep-alive restarts the idle timer, RFC
            // 9000 §10.1): 2.1 s, inside the relay's 3 s promise.
            keep_alive: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(1800),
            // 1200 bytes of RTP + 26 of relay header + up to ~60 of QUIC
            // short header, frame header and AEAD tag.
            initial_mtu: 1300,
            tap_capacity: 4096,
            handshake_timeout: Duration::from_secs(5),
            drop_every_nth_rtp: 0,
            resume_window: Duration::ZERO,
            // Five 1,200-byte RTP packets per datagram where the path
            // allows (a jumbo-frame path, loopback), and the largest size
            // that keeps quinn's GSO batches within one UDP send.
            max_udp_payload: 6_500,
            bundle: true,
        }
    }

    /// Sets the largest UDP payload ([`RelayConfig::max_udp_payload`]),
    /// at least 1,200 (QUIC's minimum) and at least `initial_mtu`.
    pub fn with_max_udp_payload(mut self, max: u16) -> Self {
        self.max_udp_payload = max;
        self
    }

    /// Turns bundling on or off ([`RelayConfig::bundle`]).
    pub fn with_bundling(mut self, on: bool) -> Self {
        self.bundle = on;
        self
    }

    /// Sets the resume window ([`RelayConfig::resume_window`]).
    pub fn with_resume_window(mut self, window: Duration) -> Self {
        self.resume_window = window;
        self
    }

    /// Sets the bind address.
    pub fn with_bind(mut self, bind: SocketAddr) -> Self {
        self.bind = bind;
        self
    }

    /// Sets the test-mode loss emulation ([`RelayConfig::drop_every_nth_rtp`]).
    pub fn with_drop_every_nth_rtp(mut self, n: u64) -> Self {
        self.drop_every_nth_rtp = n;
        self
    }

    /// Sets keep-alive interval and idle timeout.
    pub fn with_liveness(mut self, keep_alive: Duration, idle_timeout: Duration) -> Self {
        self.keep_alive = keep_alive;
        self.idle_timeout = idle_timeout;
        self
    }

    fn quic(&self) -> QuicSettings {
        QuicSettings {
            keep_alive: self.keep_alive,
            idle_timeout: self.idle_timeout,
            initial_mtu: self.initial_mtu,
            max_udp_payload: self.max_udp_payload,
        }
    }
}

pub(crate) struct EndpointInner {
    pub(crate) config: RelayConfig,
    key: ClusterKey,
    endpoint: quinn::Endpoint,
    routers: Mutex<HashMap<RouterId, Router>>,
    pub(crate) counters: Arc<RelayCounters>,
    accepted: tokio::sync::Mutex<mpsc::Receiver<RelayPeer>>,
    /// Every live connection, held here so it lives until it closes
    /// whether or not the application keeps a handle (an accepted peer
    /// nobody asked for still serves). A connection removes itself when it
    /// ends, which breaks the endpoint ↔ peer reference cycle.
    peers: Mutex<Vec<Arc<PeerInner>>>,
    /// Tracks published on this server itself (not relayed ones), per
    /// served router: what peers learn in [`ControlMessage::TrackState`].
    /// Changes are sent to peers under this lock, so a peer's snapshot and
    /// the changes after it arrive in order.
    local_tracks: Mutex<HashMap<RouterId, BTreeSet<TrackId>>>,
    /// What peers told of their tracks.
    pub(crate) catalog: broadcast::Sender<CatalogEvent>,
    /// Data channels published on this server itself, per served router,
    /// as for `local_tracks` (lock order: `local_tracks`, then this, then
    /// `peers`).
    local_data: Mutex<DataCatalog>,
    /// What peers told of their data channels.
    pub(crate) data_catalog: broadcast::Sender<DataCatalogEvent>,
    /// Pulled tracks waiting to be resumed.
    pub(crate) orphans: Arc<Orphans>,
}

/// A peer's track went live or ended (or the peer went away: every one of
/// its tracks ends). See [`RelayEndpoint::catalog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEvent {
    /// The peer's server id.
    pub peer: String,
    /// The router (room) at the peer.
    pub router: RouterId,
    /// The track id at the peer (the id it keeps once pulled).
    pub track: TrackId,
    /// Live or ended.
    pub live: bool,
}

/// Is this track published on this server (not pulled from a peer)?
/// Relayed tracks are owned by a `relay:` transport; announcing them
/// would bounce a track back to its origin.
fn is_local(info: &TrackInfo) -> bool {
    !info.transport.0.starts_with("relay:")
}

impl EndpointInner {
    /// Forgets a connection that ended.
    pub(crate) fn remove_peer(&self, peer: &PeerInner) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| !std::ptr::eq(Arc::as_ptr(p), peer));
    }

    fn local_tracks(&self) -> std::sync::MutexGuard<'_, HashMap<RouterId, BTreeSet<TrackId>>> {
        self.local_tracks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change of a local track and tells every peer.
    fn set_local(&self, router: &RouterId, track: &TrackId, live: bool) {
        let mut local = self.local_tracks();
        let changed = match local.get_mut(router) {
            Some(set) if live => set.insert(track.clone()),
            Some(set) => set.remove(track),
            // Not served (any more): peers were told it ended.
            None => false,
        };
        if !changed {
            return;
        }
        let msg = ControlMessage::TrackState {
            router: router.to_string(),
            track: track.to_string(),
            live,
        };
        for p in self.peers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            p.send_ctl(msg.clone());
        }
    }

    fn local_data(&self) -> std::sync::MutexGuard<'_, DataCatalog> {
        self.local_data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change of a local data channel (`Some` parameters: open)
    /// and tells every peer.
    fn set_local_data(
        &self,
        router: &RouterId,
        id: &DataPublisherId,
        info: Option<crate::proto::data::DataChannelInfo>,
    ) {
        let mut local = self.local_data();
        let changed = match (local.get_mut(router), &info) {
            (Some(set), Some(i)) => set.insert(id.clone(), i.clone()).is_none(),
            (Some(set), None) => set.remove(id).is_some(),
            (None, _) => false,
        };
        if !changed {
            return;
        }
        let msg = data::state_message(router, id, info);
        for p in self.peers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            p.send_ctl(msg.clone());
        }
    }

    /// Sends a new peer every local track and data channel, before any
    /// later change.
    pub(crate) fn add_peer(&self, peer: Arc<PeerInner>) {
        let local = self.local_tracks();
        for (router, tracks) in local.iter() {
            for track in tracks {
                peer.send_ctl(ControlMessage::TrackState {
                    router: router.to_string(),
                    track: track.to_string(),
                    live: true,
                });
            }
        }
        let local_data = self.local_data();
        for (router, channels) in local_data.iter() {
            for (id, info) in channels {
                peer.send_ctl(data::state_message(router, id, Some(info.clone())));
            }
        }
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(peer);
    }

    pub(crate) fn router(&self, id: &RouterId) -> Option<Router> {
        self.routers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }
}

/// A server's relay endpoint: one QUIC connection per peer server carries
/// every track relayed between the two, either way.
///
/// ```no_run
/// # async fn f(router: weir_controlplane::Router, peer_addr: std::net::SocketAddr) -> Result<(), weir_relay::RelayError> {
/// use weir_relay::{RelayConfig, RelayEndpoint};
/// let relay = RelayEndpoint::bind(RelayConfig::new("node-b", b"cluster secret".to_vec())).await?;
/// let origin = relay.connect(peer_addr).await?; // node A, which serves its router
/// let pulled = origin.pull(router.id(), &"t1".into(), &router).await?;
/// // `router` now lists the track; its subscribe transports subscribe to it as to a local one.
/// # drop(pulled); Ok(()) }
/// ```
#[derive(Clone)]
pub struct RelayEndpoint {
    inner: Arc<EndpointInner>,
}

impl std::fmt::Debug for RelayEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayEndpoint")
            .field("server_id", &self.inner.config.server_id)
            .field("addr", &self.local_addr().ok())
            .finish()
    }
}

impl RelayEndpoint {
    /// Binds the endpoint and starts accepting peers. Must run inside a
    /// tokio runtime.
    pub async fn bind(config: RelayConfig) -> Result<Self, RelayError> {
        let quic = config.quic();
        let socket = transport::bind_socket(config.bind)?;
        let mut endpoint = quinn::Endpoint::new(
            transport::endpoint_config(quic)?,
            Some(transport::server_config(quic)?),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| RelayError::Io(format!("bind {}: {e}", config.bind)))?;
        endpoint.set_default_client_config(transport::client_config(quic)?);
        let (accepted_tx, accepted_rx) = mpsc::channel(64);
        let inner = Arc::new(EndpointInner {
            key: ClusterKey::new(&config.cluster_secret),
            config,
            endpoint: endpoint.clone(),
            routers: Mutex::new(HashMap::new()),
            counters: Arc::new(RelayCounters::default()),
            accepted: tokio::sync::Mutex::new(accepted_rx),
            peers: Mutex::new(Vec::new()),
            local_tracks: Mutex::new(HashMap::new()),
            catalog: broadcast::channel(1024).0,
            local_data: Mutex::new(HashMap::new()),
            data_catalog: broadcast::channel(1024).0,
            orphans: Arc::default(),
        });
        tokio::spawn(accept_loop(endpoint, Arc::downgrade(&inner), accepted_tx));
        Ok(Self { inner })
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, RelayError> {
        self.inner
            .endpoint
            .local_addr()
            .map_err(|e| RelayError::Io(e.to_string()))
    }

    /// This server's id.
    pub fn server_id(&self) -> &str {
        &self.inner.config.server_id
    }

    /// Lets peers pull the tracks of `router` (by its id), and tells them
    /// ([`CatalogEvent`] on their side) which of its tracks are published
    /// here, now and as that changes.
    pub fn serve_router(&self, router: &Router) {
        let id = router.id().clone();
        // Listen before the snapshot, so no publish slips between.
        let events = router.events();
        self.inner
            .routers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), router.clone());
        self.inner.local_tracks().entry(id.clone()).or_default();
        self.inner.local_data().entry(id.clone()).or_default();
        for t in router.tracks().iter().filter(|t| is_local(t)) {
            self.inner.set_local(&id, &t.id, true);
        }
        for d in router
            .data_publishers()
            .iter()
            .filter(|d| data::is_local(d))
        {
            self.inner
                .set_local_data(&id, &d.id, Some(data::info_of(&d.params)));
        }
        tokio::spawn(watch_router(Arc::downgrade(&self.inner), id, events));
    }

    /// Stops serving a router to new pulls (tracks already pulled go on
    /// until they end); peers are told its tracks ended.
    pub fn stop_serving(&self, id: &RouterId) {
        self.inner
            .routers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        forget_router(&self.inner, id);
    }

    /// What peers tell of the tracks published on them: every track of
    /// their served routers as each connection starts, then every change;
    /// when a connection ends, its tracks end. Lagging receivers lose
    /// events (`RecvError::Lagged`); [`RelayPeer::remote_tracks`] has the
    /// current state.
    pub fn catalog(&self) -> broadcast::Receiver<CatalogEvent> {
        self.inner.catalog.subscribe()
    }

    /// What peers tell of the data channels published on them, like
    /// [`RelayEndpoint::catalog`] for tracks (with each channel's label,
    /// protocol, ordering and reliability); [`RelayPeer::remote_data`] has
    /// the current state.
    pub fn data_catalog(&self) -> broadcast::Receiver<DataCatalogEvent> {
        self.inner.data_catalog.subscribe()
    }

    /// Connects to a peer server and authenticates both ways.
    pub async fn connect(&self, addr: SocketAddr) -> Result<RelayPeer, RelayError> {
        let inner = self.inner.clone();
        let limit = inner.config.handshake_timeout;
        tokio::time::timeout(limit, async move {
            let conn = inner
                .endpoint
                .connect(addr, transport::SERVER_NAME)
                .map_err(|e| RelayError::Io(format!("connect {addr}: {e}")))?
                .await
                .map_err(|e| RelayError::Io(format!("connect {addr}: {e}")))?;
            let (send, recv) = conn
                .open_bi()
                .await
                .map_err(|e| RelayError::Io(format!("control stream: {e}")))?;
            handshake(inner, conn, Role::Client, send, recv).await
        })
        .await
        .map_err(|_| RelayError::Timeout("relay handshake"))?
    }

    /// The next peer that connected to this endpoint and authenticated.
    /// Accepted peers work (serve and may pull) whether or not this is
    /// called; it only hands them to the application.
    pub async fn accept(&self) -> Option<RelayPeer> {
        self.inner.accepted.lock().await.recv().await
    }

    /// The peers connected now.
    pub fn peers(&self) -> Vec<RelayPeer> {
        let peers = self.inner.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers
            .iter()
            .filter(|p| p.is_open())
            .cloned()
            .map(RelayPeer::from_inner)
            .collect()
    }

    /// The endpoint's counters.
    pub fn counters(&self) -> &Arc<RelayCounters> {
        &self.inner.counters
    }

    /// Closes every connection and the endpoint.
    pub async fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"closing");
        self.inner.orphans.clear();
        // Their datagram loops would remove them too; do not wait for it.
        self.inner
            .peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.inner.endpoint.wait_idle().await;
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    inner: Weak<EndpointInner>,
    accepted: mpsc::Sender<RelayPeer>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let Some(inner) = inner.upgrade() else {
            incoming.refuse();
            break;
        };
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let limit = inner.config.handshake_timeout;
            let result = tokio::time::timeout(limit, async {
                let conn = incoming
                    .await
                    .map_err(|e| RelayError::Io(format!("accept: {e}")))?;
                let (send, recv) = conn
                    .accept_bi()
                    .await
                    .map_err(|e| RelayError::Io(format!("control stream: {e}")))?;
                handshake(inner.clone(), conn, Role::Server, send, recv).await
            })
            .await;
            match result {
                Ok(Ok(peer)) => {
                    // Nobody reading accepted peers is fine: they work anyway.
                    let _ = accepted.try_send(peer);
                }
                Ok(Err(e)) => tracing::info!(%remote, "relay: connection from peer failed: {e}"),
                Err(_) => tracing::info!(%remote, "relay: peer did not complete its hello in time"),
            }
        });
    }
}

/// Reads control frames until one whole message is there.
pub(crate) async fn read_message(
    recv: &mut quinn::RecvStream,
    reader: &mut FrameReader,
) -> Result<ControlMessage, RelayError> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(m) = reader.poll() {
            return m.map_err(RelayError::Protocol);
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => reader.push(&buf[..n]),
            Ok(None) => return Err(RelayError::Closed("control stream ended".into())),
            Err(e) => return Err(RelayError::Closed(e.to_string())),
        }
    }
}

async fn write_message(
    send: &mut quinn::SendStream,
    msg: &ControlMessage,
) -> Result<(), RelayError> {
    let mut out = Vec::new();
    msg.encode(&mut out).map_err(RelayError::Protocol)?;
    send.write_all(&out)
        .await
        .map_err(|e| RelayError::Closed(e.to_string()))
}

/// The hello exchange. The client speaks first; the server answers only a
/// client that proved the secret, so an unauthenticated client learns
/// nothing of the server but its certificate.
async fn handshake(
    inner: Arc<EndpointInner>,
    conn: quinn::Connection,
    role: Role,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<RelayPeer, RelayError> {
    let remote = conn.remote_address();
    let mut exporter = [0u8; EXPORTER_LEN];
    conn.export_keying_material(&mut exporter, EXPORTER_LABEL, b"")
        .map_err(|_| RelayError::Io("TLS keying material export failed".into()))?;
    let mut ours = inner.key.hello(role, &inner.config.server_id, &exporter);
    if !inner.config.bundle {
        // Neither sends nor asks for bundles: to peers, like a server from
        // before them.
        ours.capabilities &= !crate::proto::control::capabilities::BUNDLE;
    }
    let peer_role = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    if role == Role::Client {
        write_message(&mut send, &ControlMessage::Hello(ours.clone())).await?;
    }
    let mut reader = FrameReader::new();
    let theirs: Hello = match read_message(&mut recv, &mut reader).await {
        Ok(ControlMessage::Hello(h)) => h,
        Ok(ControlMessage::Error { code, message, .. }) => {
            return Err(RelayError::Refused(format!("{code:?}: {message}")));
        }
        Ok(other) => {
            return Err(RelayError::Protocol(crate::proto::ProtoError::Invalid(
                match other {
                    ControlMessage::Announce(_) => "announce before hello",
                    _ => "message before hello",
                },
            )));
        }
        Err(RelayError::Closed(reason)) if role == Role::Client => {
            // The close frame says why (`unauthorized` for a bad proof).
            let reason = conn.close_reason().map_or(reason, |r| r.to_string());
            return Err(RelayError::Refused(format!(
                "the peer closed before its hello ({reason})"
            )));
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = inner.key.verify(peer_role, &exporter, &theirs) {
        RelayCounters::inc(&inner.counters.auth_refused);
        tracing::warn!(
            %remote,
            peer = %theirs.server_id,
            "relay: refused peer: {e}"
        );
        // The close reason tells the peer why; its hello is not answered.
        conn.close(2u32.into(), b"unauthorized");
        return Err(RelayError::Refused(e.to_string()));
    }
    if role == Role::Server {
        write_message(&mut send, &ControlMessage::Hello(ours)).await?;
    }
    tracing::info!(%remote, peer = %theirs.server_id, ?role, "relay: peer authenticated");
    let peer = PeerInner::start(
        inner.clone(),
        conn,
        theirs.server_id,
        theirs.capabilities,
        send,
        recv,
        reader,
    );
    Ok(RelayPeer::from_inner(peer))
}

/// Tells peers of the local tracks of a served router as they go live and
/// end, until the router closes or is no longer served.
async fn watch_router(
    inner: Weak<EndpointInner>,
    id: RouterId,
    mut events: broadcast::Receiver<RouterEvent>,
) {
    loop {
        let ev = events.recv().await;
        let Some(inner) = inner.upgrade() else { return };
        let served = inner
            .routers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id);
        if !served {
            return;
        }
        match ev {
            Ok(RouterEvent::TrackPublished(info)) if is_local(&info) => {
                inner.set_local(&id, &info.id, true);
            }
            Ok(RouterEvent::TrackClosed(track)) => inner.set_local(&id, &track, false),
            Ok(RouterEvent::DataPublished(info)) if data::is_local(&info) => {
                inner.set_local_data(&id, &info.id, Some(data::info_of(&info.params)));
            }
            Ok(RouterEvent::DataClosed(d)) => inner.set_local_data(&id, &d, None),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Missed some: the router's list is the truth.
                let Some(router) = inner.router(&id) else {
                    return;
                };
                let live: BTreeSet<TrackId> = router
                    .tracks()
                    .into_iter()
                    .filter(is_local)
                    .map(|t| t.id)
                    .collect();
                let known = inner.local_tracks().get(&id).cloned().unwrap_or_default();
                for t in known.difference(&live) {
                    inner.set_local(&id, t, false);
                }
                for t in live.difference(&known) {
                    inner.set_local(&id, t, true);
                }
                let live_data: BTreeMap<DataPublisherId, _> = router
                    .data_publishers()
                    .into_iter()
                    .filter(data::is_local)
                    .map(|d| (d.id, data::info_of(&d.params)))
                    .collect();
                let known_data = inner.local_data().get(&id).cloned().unwrap_or_default();
                for d in known_data.keys().filter(|d| !live_data.contains_key(*d)) {
                    inner.set_local_data(&id, d, None);
                }
                for (d, info) in live_data {
                    if !known_data.contains_key(&d) {
                        inner.set_local_data(&id, &d, Some(info));
                    }
                }
            }
            // The server stops serving a router before closing it
            // (`stop_serving` tells peers); a router of the same id may be
            // served again already, so leave its entry alone.
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// A router no longer served: peers hear that its tracks ended.
fn forget_router(inner: &EndpointInner, id: &RouterId) {
    let known = inner.local_tracks().get(id).cloned().unwrap_or_default();
    for t in &known {
        inner.set_local(id, t, false);
    }
    inner.local_tracks().remove(id);
    let known_data = inner.local_data().get(id).cloned().unwrap_or_default();
    for d in known_data.keys() {
        inner.set_local_data(id, d, None);
    }
    inner.local_data().remove(id);
}
