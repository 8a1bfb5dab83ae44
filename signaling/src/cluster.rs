//! Rooms across servers: each server serves its rooms' routers on a relay
//! endpoint (`weir-relay`) and pulls, into its own router of a room, the
//! tracks published on the other servers hosting that room. Its clients
//! then subscribe to them like local tracks; when a relayed track ends
//! (its origin ended it, or the relay connection died) the router says
//! `TrackClosed` and the room sends the usual `trackUnpublished`.
//!
//! Data channels go the same way: each channel published on a peer for an
//! open room is pulled (one relay stream each) and listed in the room as
//! `dataPublisherAdded`, so clients subscribe to it like a local one.
//!
//! Which tracks and channels a peer has comes from the relay's catalogs
//! ([`weir::relay::RelayEndpoint::catalog`], `data_catalog`); which servers to be
//! connected to comes from a [`Directory`]: static peers given on the
//! command line ([`StaticPeers`]).
//!
//! Lock order: a room's registry (`rooms.rs`) may call in here while held;
//! nothing here calls back into a room while holding `Cluster::state`.

use crate::config::ClusterConfig;
use crate::protocol::{kind_str, DataObject, TrackObject};
use crate::redis_directory::RedisDirectory;
use crate::room::Room;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::broadcast;
use weir::relay::{
    CatalogEvent, DataCatalogEvent, PulledData, PulledTrack, RelayConfig, RelayEndpoint, RelayPeer,
};
use weir::{DataPublisherId, RouterId, TrackId};

/// Pause between attempts to reach a peer that is down.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Tells which servers this one should be connected to. The relay itself
/// tells, once connected, which tracks each has; a directory only has to
/// keep the right connections up. Kept behind this trait so static peers
/// and a shared directory (Redis) are interchangeable.
pub(crate) trait Directory: Send + Sync {
    /// This server now hosts `room`.
    fn room_opened(&self, room: &str);
    /// This server no longer hosts `room`.
    fn room_closed(&self, room: &str);
}

/// Peers from the command line, connected for the server's whole life
/// whatever the rooms: the server with the smaller id of a pair connects
/// (and reconnects after a failure), the other accepts, so a pair shares
/// one connection.
pub(crate) struct StaticPeers;

impl StaticPeers {
    /// Starts keeping the connections up.
    fn start(relay: &RelayEndpoint, own_id: &str, peers: &[(String, SocketAddr)]) -> Self {
        for (id, addr) in peers {
            if own_id < id.as_str() {
                tokio::spawn(keep_connected(relay.clone(), id.clone(), *addr));
            }
        }
        StaticPeers
    }
}

impl Directory for StaticPeers {
    fn room_opened(&self, _room: &str) {}
    fn room_closed(&self, _room: &str) {}
}

