//! The `Router`: a room. It knows the tracks published in it and the
//! transports that may subscribe to them.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::broadcast;
use weir_dataplane::TrackKey;

use crate::datachannel::{DataPublisherInfo, DataPublisherInner};
use crate::error::Result;
use crate::publish::PublishTransport;
use crate::sdp::Format;
use crate::subscribe::{SubscribeInner, SubscribeTransport};
use crate::types::{DataPublisherId, MediaKind, RouterId, TrackId, TransportId};
use crate::worker::WorkerInner;

/// Configuration of a [`Router`].
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    /// Its id; generated when `None`. With [`crate::Placement::RoomAffine`]
    /// the id decides the core.
    pub id: Option<RouterId>,
}

/// Configuration of a transport.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Subscribe transports: the most bytes one data subscriber may have
    /// waiting (queued in Weir plus not yet acknowledged by its client).
    /// Past it, a partially reliable channel drops messages (counted) and a
    /// reliable one closes. At least [`crate::MAX_MESSAGE_SIZE`].
    pub data_buffer_limit: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        // 8 MiB: 32 of the largest messages, room for a burst while a
        // subscriber's SCTP congestion window opens.
        Self {
            data_buffer_limit: 32 * crate::datachannel::MAX_MESSAGE_SIZE,
        }
    }
}

/// A published track as the router lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Its id.
    pub id: TrackId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Codec name as in SDP (`VP8`, `opus`, …).
    pub codec: String,
    /// The publish transport that owns it.
    pub transport: TransportId,
    /// Its mid in the publisher's SDP.
    pub mid: String,
}

/// Something that happened in a router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// A track's first media arrived; it can be subscribed to.
    TrackPublished(TrackInfo),
    /// A track ended (closed, or its transport closed or failed).
    TrackClosed(TrackId),
    /// A client's data channel opened; it can be subscribed to.
    DataPublished(DataPublisherInfo),
    /// A data channel ended (closed by its client or the application, or
    /// its association or transport ended).
    DataClosed(DataPublisherId),
}

/// What subscribe transports need to know of a track.
#[derive(Debug, Clone)]
pub(crate) struct RouterTrack {
    pub(crate) info: TrackInfo,
    pub(crate) key: TrackKey,
    pub(crate) owner_core: usize,
    pub(crate) format: Format,
    /// Simulcast encodings (1 without simulcast).
    pub(crate) encodings: u8,
}

pub(crate) struct RouterInner {
    pub(crate) id: RouterId,
    pub(crate) worker: Arc<WorkerInner>,
    tracks: Mutex<HashMap<TrackId, RouterTrack>>,
    subscribers: Mutex<Vec<Weak<SubscribeInner>>>,
    data: Mutex<HashMap<DataPublisherId, Arc<DataPublisherInner>>>,
    events: broadcast::Sender<RouterEvent>,
}

impl RouterInner {
    pub(crate) fn track(&self, id: &TrackId) -> Option<RouterTrack> {
        self.lock_tracks().get(id).cloned()
    }

    pub(crate) fn track_count(&self) -> usize {
        self.lock_tracks().len()
    }

    fn lock_tracks(&self) -> std::sync::MutexGuard<'_, HashMap<TrackId, RouterTrack>> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add_track(&self, track: RouterTrack) {
        let info = track.info.clone();
        self.lock_tracks().insert(info.id.clone(), track);
        let _ = self.events.send(RouterEvent::TrackPublished(info));
    }

    fn lock_data(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<DataPublisherId, Arc<DataPublisherInner>>> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn data_publisher(&self, id: &DataPublisherId) -> Option<Arc<DataPublisherInner>> {
        self.lock_data().get(id).cloned()
    }

    pub(crate) fn add_data(&self, publisher: Arc<DataPublisherInner>) {
        let info = publisher.info.clone();
        self.lock_data().insert(info.id.clone(), publisher);
        let _ = self.events.send(RouterEvent::DataPublished(info));
    }

    /// Forgets a data publisher (it closed its subscribers itself).
    pub(crate) fn remove_data(&self, id: &DataPublisherId) {
        if self.lock_data().remove(id).is_some() {
            let _ = self.events.send(RouterEvent::DataClosed(id.clone()));
        }
    }

    /// Removes a track and ends every subscription to it.
    pub(crate) fn remove_track(&self, id: &TrackId) {
        if self.lock_tracks().remove(id).is_none() {
            return;
        }
        let subs: Vec<_> = {
            let mut s = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
            s.retain(|w| w.strong_count() > 0);
            s.iter().filter_map(Weak::upgrade).collect()
        };
        for s in subs {
            s.track_closed(id);
        }
        let _ = self.events.send(RouterEvent::TrackClosed(id.clone()));
    }
}

impl Drop for RouterInner {
    fn drop(&mut self) {
        self.worker.forget_router(&self.id);
    }
}

/// A room: tracks published by its publish transports can be subscribed to
/// by its subscribe transports. Cheap to clone.
#[derive(Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl Router {
    pub(crate) fn new(worker: Arc<WorkerInner>, id: RouterId) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            inner: Arc::new(RouterInner {
                id,
                worker,
                tracks: Mutex::new(HashMap::new()),
                subscribers: Mutex::new(Vec::new()),
                data: Mutex::new(HashMap::new()),
                events,
            }),
        }
    }

    pub(crate) fn inner(&self) -> &Arc<RouterInner> {
        &self.inner
    }

    pub(crate) fn downgrade(&self) -> Weak<RouterInner> {
        Arc::downgrade(&self.inner)
    }

    /// Its id.
    pub fn id(&self) -> &RouterId {
        &self.inner.id
    }

    /// A transport on which a client publishes (the client offers).
    pub async fn create_publish_transport(
        &self,
        _config: TransportConfig,
    ) -> Result<PublishTransport> {
        PublishTransport::new(self.inner.clone())
    }

    /// A transport on which a client receives subscriptions (Weir offers).
    pub async fn create_subscribe_transport(
        &self,
        config: TransportConfig,
    ) -> Result<SubscribeTransport> {
        let t = SubscribeTransport::new(self.inner.clone(), &config)?;
        let mut subs = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        subs.retain(|w| w.strong_count() > 0);
        subs.push(t.downgrade());
        Ok(t)
    }

    /// The tracks currently published.
    pub fn tracks(&self) -> Vec<TrackInfo> {
        self.inner
            .lock_tracks()
            .values()
            .map(|t| t.info.clone())
            .collect()
    }

    /// The data channels currently published.
    pub fn data_publishers(&self) -> Vec<DataPublisherInfo> {
        self.inner
            .lock_data()
            .values()
            .map(|d| d.info.clone())
            .collect()
    }

    /// A receiver of the router's events from now on.
    pub fn events(&self) -> broadcast::Receiver<RouterEvent> {
        self.inner.events.subscribe()
    }

    /// Ends every track and data channel. Transports are closed by their
    /// owners.
    pub async fn close(&self) {
        let ids: Vec<TrackId> = self.inner.lock_tracks().keys().cloned().collect();
        for id in ids {
            self.inner.remove_track(&id);
        }
        let data: Vec<Arc<DataPublisherInner>> = self.inner.lock_data().values().cloned().collect();
        for d in data {
            d.close("the router closed".into());
        }
    }
}
