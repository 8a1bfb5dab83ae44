//! `PublishTransport` and `Publisher`: media from a client into a router.
use std::sync::{Arc, Mutex};

use weir_dataplane::counters::InboundStreamCounters;
use weir_dataplane::{CoreInput, InboundSpec, Kind, TrackKey};

use crate::datachannel::{DataPublisher, DataPublisherInner, LinkRole};
use crate::error::{Error, Result};
use crate::router::{RouterInner, RouterTrack, TrackInfo};
use crate::sdp::{self, AcceptedMedia, Format};
use crate::stats::StreamStats;
use crate::transport::TransportCore;
use crate::types::{
    ConnectionState, DataPublisherId, IceCandidate, MediaKind, TrackId, TransportId,
};

/// A sending m-section of the client's offer that Weir accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedTrack {
    /// Its mid.
    pub mid: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The track id of its `a=msid`, if any.
    pub msid_track: Option<String>,
}

struct Accepted {
    media: AcceptedMedia,
    key: TrackKey,
    published: Option<TrackId>,
    /// The core's counters of this stream.
    stats: Arc<InboundStreamCounters>,
}

pub(crate) struct PublishInner {
    core: Arc<TransportCore>,
    router: Arc<RouterInner>,
    accepted: Mutex<Vec<Accepted>>,
    data_publishers: Mutex<Vec<Arc<DataPublisherInner>>>,
}

impl PublishInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Accepted>> {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unpublish(&self, id: &TrackId) {
        let key = {
            let mut acc = self.lock();
            let Some(a) = acc.iter_mut().find(|a| a.published.as_ref() == Some(id)) else {
                return;
            };
            a.published = None;
            a.key
        };
        self.core.send(CoreInput::RemoveInbound {
            id: self.core.session,
            track: key,
        });
        self.router.remove_track(id);
    }

    fn unpublish_all(&self) {
        let ids: Vec<TrackId> = self
            .lock()
            .iter()
            .filter_map(|a| a.published.clone())
            .collect();
        for id in ids {
            self.unpublish(&id);
        }
        let data = std::mem::take(
            &mut *self
                .data_publishers
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for d in data {
            d.close("the transport closed".into());
        }
    }
}

/// A transport on which one client publishes audio and video. The client
/// sends offers; Weir answers.
///
/// ```no_run
/// # async fn f(router: weir_controlplane::Router, offer: String) -> Result<(), weir_controlplane::Error> {
/// let transport = router.create_publish_transport(Default::default()).await?;
/// let answer = transport.get_answer(&offer).await?;
/// // … send `answer` to the client, then:
/// for t in transport.offered_tracks() {
///     let publisher = transport.publish(&t.mid).await?; // resolves when media arrives
///     println!("published {}", publisher.id());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PublishTransport {
    inner: Arc<PublishInner>,
}

impl std::fmt::Debug for PublishTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishTransport")
            .field("id", &self.inner.core.id)
            .finish()
    }
}

impl PublishTransport {
    /// The data-plane core the transport was placed on.
    #[cfg(test)]
    pub(crate) fn core_index(&self) -> usize {
        self.inner.core.core
    }