/// Connects to a peer, and again whenever the connection ends, until the
/// relay endpoint closes.
async fn keep_connected(relay: RelayEndpoint, id: String, addr: SocketAddr) {
    let mut failures = 0u32;
    loop {
        if relay.local_addr().is_err() {
            return;
        }
        match relay.connect(addr).await {
            Ok(peer) => {
                failures = 0;
                if peer.server_id() != id {
                    tracing::warn!(expected = %id, got = %peer.server_id(), %addr, "cluster: peer has another node id");
                }
                tracing::info!(peer = %peer.server_id(), %addr, "cluster: connected");
                let reason = peer.closed().await;
                tracing::info!(peer = %id, %addr, "cluster: connection ended: {reason}");
            }
            Err(e) => {
                // Log the first failure and then rarely: a peer that is
                // down is expected to be retried quietly.
                if failures % 20 == 0 {
                    tracing::info!(peer = %id, %addr, "cluster: cannot connect: {e}");
                }
                failures = failures.saturating_add(1);
            }
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// A relayed track of a room: pulling (`None`) or pulled.
type Pulls = HashMap<(RouterId, TrackId), Option<PulledTrack>>;

/// A relayed data channel of a room: pulling (`None`) or pulled.
type DataPulls = HashMap<(RouterId, DataPublisherId), Option<PulledData>>;

#[derive(Default)]
struct State {
    /// Rooms open on this server, by router id.
    rooms: HashMap<RouterId, Weak<Room>>,
    pulls: Pulls,
    data_pulls: DataPulls,
}

/// This server's part of the cluster.
pub(crate) struct Cluster {
    relay: RelayEndpoint,
    directory: Box<dyn Directory>,
    state: Mutex<State>,
}

impl Cluster {
    /// Appends the relay endpoint's counters in Prometheus text format:
    /// `weir_relay_<name>_total` counters, and `weir_relay_live_*` gauges.
    pub(crate) fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        for (name, value) in self.relay.counters().snapshot() {
            if name.starts_with("live_") {
                let _ = writeln!(
                    out,
                    "# TYPE weir_relay_{name} gauge\nweir_relay_{name} {value}"
                );
            } else {
                let _ = writeln!(
                    out,
                    "# TYPE weir_relay_{name}_total counter\nweir_relay_{name}_total {value}"
                );
            }
        }
        self.render_downstream_reports(out);
    }

    /// Appends what each peer reports of the tracks relayed to it, as
    /// `weir_relay_downstream_<name>{peer, router, track}` gauges: the
    /// worst subscriber's loss, jitter and RTT there, and the most
    /// bandwidth any of them is given.
    fn render_downstream_reports(&self, out: &mut String) {
        use std::fmt::Write as _;
        use weir::escape_label;
        let mut rows = Vec::new();
        for peer in self.relay.peers() {
            for r in peer.downstream_reports() {
                if r.updated.is_none() {
                    continue;
                }
                let labels = format!(
                    "peer=\"{}\",router=\"{}\",track=\"{}\"",
                    escape_label(peer.server_id()),
                    escape_label(&r.router.to_string()),
                    escape_label(&r.track.to_string()),
                );
                rows.push((labels, r));
            }
        }
        if rows.is_empty() {
            return;
        }
        type Figure = fn(&weir::relay::DownstreamReport) -> Option<f64>;
        let figures: [(&str, Figure); 5] = [
            ("fraction_lost", |r| {
                Some(f64::from(r.fraction_lost) / 256.0)
            }),
            ("packets_lost", |r| Some(f64::from(r.cumulative_lost))),
            ("jitter_rtp_units", |r| Some(f64::from(r.jitter))),
            ("rtt_seconds", |r| r.rtt.map(|d| d.as_secs_f64())),
            ("bandwidth_bps", |r| r.bandwidth_bps.map(|b| b as f64)),
        ];
        for (name, figure) in figures {
            let _ = writeln!(out, "# TYPE weir_relay_downstream_{name} gauge");
            for (labels, r) in &rows {
                if let Some(v) = figure(r) {
                    let _ = writeln!(out, "weir_relay_downstream_{name}{{{labels}}} {v}");
                }
            }
        }
    }

    /// Binds the relay endpoint and starts the directory.
    pub(crate) async fn start(config: &ClusterConfig) -> Result<Arc<Self>, crate::Error> {
        let relay = RelayEndpoint::bind(
            RelayConfig::new(config.node_id.clone(), config.secret.clone())
                .with_bind(config.relay_addr)
                .with_resume_window(config.resume_window)
                .with_max_udp_payload(config.max_udp_payload),
        )
        .await
        .map_err(|e| crate::Error::Config(format!("relay on {}: {e}", config.relay_addr)))?;
        tracing::info!(node = %config.node_id, addr = ?relay.local_addr().ok(), "cluster: relay listening");
        let directory: Box<dyn Directory> = match &config.redis {
            Some(url) => {
                // Peers connect to the address the endpoint really has
                // (--relay-addr may ask for port 0).
                let addr = relay
                    .local_addr()
                    .map_err(|e| crate::Error::Config(e.to_string()))?;
                // Static peers, if also given, are kept connected too.
                StaticPeers::start(&relay, &config.node_id, &config.peers);
                Box::new(
                    RedisDirectory::start(url, config.node_id.clone(), addr, relay.clone()).await?,
                )
            }
            None => Box::new(StaticPeers::start(&relay, &config.node_id, &config.peers)),
        };
        let cluster = Arc::new(Cluster {
            relay,
            directory,
            state: Mutex::new(State::default()),
        });
        tokio::spawn(follow_catalog(
            Arc::downgrade(&cluster),
            cluster.relay.catalog(),
        ));
        tokio::spawn(follow_data_catalog(
            Arc::downgrade(&cluster),
            cluster.relay.data_catalog(),
        ));
        Ok(cluster)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A room opened here: serve it, and pull what peers already have.
    pub(crate) fn room_opened(self: &Arc<Self>, room: &Arc<Room>) {
        let id = room.router().id().clone();
        self.relay.serve_router(room.router());
        self.state().rooms.insert(id.clone(), Arc::downgrade(room));
        self.directory.room_opened(room.name().as_str());
        for peer in self.relay.peers() {
            for track in peer.remote_tracks(&id) {
                self.pull(peer.clone(), id.clone(), track);
            }
            for (data, _) in peer.remote_data(&id) {
                self.pull_data(peer.clone(), id.clone(), data);
            }
        }
    }

    /// A room closed here: stop serving it and drop what it pulled.
    pub(crate) fn room_closed(&self, room: &Room) {
        let id = room.router().id().clone();
        self.relay.stop_serving(&id);
        let dropped: (Vec<Option<PulledTrack>>, Vec<Option<PulledData>>) = {
            let mut st = self.state();
            st.rooms.remove(&id);
            let keys: Vec<_> = st.pulls.keys().filter(|(r, _)| *r == id).cloned().collect();
            let tracks = keys
                .into_iter()
                .filter_map(|k| st.pulls.remove(&k))
                .collect();
            let keys: Vec<_> = st
                .data_pulls
                .keys()
                .filter(|(r, _)| *r == id)
                .cloned()
                .collect();
            let data = keys
                .into_iter()
                .filter_map(|k| st.data_pulls.remove(&k))
                .collect();
            (tracks, data)
        };
        drop(dropped);
        self.directory.room_closed(room.name().as_str());
    }

    /// Reserves `key` of room `router` in the pull map `map` picks: the
    /// room, or `None` when the room is not open here or `key` is already
    /// being pulled or pulled.
    fn reserve<K: Clone + Eq + Hash, V>(
        &self,
        router: &RouterId,
        key: &K,
        map: impl FnOnce(&mut State) -> &mut HashMap<(RouterId, K), Option<V>>,
    ) -> Option<Arc<Room>> {
        let mut st = self.state();
        let room = st.rooms.get(router).and_then(Weak::upgrade)?;
        match map(&mut st).entry((router.clone(), key.clone())) {
            Entry::Occupied(_) => None,
            Entry::Vacant(slot) => {
                slot.insert(None);
                Some(room)
            }
        }
    }

    /// Keeps a finished pull in the slot [`Self::reserve`] made for it;
    /// `false` when the slot is gone (the pull ended, or the room closed,
    /// meanwhile), and the pull is dropped.
    fn settle<K: Eq + Hash, V>(
        &self,
        key: &(RouterId, K),
        pulled: V,
        map: impl FnOnce(&mut State) -> &mut HashMap<(RouterId, K), Option<V>>,
    ) -> bool {
        match map(&mut self.state()).get_mut(key) {
            Some(slot @ None) => {
                *slot = Some(pulled);
                true
            }
            _ => false,
        }
    }

    /// Pulls `track` of `peer`'s router `router` into the local room of
    /// the same id, unless already pulled or being pulled.
    fn pull(self: &Arc<Self>, peer: RelayPeer, router: RouterId, track: TrackId) {
        let Some(room) = self.reserve(&router, &track, |st| &mut st.pulls) else {
            return;
        };
        let cluster = Arc::downgrade(self);
        tokio::spawn(async move {
            let result = peer.pull(&router, &track, room.router()).await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            let key = (router.clone(), track.clone());
            match result {
                Ok(pulled) => {
                    let info = pulled.info().clone();
                    let pulled_resumed = pulled.resumed();
                    if !cluster.settle(&key, pulled, |st| &mut st.pulls) {
                        return;
                    }
                    if pulled_resumed {
                        // The room never lost it: no second trackPublished.
                        tracing::info!(room = %router, %track, peer = %peer.server_id(), "cluster: relayed track resumed");
                        return;
                    }
                    tracing::info!(room = %router, %track, peer = %peer.server_id(), "cluster: pulled track");
                    room.add_track(TrackObject {
                        track_id: info.id.to_string(),
                        // Not a member here: the publishing transport at the origin,
                        // `relay:<node id>`, so clients can tell where it comes from.
                        peer_id: info.transport.to_string(),
                        name: String::new(),
                        kind: kind_str(info.kind),
                        codec: info.codec,
                    });
                }
                Err(e) => {
                    cluster.state().pulls.remove(&key);
                    tracing::warn!(room = %router, %track, peer = %peer.server_id(), "cluster: pull failed: {e}");
                }
            }
        });
    }

    /// Pulls data channel `data` of `peer`'s router `router` into the
    /// local room of the same id, unless already pulled or being pulled.
    fn pull_data(self: &Arc<Self>, peer: RelayPeer, router: RouterId, data: DataPublisherId) {
        let Some(room) = self.reserve(&router, &data, |st| &mut st.data_pulls) else {
            return;
        };
        let cluster = Arc::downgrade(self);
        tokio::spawn(async move {
            let result = peer.pull_data(&router, &data, room.router()).await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            let key = (router.clone(), data.clone());
            match result {
                Ok(pulled) => {
                    let info = pulled.info().clone();
                    if !cluster.settle(&key, pulled, |st| &mut st.data_pulls) {
                        return;
                    }
                    tracing::info!(room = %router, %data, peer = %peer.server_id(), "cluster: pulled data channel");
                    // Owned by `relay:<node id>`, as relayed tracks are.
                    room.add_data(DataObject::new(&info, &info.transport.to_string(), ""));
                    // It may have ended before the room knew of it.
                    if !room
                        .router()
                        .data_publishers()
                        .iter()
                        .any(|d| d.id == info.id)
                    {
                        room.remove_data(&info.id);
                    }
                }
                Err(e) => {
                    cluster.state().data_pulls.remove(&key);
                    tracing::warn!(room = %router, %data, peer = %peer.server_id(), "cluster: data channel pull failed: {e}");
                }
            }
        });
    }

    /// A peer's data channel ended: drop the pull (the router's
    /// `DataClosed` then removes it from the room).
    fn unpull_data(&self, router: &RouterId, data: &DataPublisherId) {
        let pulled = self
            .state()
            .data_pulls
            .remove(&(router.clone(), data.clone()));
        drop(pulled);
    }

    /// A peer's track ended: drop the pull, which ends the relayed track
    /// in the router (and so `trackUnpublished` for the room).
    fn unpull(&self, router: &RouterId, track: &TrackId) {
        let pulled = self.state().pulls.remove(&(router.clone(), track.clone()));
        drop(pulled);
    }

    /// Pulls whatever peers have for open rooms and is not pulled yet:
    /// after catalog events were missed.
    fn resync(self: &Arc<Self>) {
        let rooms: Vec<RouterId> = self.state().rooms.keys().cloned().collect();
        for peer in self.relay.peers() {
            for router in &rooms {
                for track in peer.remote_tracks(router) {
                    self.pull(peer.clone(), router.clone(), track);
                }
                for (data, _) in peer.remote_data(router) {
                    self.pull_data(peer.clone(), router.clone(), data);
                }
            }
        }
    }

    /// Closes the relay endpoint (at shutdown).
    pub(crate) async fn close(&self) {
        {
            let mut st = self.state();
            st.pulls.clear();
            st.data_pulls.clear();
        }
        self.relay.close().await;
    }
}

/// Turns the relay's catalog into pulls and unpulls.
async fn follow_catalog(cluster: Weak<Cluster>, mut events: broadcast::Receiver<CatalogEvent>) {
    loop {
        let ev = events.recv().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        match ev {
            Ok(ev) if ev.live => {
                let Some(peer) = cluster
                    .relay
                    .peers()
                    .into_iter()
                    .find(|p| p.server_id() == ev.peer)
                else {
                    continue;
                };
                cluster.pull(peer, ev.router, ev.track);
            }
            Ok(ev) => cluster.unpull(&ev.router, &ev.track),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "cluster: catalog lagged; resyncing");
                cluster.resync();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Turns the relay's data channel catalog into pulls and unpulls.
async fn follow_data_catalog(
    cluster: Weak<Cluster>,
    mut events: broadcast::Receiver<DataCatalogEvent>,
) {
    loop {
        let ev = events.recv().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        match ev {
            Ok(ev) if ev.params.is_some() => {
                let Some(peer) = cluster
                    .relay
                    .peers()
                    .into_iter()
                    .find(|p| p.server_id() == ev.peer)
                else {
                    continue;
                };
                cluster.pull_data(peer, ev.router, ev.data);
            }
            Ok(ev) => cluster.unpull_data(&ev.router, &ev.data),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "cluster: data catalog lagged; resyncing");
                cluster.resync();
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
