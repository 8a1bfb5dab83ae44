//! `SubscribeTransport` and `Subscriber`: media from a router to a client.
//! Weir offers, the client answers; answers apply to offers in order.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use weir_dataplane::counters::OutboundStreamCounters;
use weir_dataplane::layers::Layout;
use weir_dataplane::{CoreInput, Kind, SubscriberLayers, SubscriberSpec, TrackKey};

use crate::datachannel::{DataSubscriber, LinkRole, SubscriberPipe};
use crate::error::{Error, Result};
use crate::router::{RouterInner, TransportConfig};
use crate::sdp::{self, AcceptedData, DataSlot, Format, OfferSlot, RtxOffer, DD_URI, TWCC_URI};
use crate::stats::StreamStats;
use crate::transport::TransportCore;
use crate::types::{
    ConnectionState, DataPublisherId, IceCandidate, MediaKind, TrackId, TransportId,
};

type OfferCallback = Arc<dyn Fn(String) + Send + Sync>;

struct Slot {
    offer: OfferSlot,
    track: TrackId,
    key: TrackKey,
    owner_core: usize,
    /// The Dependency Descriptor id the client's answer kept, once applied
    /// (re-sending it would drop the core's cached structure).
    dd_ext_id: Option<Option<u8>>,
    /// Whether the core answers NACKs with RTX, as last told (`None`: not
    /// told yet).
    rtx_on: Option<bool>,
    /// The core's counters of this subscription (dropped when it ends).
    stats: Option<Arc<OutboundStreamCounters>>,
}

struct State {
    slots: Vec<Slot>,
    /// mids of every offer not answered yet, oldest first.
    pending: VecDeque<Vec<String>>,
    next_mid: u32,
    /// Payload types handed out, per distinct format (BUNDLE requires one
    /// payload type to mean one codec configuration on the whole transport).
    payload_types: Vec<(Format, u8)>,
    on_negotiation: Vec<OfferCallback>,
    closed: bool,
    /// The data channel m-section, from the first data subscription on.
    data: Option<DataSlot>,
    data_subscribers: Vec<Arc<SubscriberPipe>>,
    /// Channels opened so far; the next stream id derives from it.
    data_streams: u16,
    /// transport-cc toward the client as last told to the core (`None`:
    /// not told yet).
    send_twcc: Option<Option<u8>>,
}

pub(crate) struct SubscribeInner {
    core: Arc<TransportCore>,
    router: Arc<RouterInner>,
    state: Mutex<State>,
    data_buffer_limit: usize,
}

/// Dynamic payload types, in the order they are handed out.
fn dynamic_payload_types() -> impl Iterator<Item = u8> {
    (96..=127).chain(35..=63)
}

impl SubscribeInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes an offer of the current slots and queues it for an answer.
    fn offer(&self, state: &mut State) -> String {
        let offers: Vec<OfferSlot> = state.slots.iter().map(|s| s.offer.clone()).collect();
        let mut mids: Vec<String> = offers.iter().map(|s| s.mid.clone()).collect();
        if let Some(d) = &state.data {
            mids.insert(d.position.min(mids.len()), d.mid.clone());
        }
        state.pending.push_back(mids);
        sdp::subscribe_offer_with_data(&offers, state.data.as_ref(), &self.core.local_params())
    }

    /// Ends the subscription to `track` and returns the new offer.
    fn end(&self, track: &TrackId) -> Option<(String, Vec<OfferCallback>)> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        let slot = state
            .slots
            .iter_mut()
            .find(|s| s.offer.active && s.track == *track)?;
        slot.offer.active = false;
        slot.stats = None;
        let (key, owner) = (slot.key, slot.owner_core);
        self.core.send(CoreInput::RemoveSubscriber {
            id: self.core.session,
            track: key,
        });
        self.router
            .worker
            .core(owner)
            .send(CoreInput::RemoveFanout {
                track: key,
                core: self.core.core,
            });
        let offer = self.offer(&mut state);
        Some((offer, state.on_negotiation.clone()))
    }

    /// The router's track ended: drop it and renegotiate.
    pub(crate) fn track_closed(&self, track: &TrackId) {
        if let Some((offer, callbacks)) = self.end(track) {
            for cb in callbacks {
                cb(offer.clone());
            }
        }
    }
}

/// A transport that sends a client the tracks it subscribes to.
#[derive(Clone)]
pub struct SubscribeTransport {
    inner: Arc<SubscribeInner>,
}

impl std::fmt::Debug for SubscribeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscribeTransport")
            .field("id", &self.inner.core.id)
            .finish()
    }
}

