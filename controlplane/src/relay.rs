//! The Router's seam for a server-to-server relay (the `weir-relay`
//! crate): tap a local track's packets, and add a track whose packets a
//! relay feeds in, subscribable exactly like a local one; the same for
//! data channels (tap a channel's messages, add a channel fed by a relay).
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, watch};
use weir_dataplane::packet_pool::PacketRef;
use weir_dataplane::{CoreInput, RelayFeedback, RelayTapSender, TrackKey};

use crate::datachannel::{
    DataChannelParams, DataMessage, DataPublisherInfo, DataPublisherInner, LinkRole, TapSender,
};
use crate::error::{Error, Result};
use crate::router::{Router, RouterInner, RouterTrack, TrackInfo};
use crate::sdp::Format;
use crate::types::{DataPublisherId, MediaKind, TrackId, TransportId};
use crate::worker::WorkerInner;

/// Feedback a relayed track's subscribers may queue before the relay task
/// reads it; past it, feedback is dropped and counted.
const FEEDBACK_CAPACITY: usize = 256;

/// A track's codec as its publisher's SDP gave it; a relay carries it to
/// the servers that pull the track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecParams {
    /// Encoding name (`VP8`, `opus`, …).
    pub name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Audio channels, if given.
    pub channels: Option<u16>,
    /// `a=fmtp` parameters, verbatim.
    pub fmtp: Option<String>,
    /// `a=rtcp-fb` values.
    pub rtcp_fb: Vec<String>,
}

impl CodecParams {
    fn from_format(f: &Format) -> Self {
        Self {
            name: f.name.clone(),
            clock_rate: f.clock_rate,
            channels: f.channels,
            fmtp: f.fmtp.clone(),
            rtcp_fb: f.rtcp_fb.clone(),
        }
    }

    fn to_format(&self) -> Format {
        Format {
            // Subscribe transports choose their own payload types.
            pt: 0,
            name: self.name.clone(),
            clock_rate: self.clock_rate,
            channels: self.channels,
            fmtp: self.fmtp.clone(),
            rtcp_fb: self.rtcp_fb.clone(),
        }
    }
}

/// Every packet of a local track, for a relay to send to another server.
/// Dropping it removes the tap.
pub struct TrackTap {
    info: TrackInfo,
    codec: CodecParams,
    encodings: u8,
    rx: mpsc::Receiver<PacketRef>,
    dropped: Arc<AtomicU64>,
    key: TrackKey,
    owner_core: usize,
    id: u64,
    worker: Arc<WorkerInner>,
}

impl std::fmt::Debug for TrackTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackTap")
            .field("track", &self.info.id)
            .finish()
    }
}

impl TrackTap {
    /// The tapped track.
    pub fn info(&self) -> &TrackInfo {
        &self.info
    }

    /// Its codec.
    pub fn codec(&self) -> &CodecParams {
        &self.codec
    }

    /// Its simulcast encodings (1 without simulcast).
    pub fn encodings(&self) -> u8 {
        self.encodings
    }

    /// The next packet; `None` once the track stopped being published.
    pub async fn recv(&mut self) -> Option<PacketRef> {
        self.rx.recv().await
    }

    /// The next packet if one is queued, without waiting (to fill a
    /// datagram with what is already there).
    pub fn try_recv(&mut self) -> Option<PacketRef> {
        self.rx.try_recv().ok()
    }

    /// Packets the data plane dropped because this tap's reader fell
    /// behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the publisher for a keyframe (of one simulcast encoding, or of
    /// all), throttled like a local subscriber's request.
    pub fn request_keyframe(&self, encoding: Option<u8>) {
        let input = match encoding {
            Some(encoding) => CoreInput::EncodingKeyframeRequest {
                track: self.key,
                encoding,
            },
            None => CoreInput::KeyframeRequest { track: self.key },
        };
        self.worker.core(self.owner_core).send(input);
    }
}

impl Drop for TrackTap {
    fn drop(&mut self) {
        self.worker
            .core(self.owner_core)
            .send(CoreInput::RemoveRelayTap {
                track: self.key,
                tap: self.id,
            });
    }
}

/// What a relay knows of a track it pulls from another server.
#[derive(Debug, Clone)]
pub struct RemoteTrackSpec {
    /// Its id in this router (usually the origin's id).
    pub id: TrackId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Its codec.
    pub codec: CodecParams,
    /// Its simulcast encodings (1 without simulcast).
    pub encodings: u8,
    /// Listed as the track's transport (`relay:<server id>`, say).
    pub origin: TransportId,
}

