//! Rooms: a name mapped to a `weir::Router`, its members and their live
//! tracks and data channels.
//!
//! A room is created by the first `join` and closed when its last member
//! leaves. Membership and the track list change under one lock per room, so a
//! joiner's snapshot (`joined.tracks`) and the events it receives afterwards
//! neither miss nor repeat a track.
//!
//! Lock order: the registry's map, then a room's state, then the
//! cluster's state (`cluster.rs`). No lock is held
//! across an `.await`.

use crate::cluster::Cluster;
use crate::peer::SessionEvent;
use crate::protocol::{DataObject, ErrorCode, Failure, PeerObject, RoomName, TrackObject};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::{broadcast, mpsc};
use weir::{DataPublisherId, Router, RouterConfig, RouterEvent, RouterId, TrackId, Worker};

/// What a room tells its members; each session turns these into messages.
#[derive(Debug, Clone)]
pub(crate) enum RoomEvent {
    PeerJoined(PeerObject),
    PeerLeft(PeerObject),
    TrackPublished(TrackObject),
    TrackUnpublished(TrackId),
    DataAdded(DataObject),
    DataRemoved(DataPublisherId),
}

/// A member as the room sees it.
pub(crate) struct Member {
    pub(crate) name: String,
    /// Joined with `hidden`: neither announced nor listed to the others.
    /// Announcing every viewer to every member costs a room of n viewers
    /// n² messages (3,000 viewers: 4.5 million `peerJoined`).
    pub(crate) hidden: bool,
    pub(crate) events: mpsc::UnboundedSender<SessionEvent>,
}

#[derive(Default)]
struct RoomState {
    members: BTreeMap<String, Member>,
    tracks: BTreeMap<TrackId, TrackObject>,
    data: BTreeMap<DataPublisherId, DataObject>,
    /// Joins between `enter` and `admit`/`abandon`: they keep the room open.
    entering: usize,
    closed: bool,
}

/// One room.
pub(crate) struct Room {
    name: RoomName,
    router: Router,
    state: Mutex<RoomState>,
}