impl SubscribeTransport {
    /// The data-plane core the transport was placed on.
    #[cfg(test)]
    pub(crate) fn core_index(&self) -> usize {
        self.inner.core.core
    }

    pub(crate) fn new(router: Arc<RouterInner>, config: &TransportConfig) -> Result<Self> {
        let core = router.worker.place(&router.id, LinkRole::Subscribe);
        let core = TransportCore::start(router.worker.clone(), core, "sub", LinkRole::Subscribe)?;
        Ok(Self {
            inner: Arc::new(SubscribeInner {
                core,
                router,
                state: Mutex::new(State {
                    slots: Vec::new(),
                    pending: VecDeque::new(),
                    next_mid: 0,
                    payload_types: Vec::new(),
                    on_negotiation: Vec::new(),
                    closed: false,
                    send_twcc: None,
                    data: None,
                    data_subscribers: Vec::new(),
                    data_streams: 0,
                }),
                data_buffer_limit: config
                    .data_buffer_limit
                    .max(crate::datachannel::MAX_MESSAGE_SIZE),
            }),
        })
    }

    pub(crate) fn downgrade(&self) -> Weak<SubscribeInner> {
        Arc::downgrade(&self.inner)
    }

    /// Its id.
    pub fn id(&self) -> &TransportId {
        &self.inner.core.id
    }

    /// Subscribes to a track of the router. Returns the subscriber and an
    /// offer with every current subscription, for the client to answer.
    /// Video starts at the next keyframe, which Weir requests at once.
    pub async fn subscribe(&self, track: &TrackId) -> Result<(Subscriber, String)> {
        let rt = self
            .inner
            .router
            .track(track)
            .ok_or_else(|| Error::UnknownTrack(track.to_string()))?;
        let mut state = self.inner.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        if state
            .slots
            .iter()
            .any(|s| s.offer.active && s.track == *track)
        {
            return Err(Error::AlreadySubscribed(track.to_string()));
        }
        let pt = payload_type_for(&mut state, &rt.format)?;
        let video = rt.info.kind == MediaKind::Video;
        let mid = state.next_mid.to_string();
        state.next_mid += 1;
        let ssrc = loop {
            let s: u32 = rand::random();
            if s != 0 && !state.slots.iter().any(|x| x.offer.ssrc == s) {
                break s;
            }
        };
        // Video retransmissions go out as RTX when the client accepts it.
        let rtx = if video {
            let rtx_format = Format {
                pt: 0,
                name: "rtx".into(),
                clock_rate: rt.format.clock_rate,
                channels: None,
                fmtp: Some(format!("apt={pt}")),
                rtcp_fb: Vec::new(),
            };
            let rtx_pt = payload_type_for(&mut state, &rtx_format)?;
            let rtx_ssrc = loop {
                let s: u32 = rand::random();
                if s != 0 && s != ssrc && !state.slots.iter().any(|x| x.offer.ssrc == s) {
                    break s;
                }
            };
            Some(RtxOffer {
                pt: rtx_pt,
                ssrc: rtx_ssrc,
            })
        } else {
            None
        };
        let core = &self.inner.core;
        let offer_slot = OfferSlot {
            mid: mid.clone(),
            video,
            active: true,
            format: Format {
                pt,
                ..rt.format.clone()
            },
            ssrc,
            rtx,
            stream_id: rt.info.transport.to_string(),
            track_id: rt.info.id.to_string(),
            cname: format!("weir-{}", core.id),
        };
        core.send(CoreInput::AddSubscriber {
            id: core.session,
            spec: SubscriberSpec {
                track: rt.key,
                owner_core: rt.owner_core,
                kind: if video { Kind::Video } else { Kind::Audio },
                out_ssrc: ssrc,
                out_pt: pt,
                first_seq: rand::random(),
                layers: video
                    .then(|| rt.format.codec())
                    .flatten()
                    .map(|codec| SubscriberLayers {
                        layout: initial_layout(rt.encodings),
                        codec,
                    }),
            },
        });
        let stats = Arc::new(OutboundStreamCounters::default());
        core.send(CoreInput::AttachSubscriberStats {
            id: core.session,
            track: rt.key,
            counters: stats.clone(),
        });
        self.inner.router.worker.streams.add_outbound(
            &core.id.to_string(),
            &track.to_string(),
            if video { "video" } else { "audio" },
            &stats,
        );
        self.inner
            .router
            .worker
            .core(rt.owner_core)
            .send(CoreInput::AddFanout {
                track: rt.key,
                core: core.core,
            });
        state.slots.push(Slot {
            offer: offer_slot,
            track: track.clone(),
            key: rt.key,
            owner_core: rt.owner_core,
            dd_ext_id: None,
            rtx_on: None,
            stats: Some(stats.clone()),
        });
        let offer = self.inner.offer(&mut state);
        let subscriber = Subscriber {
            track: track.clone(),
            mid,
            kind: rt.info.kind,
            key: rt.key,
            owner_core: rt.owner_core,
            session: core.session,
            core: core.core,
            router: self.inner.router.clone(),
            stats,
        };
        Ok((subscriber, offer))
    }