/// A track of another server in this router. The relay feeds it packets
/// with [`RemoteTrack::push`] and reads what its subscribers ask of the
/// origin from [`RemoteTrack::feedback`]. Dropping it (or
/// [`RemoteTrack::close`]) ends the track: subscribers see it end.
pub struct RemoteTrack {
    info: TrackInfo,
    key: TrackKey,
    owner_core: usize,
    worker: Arc<WorkerInner>,
    router: Weak<RouterInner>,
    feedback: Option<mpsc::Receiver<RelayFeedback>>,
    feedback_dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("track", &self.info.id)
            .finish()
    }
}

impl RemoteTrack {
    /// What the router lists about it.
    pub fn info(&self) -> &TrackInfo {
        &self.info
    }

    /// A packet from the origin: forwarded to this router's subscribers
    /// and kept for their NACKs. `false` if the data plane stopped.
    pub fn push(&self, packet: PacketRef) -> bool {
        self.worker
            .core(self.owner_core)
            .send(CoreInput::RelayedMedia {
                track: self.key,
                packet,
            })
    }

    /// Several packets from the origin, in order: one message to the data
    /// plane for a burst. `false` if the data plane stopped.
    pub fn push_batch(&self, packets: Vec<PacketRef>) -> bool {
        self.worker
            .core(self.owner_core)
            .send(CoreInput::RelayedMediaBatch {
                track: self.key,
                packets,
            })
    }

    /// The keyframe requests and NACK misses of its subscribers, for the
    /// origin (once: the relay reads them apart from the packets it
    /// pushes). The channel ends when the track does.
    pub fn take_feedback(&mut self) -> Option<mpsc::Receiver<RelayFeedback>> {
        self.feedback.take()
    }

    /// Feedback dropped because it was not read fast enough.
    pub fn feedback_dropped(&self) -> u64 {
        self.feedback_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends the track.
    pub fn close(self) {}
}

impl Drop for RemoteTrack {
    fn drop(&mut self) {
        self.worker
            .core(self.owner_core)
            .send(CoreInput::RemoveRelayedTrack { track: self.key });
        if let Some(router) = self.router.upgrade() {
            router.remove_track(&self.info.id);
        }
    }
}

impl Router {
    /// Taps a track of this router for a relay: every packet its publisher
    /// sends goes into a channel of `capacity` packets too (a full channel
    /// drops, counted in [`TrackTap::dropped`]).
    pub fn tap_track(&self, id: &TrackId, capacity: usize) -> Result<TrackTap> {
        let inner = self.inner();
        let rt = inner
            .track(id)
            .ok_or_else(|| Error::UnknownTrack(id.to_string()))?;
        let worker = inner.worker.clone();
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let tap_id = worker.next_id();
        worker.core(rt.owner_core).send(CoreInput::AddRelayTap {
            track: rt.key,
            tap: RelayTapSender {
                id: tap_id,
                tx,
                dropped: dropped.clone(),
            },
        });
        Ok(TrackTap {
            codec: CodecParams::from_format(&rt.format),
            encodings: rt.encodings,
            info: rt.info,
            rx,
            dropped,
            key: rt.key,
            owner_core: rt.owner_core,
            id: tap_id,
            worker,
        })
    }

    /// Adds a track of another server, fed by a relay. It appears in
    /// [`Router::tracks`] and as a `TrackPublished` event at once.
    pub fn add_remote_track(&self, spec: RemoteTrackSpec) -> Result<RemoteTrack> {
        let inner = self.inner();
        if inner.track(&spec.id).is_some() {
            return Err(Error::AlreadyPublished(spec.id.to_string()));
        }
        let worker = inner.worker.clone();
        let key = worker.next_id();
        // A relayed track is published into the room like a local one.
        let owner_core = worker.place(&inner.id, LinkRole::Publish);
        let (tx, feedback) = mpsc::channel(FEEDBACK_CAPACITY);
        let feedback_dropped = Arc::new(AtomicU64::new(0));
        worker.core(owner_core).send(CoreInput::AddRelayedTrack {
            track: key,
            feedback: tx,
            dropped: feedback_dropped.clone(),
        });
        let info = TrackInfo {
            id: spec.id,
            kind: spec.kind,
            codec: spec.codec.name.clone(),
            transport: spec.origin,
            mid: String::new(),
        };
        inner.add_track(RouterTrack {
            info: info.clone(),
            key,
            owner_core,
            format: spec.codec.to_format(),
            encodings: spec.encodings.max(1),
        });
        Ok(RemoteTrack {
            info,
            key,
            owner_core,
            worker,
            router: Arc::downgrade(inner),
            feedback: Some(feedback),
            feedback_dropped,
        })
    }
}

/// Every message of a local data channel, for a relay to send to another
/// server. Dropping it removes the tap.
pub struct DataTap {
    info: DataPublisherInfo,
    rx: mpsc::Receiver<DataMessage>,
    dropped: Arc<AtomicU64>,
    overflow: Arc<Mutex<Option<String>>>,
    closed: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for DataTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataTap")
            .field("data", &self.info.id)
            .finish()
    }
}