    pub(crate) fn new(router: Arc<RouterInner>) -> Result<Self> {
        let core = router.worker.place(&router.id, LinkRole::Publish);
        let core = TransportCore::start(router.worker.clone(), core, "pub", LinkRole::Publish)?;
        Ok(Self {
            inner: Arc::new(PublishInner {
                core,
                router,
                accepted: Mutex::new(Vec::new()),
                data_publishers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Its id.
    pub fn id(&self) -> &TransportId {
        &self.inner.core.id
    }

    /// Answers the client's offer (the first one, or a renegotiation that
    /// adds m-sections). On error nothing changes and a corrected offer may
    /// follow.
    pub async fn get_answer(&self, offer: &str) -> Result<String> {
        let remote = sdp::parse(offer).map_err(|e| Error::InvalidSdp(e.to_string()))?;
        self.inner.core.check_remote(&remote)?;
        let (answer, accepted, data) =
            sdp::publish_answer_with_data(&remote, &self.inner.core.local_params())
                .map_err(|e| Error::InvalidSdp(e.to_string()))?;
        {
            let mut acc = self.inner.lock();
            // Check everything before changing anything: a refused offer
            // leaves the transport as it was.
            for media in &accepted {
                if let Some(existing) = acc.iter().find(|a| a.media.mid == media.mid) {
                    if existing.media.format != media.format || existing.media.rids != media.rids {
                        return Err(Error::InvalidSdp(format!(
                            "m-section '{}' changed its codec or simulcast layers; renegotiating them is not supported",
                            media.mid
                        )));
                    }
                }
            }
            // REMB where the publisher negotiated it instead of transport-cc.
            let remb = accepted.iter().any(|m| {
                m.video
                    && m.twcc_ext_id.is_none()
                    && m.format.supported_feedback(true).contains(&"goog-remb")
            });
            if remb {
                self.inner.core.send(CoreInput::SetRemb {
                    id: self.inner.core.session,
                    enabled: true,
                });
            }
            if let Some(ext_id) = accepted.iter().find_map(|m| m.twcc_ext_id) {
                // One transport-wide sequence space for the whole bundle.
                self.inner.core.send(CoreInput::SetTransportCc {
                    id: self.inner.core.session,
                    ext_id: Some(ext_id),
                });
            }
            for media in accepted {
                if acc.iter().any(|a| a.media.mid == media.mid) {
                    continue;
                }
                let key = self.inner.router.worker.next_id();
                self.inner.core.send(CoreInput::AddInbound {
                    id: self.inner.core.session,
                    spec: InboundSpec {
                        track: key,
                        mid: media.mid.clone(),
                        kind: if media.video {
                            Kind::Video
                        } else {
                            Kind::Audio
                        },
                        codec: media.codec,
                        payload_type: media.format.pt,
                        ssrcs: media.ssrcs.clone(),
                        mid_ext_id: media.mid_ext_id,
                    },
                });
                if media.dd_ext_id.is_some() {
                    self.inner.core.send(CoreInput::SetDependencyDescriptor {
                        id: self.inner.core.session,
                        track: key,
                        ext_id: media.dd_ext_id,
                    });
                }
                if !media.rids.is_empty() {
                    self.inner.core.send(CoreInput::SetSimulcast {
                        id: self.inner.core.session,
                        track: key,
                        rids: media.rids.clone(),
                        rid_ext_id: media.rid_ext_id,
                    });
                }
                if media.video && media.format.supported_feedback(true).contains(&"ccm fir") {
                    self.inner.core.send(CoreInput::SetInboundFir {
                        id: self.inner.core.session,
                        track: key,
                        fir: true,
                    });
                }
                if let Some(rtx) = &media.rtx {
                    self.inner.core.send(CoreInput::SetInboundRtx {
                        id: self.inner.core.session,
                        track: key,
                        payload_type: Some(rtx.pt),
                        ssrcs: media.rtx_ssrcs.clone(),
                        rrid_ext_id: media.rrid_ext_id,
                    });
                }
                let stats = Arc::new(InboundStreamCounters::default());
                self.inner.core.send(CoreInput::AttachInboundStats {
                    id: self.inner.core.session,
                    track: key,
                    counters: stats.clone(),
                });
                acc.push(Accepted {
                    media,
                    key,
                    published: None,
                    stats,
                });
            }
        }
        if let Some(data) = data {
            self.inner.core.data.sdp_accepted(data);
        }
        self.inner.core.apply_remote(&remote);
        Ok(answer)
    }

    /// Publishes the data channel the client opened with `label` (the
    /// oldest not yet published, if it opened several). Resolves when the
    /// channel is open (wrap it in a timeout); its ordering and reliability
    /// are the client's, from DCEP. Fails with `UnknownDataChannel` if no
    /// offer so far had a data channel m-section, and with `DataChannel`
    /// if the SCTP association ended.
    pub async fn data_publish(&self, label: &str) -> Result<DataPublisher> {
        let core = &self.inner.core;
        if !core.data.has_sdp() {
            return Err(Error::UnknownDataChannel(format!(
                "{label} (no offer on this transport had a data channel m-section)"
            )));
        }
        let link = core.data.link().await?;
        let incoming = link.take_incoming(label).await?;
        let id = DataPublisherId(format!(
            "{}-dc{}",
            core.id,
            incoming.stream.stream_identifier()
        ));
        let inner = DataPublisherInner::new(id, link, incoming, Arc::downgrade(&self.inner.router));
        {
            let mut list = self
                .inner
                .data_publishers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            list.retain(|d| d.closed_reason().is_none());
            list.push(inner.clone());
        }
        self.inner.router.add_data(inner.clone());
        inner.start();
        Ok(DataPublisher { inner })
    }

    /// The sending m-sections Weir accepted so far.
    pub fn offered_tracks(&self) -> Vec<OfferedTrack> {
        self.inner
            .lock()
            .iter()
            .map(|a| OfferedTrack {
                mid: a.media.mid.clone(),
                kind: if a.media.video {
                    MediaKind::Video
                } else {
                    MediaKind::Audio
                },
                msid_track: a.media.msid_track.clone(),
            })
            .collect()
    }

    /// Publishes the track of an accepted m-section, named by its mid or by
    /// its `a=msid` track id. Resolves when its first media packet arrives
    /// (wrap it in a timeout); fails with `Closed` if the transport closes
    /// first.
    pub async fn publish(&self, track: &str) -> Result<Publisher> {
        let (key, media, stats) = {
            let acc = self.inner.lock();
            let a = acc
                .iter()
                .find(|a| a.media.mid == track)
                .or_else(|| {
                    acc.iter()
                        .find(|a| a.media.msid_track.as_deref() == Some(track))
                })
                .ok_or_else(|| Error::UnknownTrack(track.to_owned()))?;
            if let Some(id) = &a.published {
                return Err(Error::AlreadyPublished(id.to_string()));
            }
            (a.key, a.media.clone(), a.stats.clone())
        };
        let core = &self.inner.core;
        loop {
            let changed = core.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if core.has_seen(key) {
                break;
            }
            if matches!(
                core.state(),
                ConnectionState::Closed | ConnectionState::Failed
            ) {
                return Err(Error::Closed);
            }
            changed.await;
        }
        let id = TrackId(format!("{}-{}", core.id, media.mid));
        let info = TrackInfo {
            id: id.clone(),
            kind: if media.video {
                MediaKind::Video
            } else {
                MediaKind::Audio
            },
            codec: media.format.name.clone(),
            transport: core.id.clone(),
            mid: media.mid.clone(),
        };
        {
            let mut acc = self.inner.lock();
            let Some(a) = acc.iter_mut().find(|a| a.key == key) else {
                return Err(Error::Closed);
            };
            if a.published.is_some() {
                return Err(Error::AlreadyPublished(id.to_string()));
            }
            a.published = Some(id.clone());
        }
        self.inner.router.add_track(RouterTrack {
            info: info.clone(),
            key,
            owner_core: core.core,
            format: media.format.clone(),
            encodings: media.rids.len().max(1) as u8,
        });
        self.inner.router.worker.streams.add_inbound(
            &core.id.to_string(),
            &id.to_string(),
            if media.video { "video" } else { "audio" },
            &stats,
        );
        Ok(Publisher {
            info,
            inner: self.inner.clone(),
            format: media.format,
            stats,
        })
    }

    /// Records a client candidate. Weir is ICE-lite and learns the client's
    /// addresses from its checks, so candidates are only validated.
    pub fn add_ice_candidate(&self, candidate: Option<&IceCandidate>) -> Result<()> {
        crate::candidate::validate(candidate)
    }

    /// Calls `cb` for server candidates found after an SDP was written.
    /// Weir writes its host candidate into every SDP, so this version never
    /// calls it; it exists so applications that trickle need no change when
    /// more candidate types arrive.
    pub fn on_ice_candidate(&self, cb: impl Fn(IceCandidate) + Send + Sync + 'static) {
        self.inner.core.on_candidate(Arc::new(cb));
    }

    /// Calls `cb` on every connection state change.
    pub fn on_connection_state(&self, cb: impl Fn(ConnectionState) + Send + Sync + 'static) {
        self.inner.core.on_state(Arc::new(cb));
    }

    /// The current connection state.
    pub fn connection_state(&self) -> ConnectionState {
        self.inner.core.state()
    }

    /// Counters of this transport.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        self.inner.core.counters.snapshot()
    }

    /// Ends every track and data channel published on it and closes it.
    pub async fn close(&self) {
        self.inner.unpublish_all();
        self.inner.core.close().await;
        self.inner.core.changed.notify_waiters();
    }
}

impl Drop for PublishInner {
    fn drop(&mut self) {
        self.unpublish_all();
    }
}

/// A published track.
#[derive(Clone)]
pub struct Publisher {
    info: TrackInfo,
    inner: Arc<PublishInner>,
    format: Format,
    stats: Arc<InboundStreamCounters>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("id", &self.info.id)
            .finish()
    }
}

impl Publisher {
    /// The stream's statistics as Weir receives it: packets, bytes, loss,
    /// jitter, RTT, NACKs sent, repairs, PLIs/FIRs sent (names as in
    /// [`InboundStreamCounters`]; gauges refresh about once a second).
    pub fn stats(&self) -> StreamStats {
        self.stats.snapshot()
    }

    /// Its id, unique in the worker.
    pub fn id(&self) -> &TrackId {
        &self.info.id
    }

    /// What the router lists about it.
    pub fn info(&self) -> TrackInfo {
        self.info.clone()
    }

    /// Its payload type on the publisher's transport.
    pub fn payload_type(&self) -> u8 {
        self.format.pt
    }

    /// Ends the track: subscribers see it end.
    pub async fn close(&self) {
        self.inner.unpublish(&self.info.id);
    }
}