    /// Subscribes to a data channel of the router: Weir opens a channel
    /// toward the client with the publisher's label, protocol, ordering and
    /// reliability, on SCTP stream [`DataSubscriber::stream_id`], and
    /// forwards every message of the publisher into it. Returns the
    /// subscriber and an offer (the first data subscription adds the
    /// transport's data channel m-section). The channel opens once the
    /// client answered and SCTP is up ([`DataSubscriber::opened`]).
    pub async fn data_subscribe(&self, id: &DataPublisherId) -> Result<(DataSubscriber, String)> {
        let publisher = self
            .inner
            .router
            .data_publisher(id)
            .ok_or_else(|| Error::UnknownDataChannel(id.to_string()))?;
        let mut state = self.inner.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        state.data_subscribers.retain(|p| !p.is_closed());
        if state
            .data_subscribers
            .iter()
            .any(|p| p.publisher_id() == id)
        {
            return Err(Error::AlreadySubscribed(id.to_string()));
        }
        // RFC 8832 §6: the DTLS client uses even stream ids, the server odd
        // ones. Browsers answer Weir's actpass offer as DTLS clients, so
        // until the handshake says otherwise Weir counts on being the server.
        let even = self.inner.core.data.is_dtls_client() == Some(true);
        let stream_id = u16::try_from(u32::from(state.data_streams) * 2 + u32::from(!even))
            .ok()
            .filter(|s| *s < u16::MAX)
            .ok_or_else(|| Error::DataChannel("no SCTP stream id left on this transport".into()))?;
        state.data_streams += 1;
        if state.data.is_none() {
            let mid = state.next_mid.to_string();
            state.next_mid += 1;
            state.data = Some(DataSlot {
                mid,
                position: state.slots.len(),
            });
        }
        let pipe = SubscriberPipe::new(
            self.inner.router.worker.runtime.clone(),
            &publisher,
            stream_id,
            self.inner.data_buffer_limit,
        );
        state.data_subscribers.push(pipe.clone());
        let offer = self.inner.offer(&mut state);
        drop(state);
        self.inner
            .router
            .worker
            .runtime
            .spawn(pipe.clone().run(self.inner.core.data.clone(), publisher));
        Ok((DataSubscriber { pipe }, offer))
    }