impl DataTap {
    /// The tapped channel: id, transport and parameters (label, protocol,
    /// ordering, reliability).
    pub fn info(&self) -> &DataPublisherInfo {
        &self.info
    }

    /// The next message, in the order the client sent them; `None` once
    /// the channel closed or this tap was cut off ([`DataTap::end_reason`]).
    pub async fn recv(&mut self) -> Option<DataMessage> {
        self.rx.recv().await
    }

    /// Messages of a partially reliable channel dropped because this
    /// tap's reader fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why [`DataTap::recv`] ended: a reliable channel's tap is cut off
    /// when its reader falls behind (dropping would break the channel's
    /// promise), else the channel closed.
    pub fn end_reason(&self) -> String {
        if let Some(r) = self
            .overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return r;
        }
        self.closed
            .borrow()
            .clone()
            .unwrap_or_else(|| "closed".into())
    }
}

/// What a relay knows of a data channel it pulls from another server.
#[derive(Debug, Clone)]
pub struct RemoteDataSpec {
    /// Its id in this router (usually the origin's id).
    pub id: DataPublisherId,
    /// Label, protocol, ordering and reliability as the origin announced.
    pub params: DataChannelParams,
    /// Listed as the channel's transport (`relay:<server id>`, say).
    pub origin: TransportId,
}

/// A data channel of another server in this router: local transports
/// subscribe to it as to a local one, and the relay feeds it with
/// [`RemoteData::push`]. Dropping it ends the channel (its subscribers'
/// channels close).
pub struct RemoteData {
    inner: Arc<DataPublisherInner>,
}

impl std::fmt::Debug for RemoteData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteData")
            .field("data", &self.inner.info.id)
            .finish()
    }
}

impl RemoteData {
    /// What the router lists about it.
    pub fn info(&self) -> &DataPublisherInfo {
        &self.inner.info
    }

    /// A message from the origin, for every local subscriber. `false` once
    /// the channel closed here.
    pub fn push(&self, msg: DataMessage) -> bool {
        if self.inner.closed_reason().is_some() {
            return false;
        }
        self.inner.deliver(msg);
        true
    }

    /// Ends the channel with a reason its subscribers' close carries.
    pub fn close(self, reason: &str) {
        self.inner.close(reason.to_owned());
    }
}

impl Drop for RemoteData {
    fn drop(&mut self) {
        self.inner.close("the relayed channel ended".to_owned());
    }
}

impl Router {
    /// Taps a data channel of this router for a relay: every message its
    /// client sends goes into a channel of `capacity` messages too. On a
    /// full channel a partially reliable channel's message is dropped
    /// (counted in [`DataTap::dropped`]); a reliable channel's tap ends
    /// ([`DataTap::end_reason`]), since its messages must all arrive.
    pub fn tap_data(&self, id: &DataPublisherId, capacity: usize) -> Result<DataTap> {
        let publisher = self
            .inner()
            .data_publisher(id)
            .ok_or_else(|| Error::UnknownDataChannel(id.to_string()))?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let overflow = Arc::new(Mutex::new(None));
        let closed = publisher.closed_watch();
        if !publisher.attach_tap(TapSender {
            tx,
            dropped: dropped.clone(),
            overflow: overflow.clone(),
        }) {
            return Err(Error::UnknownDataChannel(id.to_string()));
        }
        Ok(DataTap {
            info: publisher.info.clone(),
            rx,
            dropped,
            overflow,
            closed,
        })
    }

    /// Adds a data channel of another server, fed by a relay. It appears
    /// in [`Router::data_publishers`] and as a `DataPublished` event at
    /// once.
    pub fn add_remote_data(&self, spec: RemoteDataSpec) -> Result<RemoteData> {
        let inner = self.inner();
        if inner.data_publisher(&spec.id).is_some() {
            return Err(Error::AlreadyPublished(spec.id.to_string()));
        }
        let publisher = DataPublisherInner::new_relayed(
            DataPublisherInfo {
                id: spec.id,
                transport: spec.origin,
                params: spec.params,
            },
            Arc::downgrade(inner),
        );
        inner.add_data(publisher.clone());
        Ok(RemoteData { inner: publisher })
    }
}