impl Room {
    pub(crate) fn name(&self) -> &RoomName {
        &self.name
    }

    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    fn state(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding this lock leaves plain maps behind, still
        // consistent enough to keep serving the other members.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `peer_id` a member; returns the tracks, members and data
    /// channels already there.
    pub(crate) fn admit(
        &self,
        peer_id: &str,
        member: Member,
    ) -> (Vec<TrackObject>, Vec<PeerObject>, Vec<DataObject>) {
        let mut st = self.state();
        st.entering = st.entering.saturating_sub(1);
        let me = PeerObject {
            peer_id: peer_id.to_owned(),
            name: member.name.clone(),
        };
        let peers = st
            .members
            .iter()
            .filter(|(_, m)| !m.hidden)
            .map(|(id, m)| PeerObject {
                peer_id: id.clone(),
                name: m.name.clone(),
            })
            .collect();
        let tracks = st.tracks.values().cloned().collect();
        let data = st.data.values().cloned().collect();
        if !member.hidden {
            broadcast_locked(&st, None, RoomEvent::PeerJoined(me));
        }
        st.members.insert(peer_id.to_owned(), member);
        (tracks, peers, data)
    }

    /// Records a data channel that opened and tells everyone but its owner.
    pub(crate) fn add_data(&self, data: DataObject) {
        let mut st = self.state();
        if st.closed {
            return;
        }
        let owner = data.peer_id.clone();
        broadcast_locked(&st, Some(&owner), RoomEvent::DataAdded(data.clone()));
        st.data
            .insert(DataPublisherId::from(data.data_id.as_str()), data);
    }

    /// Forgets a data channel and tells everyone, the owner included.
    pub(crate) fn remove_data(&self, id: &DataPublisherId) -> bool {
        let mut st = self.state();
        if st.data.remove(id).is_none() {
            return false;
        }
        broadcast_locked(&st, None, RoomEvent::DataRemoved(id.clone()));
        true
    }

    /// The live data channel `id`, if any.
    pub(crate) fn data(&self, id: &DataPublisherId) -> Option<DataObject> {
        self.state().data.get(id).cloned()
    }

    /// Records a track that went live and tells everyone but its owner.
    pub(crate) fn add_track(&self, track: TrackObject) {
        let mut st = self.state();
        if st.closed {
            return;
        }
        let owner = track.peer_id.clone();
        broadcast_locked(&st, Some(&owner), RoomEvent::TrackPublished(track.clone()));
        st.tracks
            .insert(TrackId::from(track.track_id.as_str()), track);
    }

    /// Forgets a track and tells everyone, the owner included. Returns false
    /// when it was already gone, so each end is announced once.
    pub(crate) fn remove_track(&self, id: &TrackId) -> bool {
        let mut st = self.state();
        if st.tracks.remove(id).is_none() {
            return false;
        }
        broadcast_locked(&st, None, RoomEvent::TrackUnpublished(id.clone()));
        true
    }

    /// The live track `id`, if any.
    pub(crate) fn track(&self, id: &TrackId) -> Option<TrackObject> {
        self.state().tracks.get(id).cloned()
    }

    /// Drops tracks the router no longer has: after a lagging event receiver
    /// missed some `TrackClosed`.
    fn reconcile(&self) {
        let live: std::collections::HashSet<TrackId> =
            self.router.tracks().into_iter().map(|t| t.id).collect();
        let gone: Vec<TrackId> = self
            .state()
            .tracks
            .keys()
            .filter(|id| !live.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.remove_track(&id);
        }
        let live: std::collections::HashSet<DataPublisherId> = self
            .router
            .data_publishers()
            .into_iter()
            .map(|d| d.id)
            .collect();
        let gone: Vec<DataPublisherId> = self
            .state()
            .data
            .keys()
            .filter(|id| !live.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.remove_data(&id);
        }
    }
}

fn broadcast_locked(st: &RoomState, except: Option<&str>, ev: RoomEvent) {
    for (id, m) in &st.members {
        if Some(id.as_str()) != except {
            // A closed receiver is a session on its way out; it unregisters itself.
            let _ = m.events.send(SessionEvent::Room(Box::new(ev.clone())));
        }
    }
}

/// Every open room of the server.
pub(crate) struct Rooms {
    worker: Option<Worker>,
    /// Rooms across servers, when clustered.
    cluster: Option<Arc<Cluster>>,
    map: Mutex<HashMap<RoomName, Arc<Room>>>,
}

impl Rooms {
    pub(crate) fn new(worker: Option<Worker>, cluster: Option<Arc<Cluster>>) -> Self {
        Self {
            worker,
            cluster,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<RoomName, Arc<Room>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// Opens (creating if needed) the room and holds it open until the
    /// caller `admit`s itself or `abandon`s the join.
    pub(crate) fn enter(&self, name: &RoomName) -> Result<Arc<Room>, Failure> {
        let Some(worker) = &self.worker else {
            return Err(Failure::new(
                ErrorCode::Internal,
                "media is disabled on this server (started without a worker)",
            ));
        };
        let mut map = self.map();
        let room = match map.get(name) {
            Some(r) => r.clone(),
            None => {
                let router = worker.create_router(RouterConfig {
                    id: Some(RouterId::from(name.as_str())),
                });
                let room = Arc::new(Room {
                    name: name.clone(),
                    router,
                    state: Mutex::new(RoomState::default()),
                });
                spawn_router_events(&room);
                map.insert(name.clone(), room.clone());
                if let Some(cluster) = &self.cluster {
                    cluster.room_opened(&room);
                }
                tracing::info!(room = %name, "room opened");
                room
            }
        };
        room.state().entering += 1;
        Ok(room)
    }

    /// Undoes an `enter` whose join failed. Returns the router to close if
    /// the room became empty.
    pub(crate) fn abandon(&self, room: &Arc<Room>) -> Option<Router> {
        let map = self.map();
        {
            let mut st = room.state();
            st.entering = st.entering.saturating_sub(1);
        }
        self.close_if_empty(map, room)
    }

    /// Removes a member: its tracks end, the others get `peerLeft`. Returns
    /// the router to close if the room became empty.
    pub(crate) fn leave(&self, room: &Arc<Room>, peer_id: &str) -> Option<Router> {
        let map = self.map();
        {
            let mut st = room.state();
            if let Some(m) = st.members.remove(peer_id) {
                let theirs: Vec<TrackId> = st
                    .tracks
                    .iter()
                    .filter(|(_, t)| t.peer_id == peer_id)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in theirs {
                    st.tracks.remove(&id);
                    broadcast_locked(&st, None, RoomEvent::TrackUnpublished(id));
                }
                let theirs: Vec<DataPublisherId> = st
                    .data
                    .iter()
                    .filter(|(_, d)| d.peer_id == peer_id)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in theirs {
                    st.data.remove(&id);
                    broadcast_locked(&st, None, RoomEvent::DataRemoved(id));
                }
                if !m.hidden {
                    broadcast_locked(
                        &st,
                        None,
                        RoomEvent::PeerLeft(PeerObject {
                            peer_id: peer_id.to_owned(),
                            name: m.name,
                        }),
                    );
                }
            }
        }
        self.close_if_empty(map, room)
    }

    fn close_if_empty(
        &self,
        mut map: MutexGuard<'_, HashMap<RoomName, Arc<Room>>>,
        room: &Arc<Room>,
    ) -> Option<Router> {
        let mut st = room.state();
        if st.closed || !st.members.is_empty() || st.entering > 0 {
            return None;
        }
        st.closed = true;
        st.tracks.clear();
        st.data.clear();
        map.remove(&room.name);
        if let Some(cluster) = &self.cluster {
            cluster.room_closed(room);
        }
        tracing::info!(room = %room.name, "room closed");
        Some(room.router.clone())
    }

    /// Closes every room (at shutdown, after the sessions ended).
    pub(crate) fn drain(&self) -> Vec<Router> {
        let mut map = self.map();
        map.drain()
            .map(|(_, room)| {
                room.state().closed = true;
                if let Some(cluster) = &self.cluster {
                    cluster.room_closed(&room);
                }
                room.router.clone()
            })
            .collect()
    }
}

/// Turns the router's `TrackClosed` / `DataClosed` into `trackUnpublished`
/// / `dataPublisherRemoved` for the room.
/// Holds the room weakly: the task ends with the router's event channel.
fn spawn_router_events(room: &Arc<Room>) {
    let mut events = room.router.events();
    let weak: Weak<Room> = Arc::downgrade(room);
    tokio::spawn(async move {
        loop {
            let ev = events.recv().await;
            let Some(room) = weak.upgrade() else { break };
            match ev {
                Ok(RouterEvent::TrackClosed(id)) => {
                    room.remove_track(&id);
                }
                Ok(RouterEvent::DataClosed(id)) => {
                    room.remove_data(&id);
                }
                // Announced by the publishing session once `publish` /
                // `data_publish` resolves, because only it knows the owner.
                Ok(RouterEvent::TrackPublished(_) | RouterEvent::DataPublished(_)) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(room = %room.name, missed = n, "router events lagged; reconciling");
                    room.reconcile();
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
            if room.state().closed {
                break;
            }
        }
    });
}