    /// Applies the client's answer to the oldest offer not yet answered.
    /// On error nothing changes and that offer still waits for an answer.
    pub async fn set_answer(&self, answer: &str) -> Result<()> {
        let expected = self
            .inner
            .lock()
            .pending
            .front()
            .cloned()
            .ok_or(Error::NoPendingOffer)?;
        let remote = sdp::parse(answer).map_err(|e| Error::InvalidSdp(e.to_string()))?;
        let mids: Vec<&str> = remote.media.iter().map(|m| m.mid.as_str()).collect();
        if mids != expected.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(Error::InvalidSdp(format!(
                "the answer's m-sections (mids {mids:?}) do not match the offer's ({expected:?})"
            )));
        }
        if remote.setup == sdp::Setup::ActPass {
            return Err(Error::InvalidSdp(
                "a=setup:actpass is not allowed in an answer (RFC 5763 §5)".into(),
            ));
        }
        self.inner.core.check_remote(&remote)?;
        {
            let mut state = self.inner.lock();
            if state.pending.front() != Some(&expected) {
                return Err(Error::NoPendingOffer);
            }
            state.pending.pop_front();
        }
        let data_mid = self.inner.lock().data.as_ref().map(|d| d.mid.clone());
        if let Some(m) = data_mid.and_then(|mid| remote.media.iter().find(|m| m.mid == mid)) {
            match AcceptedData::from_remote(m) {
                Some(data) => self.inner.core.data.sdp_accepted(data),
                None => self
                    .inner
                    .core
                    .data
                    .close("the client rejected the data channel m-section"),
            }
        }
        // transport-cc toward the client, if its answer kept the extension.
        let twcc = remote
            .media
            .iter()
            .find(|m| m.port != 0 && !m.is_datachannel())
            .and_then(|m| m.extmap_id(TWCC_URI));
        {
            // The Dependency Descriptor per subscription (offered for AV1).
            let mut state = self.inner.lock();
            for slot in state.slots.iter_mut().filter(|s| s.offer.active) {
                let Some(m) = remote.media.iter().find(|m| m.mid == slot.offer.mid) else {
                    continue;
                };
                let dd = (m.port != 0).then(|| m.extmap_id(DD_URI)).flatten();
                if slot.dd_ext_id != Some(dd) {
                    slot.dd_ext_id = Some(dd);
                    self.inner
                        .core
                        .send(CoreInput::SetSendDependencyDescriptor {
                            id: self.inner.core.session,
                            track: slot.key,
                            ext_id: dd,
                        });
                }
            }
        }
        {
            let mut state = self.inner.lock();
            if state.send_twcc != Some(twcc) {
                state.send_twcc = Some(twcc);
                self.inner.core.send(CoreInput::SetSendTransportCc {
                    id: self.inner.core.session,
                    ext_id: twcc,
                });
            }
        }
        self.apply_rtx(&remote);
        self.inner.core.apply_remote(&remote);
        Ok(())
    }

    /// Tells the core, per video subscription, whether the answer kept its
    /// RTX format (same payload type, `apt=` the media one).
    fn apply_rtx(&self, remote: &sdp::RemoteDescription) {
        let mut state = self.inner.lock();
        for slot in state.slots.iter_mut().filter(|s| s.offer.active) {
            let Some(offer) = slot.offer.rtx else {
                continue;
            };
            let apt = slot.offer.format.pt.to_string();
            let accepted = remote
                .media
                .iter()
                .find(|m| m.mid == slot.offer.mid && m.port != 0)
                .is_some_and(|m| {
                    m.formats.iter().any(|f| {
                        f.pt == offer.pt
                            && f.name.eq_ignore_ascii_case("rtx")
                            && f.fmtp_param("apt") == Some(apt.as_str())
                    })
                });
            if slot.rtx_on == Some(accepted) {
                continue;
            }
            slot.rtx_on = Some(accepted);
            self.inner.core.send(CoreInput::SetSubscriberRtx {
                id: self.inner.core.session,
                track: slot.key,
                ssrc: accepted.then_some(offer.ssrc),
                payload_type: offer.pt,
            });
        }
    }

    /// Calls `cb(track, spatial, temporal)` when the layers forwarded to the
    /// client for a video track change (a switch completed, at a keyframe).
    pub fn on_layers_changed(&self, cb: impl Fn(TrackId, u8, u8) + Send + Sync + 'static) {
        let weak = Arc::downgrade(&self.inner);
        self.inner
            .core
            .on_layers(Arc::new(move |key, spatial, temporal| {
                let Some(inner) = weak.upgrade() else { return };
                let track = inner
                    .lock()
                    .slots
                    .iter()
                    .find(|s| s.key == key)
                    .map(|s| s.track.clone());
                if let Some(track) = track {
                    cb(track, spatial, temporal);
                }
            }));
    }

    /// Calls `cb` with a new offer when the transport changes on its own:
    /// a subscribed track ended, or [`SubscribeTransport::unsubscribe`].
    pub fn on_negotiation_needed(&self, cb: impl Fn(String) + Send + Sync + 'static) {
        self.inner.lock().on_negotiation.push(Arc::new(cb));
    }

    /// Ends a subscription; the new offer goes to `on_negotiation_needed`.
    pub async fn unsubscribe(&self, track: &TrackId) -> Result<()> {
        match self.inner.end(track) {
            Some((offer, callbacks)) => {
                for cb in callbacks {
                    cb(offer.clone());
                }
                Ok(())
            }
            None => Err(Error::UnknownTrack(track.to_string())),
        }
    }

    /// Records a client candidate (validated only; see
    /// [`crate::PublishTransport::add_ice_candidate`]).
    pub fn add_ice_candidate(&self, candidate: Option<&IceCandidate>) -> Result<()> {
        crate::candidate::validate(candidate)
    }

    /// See [`crate::PublishTransport::on_ice_candidate`].
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

    /// `(mid, track id, kind)` of every live subscription.
    pub fn subscriptions(&self) -> Vec<(String, TrackId, MediaKind)> {
        self.inner
            .lock()
            .slots
            .iter()
            .filter(|s| s.offer.active)
            .map(|s| {
                let kind = if s.offer.video {
                    MediaKind::Video
                } else {
                    MediaKind::Audio
                };
                (s.offer.mid.clone(), s.track.clone(), kind)
            })
            .collect()
    }

    /// Counters of this transport.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        self.inner.core.counters.snapshot()
    }

    /// Ends every subscription and closes the transport.
    pub async fn close(&self) {
        {
            let mut state = self.inner.lock();
            state.closed = true;
            for s in state.slots.iter_mut().filter(|s| s.offer.active) {
                s.offer.active = false;
                self.inner
                    .router
                    .worker
                    .core(s.owner_core)
                    .send(CoreInput::RemoveFanout {
                        track: s.key,
                        core: self.inner.core.core,
                    });
            }
            for p in state.data_subscribers.drain(..) {
                p.close("the transport closed".into());
            }
        }
        self.inner.core.close().await;
    }
}

impl Drop for SubscribeInner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for s in state.slots.iter().filter(|s| s.offer.active) {
            self.router
                .worker
                .core(s.owner_core)
                .send(CoreInput::RemoveFanout {
                    track: s.key,
                    core: self.core.core,
                });
        }
        for p in state.data_subscribers.drain(..) {
            p.close("the transport closed".into());
        }
    }
}

/// The payload type of `format` on this transport: the one it already has,
/// or the next free dynamic one.
fn payload_type_for(state: &mut State, format: &Format) -> Result<u8> {
    if let Some((_, pt)) = state
        .payload_types
        .iter()
        .find(|(f, _)| same_config(f, format))
    {
        return Ok(*pt);
    }
    let used: Vec<u8> = state.payload_types.iter().map(|(_, pt)| *pt).collect();
    let pt = dynamic_payload_types()
        .find(|p| !used.contains(p))
        .ok_or_else(|| Error::InvalidSdp("no payload type left on this transport".into()))?;
    state.payload_types.push((format.clone(), pt));
    Ok(pt)
}

/// Whether two formats are the same codec configuration.
fn same_config(a: &Format, b: &Format) -> bool {
    a.name.eq_ignore_ascii_case(&b.name)
        && a.clock_rate == b.clock_rate
        && a.channels == b.channels
        && a.fmtp == b.fmtp
}

/// One subscription of a subscribe transport.
#[derive(Clone)]
pub struct Subscriber {
    track: TrackId,
    mid: String,
    kind: MediaKind,
    key: TrackKey,
    owner_core: usize,
    /// The subscribe transport's session and core.
    session: weir_dataplane::SessionId,
    core: usize,
    router: Arc<RouterInner>,
    stats: Arc<OutboundStreamCounters>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("track", &self.track)
            .field("mid", &self.mid)
            .finish()
    }
}

impl Subscriber {
    /// The subscription's statistics as Weir sends it: packets, bytes,
    /// the subscriber's reported loss, jitter and RTT, NACKs received,
    /// retransmissions and misses, keyframe requests, the bandwidth
    /// estimate and this track's share, current and target layers (names
    /// as in [`OutboundStreamCounters`]; gauges refresh with reports).
    pub fn stats(&self) -> StreamStats {
        self.stats.snapshot()
    }

    /// The track subscribed to.
    pub fn track_id(&self) -> &TrackId {
        &self.track
    }

    /// Its mid in the subscribe transport's SDP.
    pub fn mid(&self) -> &str {
        &self.mid
    }

    /// Audio or video.
    pub fn kind(&self) -> MediaKind {
        self.kind
    }

    /// The layers the application prefers for this (video) subscription:
    /// spatial is the simulcast encoding index (0 = lowest) or SVC spatial
    /// id, temporal the temporal layer. The bandwidth estimate may hold the
    /// subscriber lower; switches up happen at the next keyframe, which Weir
    /// requests. No effect on audio.
    pub fn set_preferred_layers(&self, spatial: u8, temporal: u8) {
        self.router
            .worker
            .core(self.core)
            .send(CoreInput::SetPreferredLayers {
                id: self.session,
                track: self.key,
                spatial,
                temporal,
            });
    }

    /// Asks the publisher for a keyframe (throttled per track).
    pub fn request_keyframe(&self) {
        self.router
            .worker
            .core(self.owner_core)
            .send(CoreInput::KeyframeRequest { track: self.key });
    }
}

/// The layout a video subscription starts with. Simulcast encodings are
/// known from the publisher's SDP. An SVC structure is not (a sender's
/// `scalabilityMode` is not signalled): the data plane reads it from the
/// stream (VP9 scalability structure, Dependency Descriptor) and adopts it
/// at the first keyframe; until then the single stream is forwarded whole.
fn initial_layout(encodings: u8) -> Layout {
    if encodings > 1 {
        Layout::Simulcast {
            encodings,
            temporal: 3,
        }
    } else {
        Layout::Single { temporal: 3 }
    }
}
