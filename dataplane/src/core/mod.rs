//! The sans-IO state of one data-plane core: its sessions (transports), the
//! tracks published on it and the subscriptions served from it.
//!
//! # Calling order
//! The IO driver of a core owns one `Core` and, in a loop:
//! 1. feeds every received datagram to [`Core::handle_datagram`] and every
//!    command or cross-core message to [`Core::handle_input`];
//! 2. calls [`Core::handle_wake`] (reads the fanout rings of remote tracks)
//!    and [`Core::handle_timeout`] once [`Core::poll_timeout`] has passed;
//! 3. drains [`Core::poll_transmit`] (datagrams to send),
//!    [`Core::poll_cross_core`] (messages for other cores),
//!    [`Core::poll_wake`] (cores to wake: new packets in a ring published
//!    here) and [`Core::poll_event`] (events for the control plane);
//! 4. hands each sent datagram back with [`Core::recycle_transmit`] once
//!    the kernel is done with its bytes.
//!
//! Steady-state forwarding allocates nothing (`tests/core_no_alloc.rs`):
//! a published packet is decrypted in place into a slot of the core's
//! [`PacketPool`] and shared by reference count with every subscriber and
//! retransmission cache; each subscriber's copy is rewritten into a scratch
//! buffer and SRTP-encrypted straight into a transmit buffer from a free
//! list that step 4 refills.
//!
//! Nothing here reads a clock or touches a socket, so tests drive it with
//! simulated time and in-memory peers. A packet is routed to its session in
//! O(1): STUN by the server's ICE ufrag, everything else by source address.
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_codecs::{Extensions, RtpHeader};

mod feedback;
mod pending;
mod probe;
mod relay;
mod rtx;
mod session;
mod svc;
mod transmit;

use feedback::{send_nacks, send_remb, send_reports, send_twcc};
use pending::{Pending, FANOUT_CHUNK, MAX_OWED};
pub use relay::{
    DownstreamSummary, RelayFeedback, RelayTapSender, RELAY_REPORT_INTERVAL, WANTS_INTERVAL,
};
use session::{
    bind_ssrc, clock_rate, push_ice_event, Inbound, InboundRtx, PacketRing, Published, Session,
    Subscription, VideoLayers,
};
use transmit::TxQueue;

use crate::bwe::{
    Allocator, BandwidthEstimator, LayerRate, RemoteEstimator, TrackDemand, TrackKind,
};
use crate::counters::{
    CoreCounters, InboundStreamCounters, OutboundStreamCounters, TransportCounters,
};
use crate::demux::{classify, PacketClass};
use crate::fanout::{Consumer, FanoutRing, SharedRing};
use crate::forwarder::{Forwarder, NackRefusal, Skip, TwccStamp};
use crate::ice::{IceConfig, IceCredentials, IceLite, StunMessage};
use crate::layers::{Decision, LayerPacket, LayerRates, LayerSelector, Layout, PictureIdRewriter};
use crate::packet::{Kind, LayerFacts};
use crate::packet_pool::{PacketPool, PacketRef};
use crate::rtcp::nack;
use crate::rtcp::report::NtpClock;
use crate::rtcp::twcc::TwccRecorder;
use crate::rtcp::{self, RtcpItem};
use crate::srtp::{SrtpKeys, SrtpSession};

/// Identifies a transport (session) across the whole worker.
pub type SessionId = u64;
/// Identifies a published track across the whole worker.
pub type TrackKey = u64;

/// How often housekeeping runs (NACK retries, reports, consent, keyframe
/// retries). Short enough for NACK retries at LAN round-trip times.
const TICK: Duration = Duration::from_millis(20);
/// Receiver and sender reports go out this often (RFC 3550 allows 5 s;
/// browsers use about 1 s for video).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Packets of a video track kept per core for answering NACKs.
const RETRANSMIT_SLOTS: usize = 512;
/// CNAME of Weir's RTCP (RFC 7022 allows a per-session random one; the
/// receivers only use it to group streams, and ours are one group each).
const CNAME: &str = "weir";
/// At most one PLI per track in this interval, whatever the number of
/// subscribers asking.
const PLI_THROTTLE: Duration = Duration::from_millis(300);
/// Bandwidth estimation toward a subscriber starts here and stays within
/// these bounds (bit/s).
const BWE_INITIAL_BPS: u64 = 1_000_000;
const BWE_MIN_BPS: u64 = 50_000;
const BWE_MAX_BPS: u64 = 50_000_000;
/// The receive-side estimate for REMB starts here: about what a browser
/// starts sending at, so the first REMB does not hold it back.
const REMB_INITIAL_BPS: u64 = 300_000;
/// Audio's share when its rate is not measured yet (Opus at its default).
const AUDIO_BPS_GUESS: u64 = 64_000;
/// Simulcast encodings per track that keyframe requests track separately.
const MAX_ENCODINGS: usize = 4;
/// Largest datagram we build.
const MTU: usize = 1500;
/// Published packets a core holds at once (in flight to subscribers and in
/// the retransmission caches of every core): 512 per video stream plus
/// bursts. Slot buffers are reserved on first use, so an idle pool costs
/// only its slot headers.
const PACKET_POOL: usize = 16_384;

/// Codec of an inbound track, enough to find keyframes.
pub use weir_codecs::Codec;

/// One m-section of a publish transport: where its packets go.
#[derive(Debug, Clone)]
pub struct InboundSpec {
    /// The track's key.
    pub track: TrackKey,
    /// Its mid in the publisher's SDP.
    pub mid: String,
    /// Audio or video.
    pub kind: Kind,
    /// The negotiated codec.
    pub codec: Codec,
    /// The negotiated payload type.
    pub payload_type: u8,
    /// SSRCs announced in the SDP (`a=ssrc`), possibly none.
    pub ssrcs: Vec<u32>,
    /// Extension id of `urn:ietf:params:rtp-hdrext:sdes:mid`, if negotiated.
    pub mid_ext_id: Option<u8>,
}

/// One subscription of a subscribe transport.
#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    /// The track subscribed to.
    pub track: TrackKey,
    /// The core that owns the track's publisher (for keyframe requests).
    pub owner_core: usize,
    /// Audio or video.
    pub kind: Kind,
    /// SSRC announced to the subscriber.
    pub out_ssrc: u32,
    /// Payload type negotiated with the subscriber.
    pub out_pt: u8,
    /// First sequence number to send (random per RFC 3550).
    pub first_seq: u16,
    /// Video: how the publisher layers the track, as far as the control
    /// plane knows (simulcast from the SDP; a single stream otherwise, whose
    /// SVC structure the data plane then reads from the stream), and its
    /// codec. `None` (or audio): one stream, every layer forwarded until
    /// the stream announces its structure.
    pub layers: Option<SubscriberLayers>,
}

/// The layer configuration a video subscription starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberLayers {
    /// How the publisher layers the track.
    pub layout: Layout,
    /// Its codec, for picture-id rewriting.
    pub codec: Codec,
}

/// Inputs to a core: commands from the control plane and messages from
/// other cores.
#[derive(Debug)]
pub enum CoreInput {
    /// A new transport on this core.
    AddSession {
        /// Its id.
        id: SessionId,
        /// Our ICE credentials for it.
        credentials: IceCredentials,
        /// Counters shared with the control plane.
        counters: Arc<TransportCounters>,
    },
    /// The peer's ICE credentials, once its SDP is known.
    SetRemoteCredentials {
        /// The session.
        id: SessionId,
        /// Remote ufrag.
        ufrag: String,
        /// Remote password.
        pwd: String,
    },
    /// SRTP keys from the finished DTLS handshake.
    InstallSrtp {
        /// The session.
        id: SessionId,
        /// The keys.
        keys: Box<SrtpKeys>,
    },
    /// A DTLS record from the control plane, to the peer.
    SendDtls {
        /// The session.
        id: SessionId,
        /// The datagram.
        data: Vec<u8>,
    },
    /// Remove a transport and everything it published or subscribed.
    RemoveSession {
        /// The session.
        id: SessionId,
    },
    /// The transport-wide sequence number extension id negotiated with a
    /// publisher: Weir then sends it transport-cc feedback.
    SetTransportCc {
        /// The publishing session.
        id: SessionId,
        /// The extension id (`None` turns feedback off).
        ext_id: Option<u8>,
    },
    /// The transport-wide sequence number extension id negotiated with a
    /// subscriber: Weir stamps it on every packet it sends there, and reads
    /// the subscriber's transport-cc feedback.
    SetSendTransportCc {
        /// The subscribing session.
        id: SessionId,
        /// The extension id (`None` turns stamping off).
        ext_id: Option<u8>,
    },
    /// The Dependency Descriptor extension id negotiated for a published
    /// track: its packets' layer ids and frame boundaries are then read from
    /// the descriptor (with its template structure cached per stream).
    SetDependencyDescriptor {
        /// The publishing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// The extension id (`None` stops reading it).
        ext_id: Option<u8>,
    },
    /// The Dependency Descriptor extension id a subscriber negotiated for a
    /// subscription: forwarded packets then carry the publisher's
    /// descriptor (when it sends one), with the active decode targets of
    /// the layers this subscriber receives.
    SetSendDependencyDescriptor {
        /// The subscribing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// The extension id (`None` stops sending it).
        ext_id: Option<u8>,
    },
    /// Simulcast: the rids of a published track, lowest resolution first,
    /// and the rtp-stream-id extension id that names them in packets.
    SetSimulcast {
        /// The publishing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// The rids.
        rids: Vec<String>,
        /// The rtp-stream-id extension id.
        rid_ext_id: Option<u8>,
    },
    /// A publish m-section.
    AddInbound {
        /// The publishing session.
        id: SessionId,
        /// What to expect.
        spec: InboundSpec,
    },
    /// Stop accepting a published track.
    RemoveInbound {
        /// The publishing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
    },
    /// Send a track's packets to `core` too (reference counted).
    AddFanout {
        /// The track (published on this core).
        track: TrackKey,
        /// The subscribing core.
        core: usize,
    },
    /// Undo one `AddFanout`.
    RemoveFanout {
        /// The track.
        track: TrackKey,
        /// The subscribing core.
        core: usize,
    },
    /// A subscription on a session of this core.
    AddSubscriber {
        /// The subscribing session.
        id: SessionId,
        /// What to forward and how.
        spec: SubscriberSpec,
    },
    /// Replaces the layer structure and codec a video subscription got in
    /// [`SubscriberSpec::layers`] (its selector starts over, keeping the
    /// preferred layers). Not needed for SVC: the core reads that structure
    /// from the stream.
    ConfigureLayers {
        /// The subscribing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// How the publisher layers it.
        layout: Layout,
        /// Its codec.
        codec: Codec,
    },
    /// The layers the application prefers for a subscription.
    SetPreferredLayers {
        /// The subscribing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// Spatial layer (simulcast encoding index or SVC spatial id).
        spatial: u8,
        /// Temporal layer.
        temporal: u8,
    },
    /// RTX (RFC 4588) negotiated with a subscriber for a track: NACKs are
    /// answered on this SSRC and payload type, with the original sequence
    /// number in front of the payload, instead of plain retransmission.
    SetSubscriberRtx {
        /// The subscribing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// The RTX stream's SSRC (`a=ssrc-group:FID`); `None` turns RTX off.
        ssrc: Option<u32>,
        /// The RTX payload type (`apt=` the subscription's payload type).
        payload_type: u8,
    },
    /// RTX (RFC 4588) negotiated with a publisher for a track: packets with
    /// this payload type are repairs, unwrapped before anything else sees
    /// them. Their SSRC names the media stream through `ssrcs` (the SDP's
    /// `FID` groups) or, for simulcast, the repaired-rtp-stream-id
    /// extension.
    SetInboundRtx {
        /// The publishing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// The RTX payload type (`None` turns RTX off).
        payload_type: Option<u8>,
        /// (RTX SSRC, media SSRC) pairs announced in the SDP.
        ssrcs: Vec<(u32, u32)>,
        /// The repaired-rtp-stream-id extension id, if negotiated.
        rrid_ext_id: Option<u8>,
    },
    /// Whether a publisher negotiated `ccm fir` for a track: its keyframe
    /// requests are then FIRs (RFC 5104) instead of PLIs.
    SetInboundFir {
        /// The publishing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// FIR on or off.
        fir: bool,
    },
    /// Per-stream counters of a published track, for the SDK and metrics.
    AttachInboundStats {
        /// The publishing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// Updated by the core from now on.
        counters: Arc<InboundStreamCounters>,
    },
    /// Per-stream counters of a subscription, for the SDK and metrics.
    AttachSubscriberStats {
        /// The subscribing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
        /// Updated by the core from now on.
        counters: Arc<OutboundStreamCounters>,
    },
    /// REMB toward a publisher: on when it negotiated `goog-remb` and not
    /// transport-cc, so its sender learns a receive-side estimate.
    SetRemb {
        /// The publishing session.
        id: SessionId,
        /// REMB on or off.
        enabled: bool,
    },
    /// End a subscription.
    RemoveSubscriber {
        /// The subscribing session.
        id: SessionId,
        /// The track.
        track: TrackKey,
    },
    /// A stream of `track` (published on the sending core) is published
    /// into `ring`: read it on wake-up ([`Core::handle_wake`]). Sent by the
    /// publisher's core to each subscribing core, once per ring.
    AttachRing {
        /// The track.
        track: TrackKey,
        /// The stream's ring.
        ring: SharedRing,
        /// The first sequence number to read (the ring's head when the
        /// subscription reached the publisher's core).
        from: u64,
    },
    /// This core has no subscriber of `track` left: drop its consumers.
    DetachRing {
        /// The track.
        track: TrackKey,
    },
    /// A published packet from another core (the packets the fanout ring
    /// does not take: late ones and those too large for a slot).
    Media {
        /// Its track.
        track: TrackKey,
        /// The packet, shared with the publisher's core.
        packet: PacketRef,
    },
    /// A subscriber somewhere wants a keyframe of a track published here
    /// (of every simulcast encoding).
    KeyframeRequest {
        /// The track.
        track: TrackKey,
    },
    /// A keyframe of one simulcast encoding of a track published here.
    EncodingKeyframeRequest {
        /// The track.
        track: TrackKey,
        /// The encoding index.
        encoding: u8,
    },
    /// Relay: hand every packet of a track published here to a relay task.
    AddRelayTap {
        /// The track.
        track: TrackKey,
        /// Where its packets go.
        tap: RelayTapSender,
    },
    /// Relay: undo one `AddRelayTap`.
    RemoveRelayTap {
        /// The track.
        track: TrackKey,
        /// The tap's id.
        tap: u64,
    },
    /// Relay: a track published on another server, fed by a relay task,
    /// owned by this core (subscribers send `AddFanout` here).
    AddRelayedTrack {
        /// Its key in this worker.
        track: TrackKey,
        /// Where keyframe requests and NACK misses go.
        feedback: tokio::sync::mpsc::Sender<RelayFeedback>,
        /// Counts feedback dropped because that channel was full.
        dropped: Arc<std::sync::atomic::AtomicU64>,
    },
    /// Relay: what the video subscribers of `core` want of `track` now
    /// (`None`: nothing; none left, or all paused), for its owner core.
    RelayWants {
        /// The track.
        track: TrackKey,
        /// The subscribers' core.
        core: usize,
        /// Highest spatial and temporal layers wanted.
        wanted: Option<crate::layers::Layers>,
    },
    /// Relay: what the subscribers of `core` report of `track`, summed
    /// up, for its owner core (every [`RELAY_REPORT_INTERVAL`]).
    RelayReport {
        /// The track.
        track: TrackKey,
        /// The subscribers' core.
        core: usize,
        /// Their worst loss, jitter and RTT, and the most bandwidth any
        /// of them is given for the track.
        summary: relay::DownstreamSummary,
    },
    /// Relay: the relayed track ended.
    RemoveRelayedTrack {
        /// Its key.
        track: TrackKey,
    },
    /// Relay: a packet of a relayed track owned by this core.
    RelayedMedia {
        /// Its key.
        track: TrackKey,
        /// The packet.
        packet: PacketRef,
    },
    /// Relay: several packets of a relayed track owned by this core, in
    /// order (one mailbox message and one wake-up for a burst).
    RelayedMediaBatch {
        /// Its key.
        track: TrackKey,
        /// The packets.
        packets: Vec<PacketRef>,
    },
    /// Relay: a subscriber core's ring missed a NACKed packet of a track
    /// owned by this core.
    RelayNackMiss {
        /// The track.
        track: TrackKey,
        /// The publisher's SSRC.
        ssrc: u32,
        /// The sequence number.
        seq: u16,
    },
    /// Stop the core's driver.
    Shutdown,
}

/// What a core tells the control plane about one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The first valid ICE check arrived from this address.
    IceConnected(SocketAddr),
    /// The nominated address changed.
    IceSelected(SocketAddr),
    /// A DTLS record from the peer.
    Dtls(Vec<u8>),
    /// No valid ICE check for the consent timeout: the session is dead.
    ConsentExpired,
    /// The first SRTP or SRTCP packet from the peer passed authentication:
    /// the peer holds the keys, so its side of the DTLS handshake is done
    /// and it will not resend a handshake flight.
    PeerKeyed,
    /// The first media packet of a published track arrived.
    FirstMedia {
        /// The track.
        track: TrackKey,
    },
    /// The layers forwarded to a subscriber changed.
    LayersChanged {
        /// The track.
        track: TrackKey,
        /// Current spatial layer.
        spatial: u8,
        /// Current temporal layer.
        temporal: u8,
    },
}

/// A datagram to send. Its buffer comes from the core's free list; give it
/// back with [`Core::recycle_transmit`] after the send so the next datagram
/// reuses it (dropping it is correct, but costs an allocation later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dest: SocketAddr,
    /// Bytes.
    pub data: Vec<u8>,
}

/// The state of one core. See the module docs for the calling order.
pub struct Core {
    index: usize,
    consent_timeout: Duration,
    sessions: Vec<Option<Session>>,
    free: Vec<usize>,
    by_id: HashMap<SessionId, usize>,
    by_ufrag: HashMap<String, usize>,
    by_addr: HashMap<SocketAddr, usize>,
    published: HashMap<TrackKey, Published>,
    subscribed: HashMap<TrackKey, Vec<usize>>,
    transmits: TxQueue,
    cross: VecDeque<(usize, CoreInput)>,
    events: VecDeque<(SessionId, SessionEvent)>,
    counters: Arc<CoreCounters>,
    next_tick: Instant,
    /// When the transmit buffers a burst left behind are next trimmed.
    next_trim: Instant,
    ntp: NtpClock,
    /// Retransmission caches of the video streams subscribed on this core,
    /// by (track, publisher SSRC).
    rings: HashMap<(TrackKey, u32), PacketRing>,
    /// Layer bit rates of the tracks subscribed on this core.
    rates: HashMap<TrackKey, LayerRates>,
    /// Keyframe requests gathered while forwarding one packet.
    keyframe_requests: Vec<(TrackKey, usize, Option<u8>)>,
    /// Video tracks with subscribers on this core.
    video_tracks: std::collections::HashSet<TrackKey>,
    /// Published packets decrypted on this core; built with the first one,
    /// so a core that only subscribes (or a short-lived test core) never
    /// pays for it.
    pool: Option<PacketPool>,
    /// Scratch for decrypting SRTCP in place.
    plain: Vec<u8>,
    rtp_out: Vec<u8>,
    /// Sessions sending a probe cluster.
    probing: Vec<usize>,
    /// Relay taps and relayed tracks (`relay.rs`).
    relay: relay::RelayHooks,
    /// Readers of the fanout rings of remote tracks subscribed here.
    consumers: Vec<(TrackKey, Consumer)>,
    /// The consumer [`Core::handle_wake`] reads first (rotates each turn).
    wake_start: usize,
    /// [`Core::handle_wake`] left packets in the rings (see
    /// [`Core::ring_backlog`]).
    ring_backlog: bool,
    /// Bit `c` set: core `c` has new packets in a ring published here
    /// since the last [`Core::poll_wake`] (one wake per batch).
    wakes: u64,
    /// Scratch a ring entry is read into.
    ring_buf: Vec<u8>,
    /// Local fan-outs under way (`pending.rs`).
    pending: Pending,
    /// The latest time the driver handed in: the send time of copies built
    /// when the IO backend asks for more.
    clock: Instant,
}

impl Core {
    /// A core with no sessions. `index` is its position in the worker.
    pub fn new(
        index: usize,
        consent_timeout: Duration,
        counters: Arc<CoreCounters>,
        now: Instant,
    ) -> Self {
        Self {
            index,
            consent_timeout,
            sessions: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            published: HashMap::new(),
            subscribed: HashMap::new(),
            transmits: TxQueue::new(),
            cross: VecDeque::new(),
            events: VecDeque::new(),
            counters,
            next_tick: now + TICK,
            next_trim: now + transmit::TRIM_EVERY,
            ntp: NtpClock::new(now),
            rings: HashMap::new(),
            video_tracks: std::collections::HashSet::new(),
            keyframe_requests: Vec::new(),
            rates: HashMap::new(),
            pool: None,
            plain: vec![0; crate::io::MAX_DATAGRAM],
            rtp_out: vec![0; MTU],
            probing: Vec::new(),
            relay: relay::RelayHooks::default(),
            consumers: Vec::new(),
            wake_start: 0,
            ring_backlog: false,
            wakes: 0,
            ring_buf: vec![0; MTU],
            pending: Pending::default(),
            clock: now,
        }
    }

    /// This core's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Number of live sessions (for placement).
    pub fn session_count(&self) -> usize {
        self.by_id.len()
    }

    /// The core's counters.
    pub fn counters(&self) -> &Arc<CoreCounters> {
        &self.counters
    }

    /// Next datagram to send. Hand it back through
    /// [`Core::recycle_transmit`] once sent, so that its buffer builds the
    /// next one instead of a new allocation.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.len() == 0 && !self.pending.is_empty() {
            self.continue_fan_outs();
        }
        self.transmits.pop()
    }

    /// Returns a sent (or dropped) datagram's buffer for reuse.
    pub fn recycle_transmit(&mut self, t: Transmit) {
        self.transmits.give_back(t.data);
    }

    /// Next message for another core: `(core index, input)`.
    #[must_use]
    pub fn poll_cross_core(&mut self) -> Option<(usize, CoreInput)> {
        self.cross.pop_front()
    }

    /// Next event for the control plane.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<(SessionId, SessionEvent)> {
        self.events.pop_front()
    }

    /// When [`Core::handle_timeout`] wants to run next.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        // Probe clusters are paced finer than the tick.
        self.probing
            .iter()
            .filter_map(|&i| self.sessions.get(i)?.as_ref()?.probe.map(|p| p.next))
            .fold(self.next_tick, Instant::min)
    }

    /// Housekeeping: ICE consent, keyframe retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if !self.probing.is_empty() {
            self.send_probes(now);
        }
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        if now >= self.next_trim {
            self.next_trim = now + transmit::TRIM_EVERY;
            self.counters
                .tx_pool_trimmed
                .add(self.transmits.trim() as u64);
        }
        let mut retries = Vec::new();
        let mut reallocate = Vec::new();
        for (idx, slot) in self.sessions.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            if s.dead {
                continue;
            }
            send_nacks(s, now, &mut self.transmits, &self.counters);
            send_twcc(s, now, &mut self.transmits, &self.counters);
            send_remb(s, now, &mut self.transmits, &self.counters);
            if now >= s.next_report {
                s.next_report = now + REPORT_INTERVAL;
                // Feedback drives allocation, but a paused track brings no
                // feedback: layer rates change without it too.
                if s.bwe.is_some() {
                    reallocate.push(idx);
                }
                send_reports(s, now, &self.ntp, &mut self.transmits, &self.counters);
            }
            s.ice.handle_timeout(now);
            while let Some(ev) = s.ice.poll_event() {
                push_ice_event(&mut self.events, s.id, ev, &mut s.dead);
            }
            for (track, sub) in s.subs.iter_mut() {
                poll_layers(s.id, *track, sub, now, &mut retries, &mut self.events);
            }
        }
        for (track, owner, encoding) in retries {
            self.route_keyframe_request(now, track, owner, encoding);
        }
        for idx in reallocate {
            self.allocate(now, idx);
        }
        self.relay_wants(now);
        self.relay_reports(now);
    }

    /// A control-plane command or a message from another core.
    pub fn handle_input(&mut self, now: Instant, input: CoreInput) {
        match input {
            CoreInput::AddSession {
                id,
                credentials,
                counters,
            } => {
                let ufrag = credentials.ufrag().to_owned();
                let config = IceConfig {
                    consent_timeout: self.consent_timeout,
                    ..IceConfig::default()
                };
                let session = Session {
                    id,
                    ice: IceLite::with_config(credentials, config, now),
                    srtp: None,
                    counters,
                    inbound: Vec::new(),
                    ssrc_to_inbound: HashMap::new(),
                    subs: HashMap::new(),
                    out_ssrc_to_track: HashMap::new(),
                    rtx_to_media: HashMap::new(),
                    rtcp_ssrc: rand::random(),
                    next_report: now + REPORT_INTERVAL,
                    twcc: None,
                    send_twcc: None,
                    bwe: None,
                    remb: None,
                    retransmit_budget: rtx::RetransmitBudget::new(),
                    probe: None,
                    peer_keyed: false,
                    dead: false,
                };
                let idx = match self.free.pop() {
                    Some(i) => {
                        self.sessions[i] = Some(session);
                        i
                    }
                    None => {
                        self.sessions.push(Some(session));
                        self.sessions.len() - 1
                    }
                };
                self.by_id.insert(id, idx);
                self.by_ufrag.insert(ufrag, idx);
            }
            CoreInput::SetRemoteCredentials { id, ufrag, pwd } => {
                if let Some(s) = self.session_mut(id) {
                    if let Err(e) = s.ice.set_remote_credentials(&ufrag, &pwd) {
                        tracing::info!(session = id, "remote ICE credentials refused: {e}");
                    }
                }
            }
            CoreInput::InstallSrtp { id, keys } => {
                let Some(s) = self.session_mut(id) else {
                    return;
                };
                match SrtpSession::new(&keys) {
                    Ok(srtp) => s.srtp = Some(Box::new(srtp)),
                    Err(e) => {
                        tracing::warn!(session = id, "SRTP setup failed: {e}");
                        return;
                    }
                }
                // A keyframe sent before the subscriber could decrypt it was
                // lost to it: ask again now rather than at the next retry.
                let waiting: Vec<(TrackKey, usize)> = s
                    .subs
                    .iter()
                    .filter(|(_, sub)| {
                        sub.video
                            .as_ref()
                            .is_some_and(|v| v.selector.current().is_none())
                    })
                    .map(|(track, sub)| (*track, sub.owner_core))
                    .collect();
                for (track, owner) in waiting {
                    self.route_keyframe_request(now, track, owner, None);
                }
            }
            CoreInput::SendDtls { id, data } => {
                if let Some(dest) = self.session_mut(id).and_then(|s| s.ice.selected()) {
                    self.transmits.push(Transmit { dest, data });
                }
            }
            CoreInput::RemoveSession { id } => self.remove_session(id),
            CoreInput::SetSimulcast {
                id,
                track,
                rids,
                rid_ext_id,
            } => {
                if let Some(s) = self.session_mut(id) {
                    if let Some(i) = s.inbound.iter().position(|i| i.spec.track == track) {
                        s.ssrc_to_inbound.retain(|_, (x, _)| *x != i);
                        s.inbound[i].set_rids(rids, rid_ext_id, now);
                    }
                }
            }
            CoreInput::SetDependencyDescriptor { id, track, ext_id } => {
                if let Some(s) = self.session_mut(id) {
                    if let Some(i) = s.inbound.iter_mut().find(|i| i.spec.track == track) {
                        i.dd_ext_id = ext_id;
                    }
                }
            }
            CoreInput::SetSendDependencyDescriptor { id, track, ext_id } => {
                if let Some(sub) = self.session_mut(id).and_then(|s| s.subs.get_mut(&track)) {
                    if let Some(v) = sub.video.as_mut() {
                        v.dd_out = ext_id.filter(|&e| e != 0).map(svc::DdOut::new);
                    }
                }
            }
            CoreInput::SetSendTransportCc { id, ext_id } => {
                if let Some(s) = self.session_mut(id) {
                    s.send_twcc = ext_id
                        .filter(|e| (1..=14).contains(e))
                        .map(|ext_id| (ext_id, 0));
                    s.bwe = s.send_twcc.map(|_| {
                        Box::new((
                            BandwidthEstimator::new(BWE_INITIAL_BPS, BWE_MIN_BPS, BWE_MAX_BPS),
                            Allocator::new(),
                        ))
                    });
                }
            }
            CoreInput::SetTransportCc { id, ext_id } => {
                if let Some(s) = self.session_mut(id) {
                    s.twcc = ext_id.map(|e| (e, TwccRecorder::new(now)));
                }
            }
            CoreInput::AddInbound { id, spec } => {
                let Some(&idx) = self.by_id.get(&id) else {
                    return;
                };
                let Some(s) = self.sessions[idx].as_mut() else {
                    return;
                };
                let inbound_idx = s.inbound.len();
                // Announced SSRCs (the primary one first; RTX is not
                // negotiated) belong to the only encoding.
                for ssrc in &spec.ssrcs {
                    s.ssrc_to_inbound.insert(*ssrc, (inbound_idx, 0));
                }
                self.published.insert(
                    spec.track,
                    Published {
                        session: idx,
                        inbound: inbound_idx,
                        fanout: Vec::new(),
                        rings: Vec::new(),
                        last_pli: [None; MAX_ENCODINGS],
                    },
                );
                s.inbound.push(Inbound::new(spec, now));
            }
            CoreInput::RemoveInbound { id, track } => {
                self.relay.track_removed(track);
                if let Some(p) = self.published.remove(&track) {
                    if !p.rings.is_empty() {
                        for &(core, _) in p.fanout.iter().filter(|(c, _)| *c != self.index) {
                            self.cross
                                .push_back((core, CoreInput::DetachRing { track }));
                        }
                    }
                    if let Some(s) = self.session_mut(id) {
                        s.ssrc_to_inbound.retain(|_, (i, _)| *i != p.inbound);
                    }
                }
            }
            CoreInput::AddFanout { track, core } => {
                if !self.published.contains_key(&track) {
                    self.relay.add_fanout(track, core);
                }
                if let Some(p) = self.published.get_mut(&track) {
                    match p.fanout.iter_mut().find(|(c, _)| *c == core) {
                        Some((_, n)) => *n += 1,
                        None => {
                            p.fanout.push((core, 1));
                            if core != self.index {
                                for (_, producer) in &p.rings {
                                    let ring = producer.ring().clone();
                                    let from = Consumer::head_of(&ring);
                                    self.cross.push_back((
                                        core,
                                        CoreInput::AttachRing { track, ring, from },
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            CoreInput::RemoveFanout { track, core } => {
                if !self.published.contains_key(&track) {
                    self.relay.remove_fanout(track, core);
                }
                if let Some(p) = self.published.get_mut(&track) {
                    if let Some(pos) = p.fanout.iter().position(|(c, _)| *c == core) {
                        p.fanout[pos].1 -= 1;
                        if p.fanout[pos].1 == 0 {
                            p.fanout.swap_remove(pos);
                            if core != self.index && !p.rings.is_empty() {
                                self.cross
                                    .push_back((core, CoreInput::DetachRing { track }));
                            }
                        }
                    }
                }
            }
            CoreInput::AddSubscriber { id, spec } => {
                let Some(&idx) = self.by_id.get(&id) else {
                    return;
                };
                let Some(s) = self.sessions[idx].as_mut() else {
                    return;
                };
                s.out_ssrc_to_track.insert(spec.out_ssrc, spec.track);
                s.subs.insert(
                    spec.track,
                    Box::new(Subscription {
                        forwarder: Forwarder::new(
                            spec.out_ssrc,
                            spec.out_pt,
                            spec.first_seq,
                            clock_rate(spec.kind),
                        ),
                        owner_core: spec.owner_core,
                        kind: spec.kind,
                        // Without a configuration: one stream, any temporal
                        // layers, until the stream announces its structure.
                        video: (spec.kind == Kind::Video).then(|| match spec.layers {
                            Some(l) => VideoLayers {
                                selector: LayerSelector::new(l.layout),
                                rewriter: PictureIdRewriter::new(l.codec),
                                layout_set: true,
                                dd_out: None,
                                paused: false,
                            },
                            None => VideoLayers {
                                selector: LayerSelector::new(Layout::Single { temporal: 4 }),
                                rewriter: PictureIdRewriter::new(Codec::H264),
                                layout_set: false,
                                dd_out: None,
                                paused: false,
                            },
                        }),
                        packets_sent: 0,
                        octets_sent: 0,
                        last_sent_at: None,
                        rtt: None,
                        rtx: None,
                        stats: None,
                        report: None,
                        allocated_bps: None,
                    }),
                );
                // Sorted by slot: a fan-out under way resumes at a slot,
                // whatever joined or left since (`pending.rs`).
                let list = self.subscribed.entry(spec.track).or_default();
                if let Err(at) = list.binary_search(&idx) {
                    list.insert(at, idx);
                }
                if spec.kind == Kind::Video {
                    self.video_tracks.insert(spec.track);
                    let mut requests = Vec::new();
                    if let Some(sub) = s.subs.get_mut(&spec.track) {
                        poll_layers(s.id, spec.track, sub, now, &mut requests, &mut self.events);
                    }
                    for (track, owner, encoding) in requests {
                        self.route_keyframe_request(now, track, owner, encoding);
                    }
                }
            }
            CoreInput::ConfigureLayers {
                id,
                track,
                layout,
                codec,
            } => {
                if let Some(sub) = self.session_mut(id).and_then(|s| s.subs.get_mut(&track)) {
                    if let Some(v) = sub.video.as_mut() {
                        let preferred = v.selector.preferred();
                        v.selector = LayerSelector::new(layout);
                        v.selector
                            .set_preferred(preferred.spatial, preferred.temporal);
                        v.rewriter = PictureIdRewriter::new(codec);
                        v.layout_set = true;
                    }
                }
            }
            CoreInput::SetPreferredLayers {
                id,
                track,
                spatial,
                temporal,
            } => {
                if let Some(sub) = self.session_mut(id).and_then(|s| s.subs.get_mut(&track)) {
                    if let Some(v) = sub.video.as_mut() {
                        v.selector.set_preferred(spatial, temporal);
                    }
                }
            }
            CoreInput::SetSubscriberRtx {
                id,
                track,
                ssrc,
                payload_type,
            } => {
                if let Some(sub) = self.session_mut(id).and_then(|s| s.subs.get_mut(&track)) {
                    sub.rtx = ssrc.map(|ssrc| rtx::RtxStream::new(ssrc, payload_type));
                }
            }
            CoreInput::SetInboundRtx {
                id,
                track,
                payload_type,
                ssrcs,
                rrid_ext_id,
            } => {
                if let Some(s) = self.session_mut(id) {
                    if let Some(i) = s.inbound.iter().position(|i| i.spec.track == track) {
                        s.inbound[i].rtx = payload_type.map(|pt| InboundRtx {
                            payload_type: pt & 0x7f,
                            rrid_ext_id,
                        });
                        for (rtx, media) in ssrcs {
                            s.rtx_to_media.insert(rtx, media);
                            // An RTX SSRC is not a media stream of its own.
                            if s.ssrc_to_inbound.get(&rtx).is_some_and(|(x, _)| *x == i) {
                                s.ssrc_to_inbound.remove(&rtx);
                            }
                        }
                    }
                }
            }
            CoreInput::SetInboundFir { id, track, fir } => {
                if let Some(s) = self.session_mut(id) {
                    if let Some(i) = s.inbound.iter_mut().find(|i| i.spec.track == track) {
                        i.fir = fir;
                    }
                }
            }
            CoreInput::AttachInboundStats {
                id,
                track,
                counters,
            } => {
                if let Some(s) = self.session_mut(id) {
                    if let Some(i) = s.inbound.iter_mut().find(|i| i.spec.track == track) {
                        i.stats = Some(counters);
                    }
                }
            }
            CoreInput::AttachSubscriberStats {
                id,
                track,
                counters,
            } => {
                if let Some(sub) = self.session_mut(id).and_then(|s| s.subs.get_mut(&track)) {
                    sub.stats = Some(counters);
                }
            }
            CoreInput::SetRemb { id, enabled } => {
                if let Some(s) = self.session_mut(id) {
                    s.remb = enabled.then(|| {
                        Box::new(RemoteEstimator::new(
                            now,
                            REMB_INITIAL_BPS,
                            BWE_MIN_BPS,
                            BWE_MAX_BPS,
                        ))
                    });
                }
            }
            CoreInput::RemoveSubscriber { id, track } => {
                let Some(&idx) = self.by_id.get(&id) else {
                    return;
                };
                if let Some(s) = self.sessions[idx].as_mut() {
                    if let Some(sub) = s.subs.remove(&track) {
                        s.out_ssrc_to_track.remove(&sub.forwarder.out_ssrc());
                    }
                }
                self.unsubscribe_slot(track, idx);
            }
            CoreInput::Media { track, packet } => self.deliver_local(now, track, &packet),
            CoreInput::AttachRing { track, ring, from } => {
                if !self
                    .consumers
                    .iter()
                    .any(|(t, c)| *t == track && c.reads(&ring))
                {
                    self.consumers
                        .push((track, Consumer::starting_at(&ring, from)));
                }
            }
            CoreInput::DetachRing { track } => {
                // Read what is left first: it was published before the
                // detach was sent.
                self.handle_wake(now);
                self.consumers.retain(|(t, _)| *t != track);
            }
            CoreInput::KeyframeRequest { track } => self.send_pli(now, track, None),
            CoreInput::EncodingKeyframeRequest { track, encoding } => {
                self.send_pli(now, track, Some(encoding))
            }
            input @ (CoreInput::AddRelayTap { .. }
            | CoreInput::RemoveRelayTap { .. }
            | CoreInput::AddRelayedTrack { .. }
            | CoreInput::RemoveRelayedTrack { .. }
            | CoreInput::RelayedMedia { .. }
            | CoreInput::RelayedMediaBatch { .. }
            | CoreInput::RelayNackMiss { .. }
            | CoreInput::RelayWants { .. }
            | CoreInput::RelayReport { .. }) => self.handle_relay_input(now, input),
            CoreInput::Shutdown => {}
        }
    }

    /// One datagram from the core's socket, arrived `now`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.handle_datagram_at(now, now, from, datagram);
    }

    /// One datagram from the core's socket, read `now` and received by the
    /// kernel at `arrival` (not after `now`). Transport-cc, REMB and jitter
    /// measure `arrival`, so a batch read late is not reported as a burst;
    /// everything else runs at `now`.
    pub fn handle_datagram_at(
        &mut self,
        now: Instant,
        arrival: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) {
        self.counters.rx_datagrams.inc();
        self.counters.rx_bytes.add(datagram.len() as u64);
        match classify(datagram) {
            PacketClass::Stun => self.handle_stun(now, from, datagram),
            PacketClass::Dtls => {
                let Some(idx) = self.checked_session(from) else {
                    return;
                };
                if let Some(s) = self.sessions[idx].as_ref() {
                    self.events
                        .push_back((s.id, SessionEvent::Dtls(datagram.to_vec())));
                }
            }
            PacketClass::Rtp => self.handle_rtp(now, arrival.min(now), from, datagram),
            PacketClass::Rtcp => self.handle_rtcp(now, from, datagram),
            PacketClass::Unknown => self.counters.drop_unknown_class.inc(),
        }
    }

    fn session_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        let idx = *self.by_id.get(&id)?;
        self.sessions.get_mut(idx)?.as_mut()
    }

    /// The session that `from` passed an ICE check for, if any.
    fn checked_session(&mut self, from: SocketAddr) -> Option<usize> {
        let idx = self.by_addr.get(&from).copied();
        let ok = idx
            .and_then(|i| self.sessions.get(i)?.as_ref())
            .is_some_and(|s| !s.dead && s.ice.is_valid_source(from));
        if ok {
            idx
        } else {
            self.counters.drop_unchecked_source.inc();
            None
        }
    }

    fn handle_stun(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let idx = StunMessage::parse(datagram)
            .ok()
            .and_then(|m| m.local_ufrag())
            .and_then(|u| self.by_ufrag.get(u).copied());
        let Some(idx) = idx else {
            self.counters.drop_stun_rejected.inc();
            return;
        };
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        if s.dead {
            return;
        }
        let mut out = [0u8; 256];
        match s.ice.handle_binding_request(now, from, datagram, &mut out) {
            Ok(Some(n)) => {
                self.counters.stun_answered.inc();
                s.counters.stun_answered.inc();
                self.transmits.push_copy(from, &out[..n], &self.counters);
                // A 487 Role Conflict is answered too, but its source is
                // not accepted: only checked addresses are routed.
                if s.ice.is_valid_source(from) {
                    self.by_addr.insert(from, idx);
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(session = s.id, "STUN rejected: {e}");
                self.counters.drop_stun_rejected.inc();
            }
        }
        while let Some(ev) = s.ice.poll_event() {
            push_ice_event(&mut self.events, s.id, ev, &mut s.dead);
        }
    }

    fn handle_rtp(&mut self, now: Instant, arrival: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(idx) = self.checked_session(from) else {
            return;
        };
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let Some(srtp) = s.srtp.as_mut() else {
            self.counters.drop_srtp.inc();
            return;
        };
        // Decrypted in place in the pooled packet that subscribers share.
        let pool = self
            .pool
            .get_or_insert_with(|| PacketPool::new(PACKET_POOL));
        let misses = pool.misses();
        let mut pkt = pool.take();
        if pool.misses() != misses {
            self.counters.packet_pool_misses.inc();
        }
        pkt.data.clear();
        pkt.data.extend_from_slice(datagram);
        match srtp.decrypt_rtp_in_place(&mut pkt.data) {
            Ok(n) => pkt.data.truncate(n),
            Err(_) => {
                self.counters.drop_srtp.inc();
                s.counters.srtp_rejected.inc();
                return;
            }
        }
        s.counters.rtp_rx_packets.inc();
        s.note_keyed(&mut self.events);
        s.counters.rtp_rx_bytes.add(datagram.len() as u64);
        let Ok(header) = RtpHeader::parse(&pkt.data) else {
            self.counters.drop_malformed.inc();
            return;
        };
        if let (Some((ext_id, recorder)), Some(profile)) =
            (s.twcc.as_mut(), header.extension_profile())
        {
            let seq = Extensions::parse(profile, header.extension_block())
                .ok()
                .and_then(|e| e.get(*ext_id))
                .and_then(|v| weir_codecs::extensions::TransportSequenceNumber::parse(v).ok());
            if let Some(seq) = seq {
                recorder.on_packet(arrival, seq.0);
            }
        }
        let repair = match rtx::inbound_repair(s, &header) {
            Ok(r) => r,
            Err(rtx::UnknownRepair) => {
                self.counters.drop_unknown_ssrc.inc();
                return;
            }
        };
        let repaired = repair.is_some();
        let header = match repair {
            Some(r) => {
                let header_len = header.header_len();
                if !rtx::unwrap(&mut pkt.data, header_len, r.apt, r.media_ssrc) {
                    self.counters.drop_padding.inc();
                    return;
                }
                self.counters.rtx_repairs_received.inc();
                match RtpHeader::parse(&pkt.data) {
                    Ok(h) => h,
                    Err(_) => {
                        self.counters.drop_malformed.inc();
                        return;
                    }
                }
            }
            None => header,
        };
        let ssrc = header.ssrc();
        let (inbound_idx, encoding) = match s.ssrc_to_inbound.get(&ssrc) {
            Some(i) => *i,
            None => match bind_ssrc(s, &header) {
                Some(i) => i,
                None => {
                    self.counters.drop_unknown_ssrc.inc();
                    return;
                }
            },
        };
        let inbound = &mut s.inbound[inbound_idx];
        if let Some(st) = &inbound.stats {
            st.packets.inc();
            st.bytes.add(pkt.data.len() as u64);
            if repaired {
                st.rtx_received.inc();
            }
        }
        let track = inbound.spec.track;
        let kind = inbound.spec.kind;
        if !inbound.seen {
            inbound.seen = true;
            self.events
                .push_back((s.id, SessionEvent::FirstMedia { track }));
        }
        let Some(enc) = inbound.encodings.get_mut(usize::from(encoding)) else {
            return;
        };
        if enc.ssrc != Some(ssrc) {
            enc.reset(kind, ssrc, now);
        }
        if let (Kind::Video, Some(r)) = (kind, s.remb.as_mut()) {
            r.on_packet(
                arrival,
                ssrc,
                header.timestamp(),
                clock_rate(kind),
                datagram.len(),
            );
        }
        let ext_seq = enc
            .stats
            .update(arrival, header.sequence_number(), header.timestamp());
        if kind == Kind::Video && !enc.nack.on_packet(now, ext_seq) {
            // Already forwarded once: subscribers must not pay for it twice,
            // and the layer rates measure what the encoder produces.
            self.counters.drop_duplicate.inc();
            return;
        }
        let missing = kind == Kind::Video && enc.nack.has_missing();
        let sender_report = enc.sender_report;
        let payload = header.payload();
        let (keyframe, layers) = match kind {
            Kind::Audio => (
                false,
                LayerFacts {
                    encoding,
                    frame_start: true,
                    frame_end: true,
                    ..LayerFacts::default()
                },
            ),
            Kind::Video => svc::video_layer_facts(
                inbound.spec.codec,
                &header,
                encoding,
                inbound.dd_ext_id,
                &mut enc.dd,
            ),
        };
        let (payload_offset, payload_len) = (header.header_len(), payload.len());
        let (seq, timestamp, marker) = (
            header.sequence_number(),
            header.timestamp(),
            header.marker(),
        );
        pkt.payload_offset = payload_offset;
        pkt.payload_len = payload_len;
        pkt.seq = seq;
        pkt.timestamp = timestamp;
        pkt.ssrc = ssrc;
        pkt.marker = marker;
        pkt.keyframe = keyframe;
        pkt.layers = layers;
        pkt.sender_report = sender_report;
        let packet = pkt.share();
        if missing {
            // Ask at once: waiting for the next tick costs a frame.
            send_nacks(s, now, &mut self.transmits, &self.counters);
        }
        self.relay.tap(track, &packet);
        let Some(p) = self.published.get_mut(&track) else {
            return;
        };
        if p.fanout.iter().any(|(c, _)| *c != self.index) {
            // Published once into the stream's ring; the subscribing cores
            // read it when woken. A late packet (not after the ring's last)
            // or one too large for a slot still goes through the mailbox.
            let ring_pos = match p.rings.iter().position(|(s, _)| *s == ssrc) {
                Some(i) => i,
                None => {
                    let (ring, producer) = FanoutRing::new(RETRANSMIT_SLOTS, MTU);
                    for &(core, _) in p.fanout.iter().filter(|(c, _)| *c != self.index) {
                        self.cross.push_back((
                            core,
                            CoreInput::AttachRing {
                                track,
                                ring: ring.clone(),
                                from: ext_seq,
                            },
                        ));
                    }
                    p.rings.push((ssrc, producer));
                    p.rings.len() - 1
                }
            };
            let published = crate::fanout::facts::pack(&packet)
                .ok()
                .is_some_and(|meta| {
                    p.rings[ring_pos]
                        .1
                        .publish(ext_seq, meta, &packet.data)
                        .is_ok()
                });
            for i in 0..p.fanout.len() {
                let core = p.fanout[i].0;
                if core == self.index {
                    continue;
                }
                self.counters.cross_core_sent.inc();
                if published {
                    self.wakes |= 1 << (core % 64);
                } else {
                    self.cross.push_back((
                        core,
                        CoreInput::Media {
                            track,
                            packet: packet.clone(),
                        },
                    ));
                }
            }
        }
        if p.fanout.iter().any(|(c, _)| *c == self.index) {
            self.deliver_local(now, track, &packet);
        }
    }

    /// Forwards one packet to every subscriber of `track` on this core:
    /// the per-track bookkeeping now, the copies as the transmit queue has
    /// room for them (`pending.rs`).
    fn deliver_local(&mut self, now: Instant, track: TrackKey, packet: &PacketRef) {
        let Some(list) = self.subscribed.get(&track) else {
            return;
        };
        let subscribers = list.len();
        if self.video_tracks.contains(&track) {
            self.rings
                .entry((track, packet.ssrc))
                .or_insert_with(PacketRing::new)
                .put(packet);
        }
        let l = packet.layers;
        self.rates
            .entry(track)
            .or_insert_with(|| LayerRates::new(now))
            .on_packet(
                now,
                l.encoding.max(l.spatial),
                l.temporal,
                packet.data.len(),
            );
        if self.pending.datagrams() >= MAX_OWED || self.transmits.overloaded() {
            // As if lost on the wire: no forwarder sees it, so each
            // subscriber gets a sequence gap it can NACK instead of a
            // silently incomplete frame.
            self.counters.drop_tx_backlog.add(subscribers as u64);
            return;
        }
        let (next, left) = if self.pending.is_empty() {
            match self.fan_out(now, track, packet, 0) {
                Some(rest) => rest,
                None => return,
            }
        } else {
            (0, subscribers)
        };
        self.pending
            .push_back(now, track, packet.clone(), next, left);
    }

    /// Builds the copies of `packet` for the subscribers of `track` whose
    /// session slot is `from_slot` or above (the list is sorted by slot),
    /// until the transmit queue holds [`FANOUT_CHUNK`] datagrams. Returns
    /// the slot to go on from and the copies left, or `None` when done.
    fn fan_out(
        &mut self,
        now: Instant,
        track: TrackKey,
        packet: &PacketRef,
        from_slot: usize,
    ) -> Option<(usize, usize)> {
        let list = self.subscribed.get(&track)?;
        let mut k = list.partition_point(|&idx| idx < from_slot);
        while let Some(&idx) = list.get(k) {
            if self.transmits.len() >= FANOUT_CHUNK {
                return Some((idx, list.len() - k));
            }
            k += 1;
            let Some(s) = self.sessions.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            let (Some(srtp), Some(dest)) = (s.srtp.as_mut(), s.ice.selected()) else {
                continue;
            };
            let Some(sub) = s.subs.get_mut(&track) else {
                continue;
            };
            let mut marker = packet.marker;
            if let Some(v) = sub.video.as_mut().filter(|v| v.paused) {
                // Skipped, not lost: the output stays gapless for the
                // receiver's NACK and loss accounting.
                v.rewriter
                    .on_dropped(packet.layers.encoding, packet.payload());
                sub.forwarder.skip(packet);
                self.counters.drop_paused.inc();
                continue;
            }
            if let Some(v) = sub.video.as_mut() {
                let l = packet.layers;
                let lp = LayerPacket {
                    encoding: l.encoding,
                    spatial: l.spatial,
                    temporal: l.temporal,
                    keyframe: packet.keyframe,
                    frame_start: l.frame_start,
                    frame_end: l.frame_end,
                    switching_point: l.switching_point,
                    switch_up_to: l.switch_up_to,
                    marker: packet.marker,
                };
                if let Some(structure) = l.structure {
                    v.selector.on_stream_layers(structure);
                }
                if let Some(d) = v.dd_out.as_mut() {
                    d.observe(packet);
                }
                let decision = v.selector.on_packet(now, &lp);
                poll_layers(
                    s.id,
                    track,
                    sub,
                    now,
                    &mut self.keyframe_requests,
                    &mut self.events,
                );
                let Some(v) = sub.video.as_mut() else {
                    continue;
                };
                match decision {
                    Decision::Drop => {
                        v.rewriter.on_dropped(l.encoding, packet.payload());
                        sub.forwarder.skip(packet);
                        if v.selector.current().is_none() {
                            self.counters.drop_waiting_keyframe.inc();
                        } else {
                            self.counters.drop_layer_filtered.inc();
                        }
                        continue;
                    }
                    Decision::Forward { set_marker } => marker = set_marker,
                }
            }
            if self.transmits.overloaded() {
                // Control traffic filled the queue: as above, a gap.
                self.counters.drop_tx_backlog.inc();
                continue;
            }
            let stamp = s.send_twcc.map(|(ext_id, seq)| TwccStamp { ext_id, seq });
            let n = match sub
                .forwarder
                .forward(packet, &mut self.rtp_out, stamp, marker)
            {
                Ok(n) => n,
                Err(Skip::Padding) => {
                    self.counters.drop_padding.inc();
                    continue;
                }
                Err(Skip::NoRoom) => {
                    self.counters.drop_malformed.inc();
                    continue;
                }
            };
            if let Some(v) = sub.video.as_mut() {
                let start = Forwarder::payload_offset(stamp);
                if v.rewriter
                    .rewrite(packet.layers.encoding, &mut self.rtp_out[start..n])
                    .is_err()
                {
                    self.counters.drop_malformed.inc();
                }
            }
            let n = match sub.video.as_mut() {
                Some(VideoLayers {
                    selector,
                    dd_out: Some(d),
                    ..
                }) => d
                    .write(packet, selector.current(), &mut self.rtp_out, n, stamp)
                    .unwrap_or(n),
                _ => n,
            };
            let Ok(sealed_len) =
                self.transmits
                    .seal_rtp(srtp, dest, &self.rtp_out[..n], &self.counters)
            else {
                self.counters.drop_srtp.inc();
                continue;
            };
            s.counters.rtp_tx_packets.inc();
            s.counters.rtp_tx_bytes.add(sealed_len as u64);
            if let Some(st) = &sub.stats {
                st.packets.inc();
                st.bytes.add(sealed_len as u64);
            }
            sub.packets_sent = sub.packets_sent.wrapping_add(1);
            sub.octets_sent = sub.octets_sent.wrapping_add(packet.payload_len as u32);
            sub.last_sent_at = Some(now);
            if let Some((_, seq)) = s.send_twcc.as_mut() {
                if let Some((bwe, _)) = s.bwe.as_deref_mut() {
                    bwe.on_sent(now, *seq, sealed_len);
                }
                *seq = seq.wrapping_add(1);
            }
        }
        let requests = std::mem::take(&mut self.keyframe_requests);
        for &(track, owner, encoding) in &requests {
            self.route_keyframe_request(now, track, owner, encoding);
        }
        self.keyframe_requests = requests;
        self.keyframe_requests.clear();
        None
    }

    /// Refills the transmit queue from the fan-outs under way, oldest
    /// first, up to [`FANOUT_CHUNK`] datagrams.
    fn continue_fan_outs(&mut self) {
        while self.transmits.len() < FANOUT_CHUNK {
            let Some(p) = self.pending.pop_front() else {
                return;
            };
            // Send-side time for the estimator's records and the layer
            // selectors: now, not when the packet arrived.
            let now = self.clock.max(p.at);
            if let Some((next, left)) = self.fan_out(now, p.track, &p.packet, p.next) {
                self.pending.push_front(p, next, left);
            }
        }
    }

    /// The next core to wake because a ring published here has new
    /// packets for it; each core at most once per call sequence (drain this
    /// after every turn, with [`Core::poll_cross_core`]).
    #[must_use]
    pub fn poll_wake(&mut self) -> Option<usize> {
        if self.wakes == 0 {
            return None;
        }
        let core = self.wakes.trailing_zeros() as usize;
        self.wakes &= self.wakes - 1;
        Some(core)
    }

    /// Reads the fanout rings of the remote tracks subscribed here and
    /// forwards what is new. The driver calls it on every wake-up (it is
    /// cheap when nothing is new); a reader that fell a ring behind skips
    /// forward and the loss is counted in `fanout_ring_lost`.
    pub fn handle_wake(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.ring_backlog = false;
        let n = self.consumers.len();
        // Starts one track further each turn, so that when the backlog
        // cuts a turn short no track always comes last.
        self.wake_start = if n == 0 { 0 } else { (self.wake_start + 1) % n };
        for k in 0..n {
            let i = (self.wake_start + k) % n;
            loop {
                if self.transmits.len() + self.pending.datagrams() >= transmit::BACKLOG_SOFT {
                    // The rest waits in the rings (see BACKLOG_SOFT).
                    self.counters.ring_reads_deferred.inc();
                    self.ring_backlog = true;
                    return;
                }
                let (track, consumer) = &mut self.consumers[i];
                let track = *track;
                let lost = consumer.lost();
                let entry = consumer.read(&mut self.ring_buf);
                let skipped = consumer.lost() - lost;
                if skipped != 0 {
                    self.counters.fanout_ring_lost.add(skipped);
                }
                let Some(entry) = entry else { break };
                let pool = self
                    .pool
                    .get_or_insert_with(|| PacketPool::new(PACKET_POOL));
                let misses = pool.misses();
                let mut pkt = pool.take();
                if pool.misses() != misses {
                    self.counters.packet_pool_misses.inc();
                }
                if crate::fanout::facts::unpack(&entry.meta, entry.len, &mut pkt).is_err() {
                    self.counters.drop_malformed.inc();
                    continue;
                }
                pkt.data.clear();
                pkt.data.extend_from_slice(&self.ring_buf[..entry.len]);
                let packet = pkt.share();
                self.deliver_local(now, track, &packet);
            }
        }
    }

    /// Whether the last [`Core::handle_wake`] stopped early with packets
    /// left in the fanout rings because the transmit queue was long: the
    /// driver should send and come back without waiting for a wake-up.
    #[must_use]
    pub fn ring_backlog(&self) -> bool {
        self.ring_backlog
    }

    /// Drops `idx` from the subscribers of `track` on this core.
    fn unsubscribe_slot(&mut self, track: TrackKey, idx: usize) {
        if let Some(list) = self.subscribed.get_mut(&track) {
            list.retain(|i| *i != idx);
            if list.is_empty() {
                self.subscribed.remove(&track);
                self.video_tracks.remove(&track);
                self.rates.remove(&track);
                self.rings.retain(|(t, _), _| *t != track);
            }
        }
    }

    /// Answers a subscriber's NACK from this core's packet ring.
    fn retransmit(&mut self, now: Instant, idx: usize, media_ssrc: u32, fci: &[u8]) {
        let Some(s) = self.sessions.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Some(track) = s.out_ssrc_to_track.get(&media_ssrc).copied() else {
            return;
        };
        let (Some(srtp), Some(dest), Some(sub)) =
            (s.srtp.as_mut(), s.ice.selected(), s.subs.get_mut(&track))
        else {
            return;
        };
        if let Some(st) = &sub.stats {
            st.nacks_received.inc();
        }
        // Only with an estimate: without transport-cc there is no rate to
        // hold retransmissions to.
        let budget_bps = s.bwe.as_deref().map(|(bwe, alloc)| {
            rtx::retransmit_rate_bps(bwe.estimate_bps(), alloc.allocated_bps())
        });
        for out_seq in nack::nacked_seqs(fci) {
            self.counters.nacked_packets_received.inc();
            let source = match sub.forwarder.nacked(out_seq) {
                Ok(source) => Some(source),
                Err(NackRefusal::Unknown) => None,
                Err(NackRefusal::BeforeKeyframe | NackRefusal::OldSource) => {
                    self.counters.retransmits_stale.inc();
                    continue;
                }
            };
            let packet =
                source.and_then(|src| self.rings.get(&(track, src.ssrc))?.get(src.ssrc, src.seq));
            if let (Some(p), Some(v)) = (packet, sub.video.as_ref()) {
                if rtx::above_current(p, v.selector.current()) {
                    self.counters.retransmits_stale.inc();
                    continue;
                }
            }
            let stamp = s.send_twcc.map(|(ext_id, seq)| TwccStamp { ext_id, seq });
            let Some(n) = packet.and_then(|p| {
                sub.forwarder
                    .rewrite_again(p, out_seq, &mut self.rtp_out, stamp)
            }) else {
                self.counters.retransmit_misses.inc();
                sub.stats.as_ref().inspect(|st| st.retransmit_misses.inc());
                if let Some(src) = source {
                    relay::nack_miss(
                        &self.relay,
                        &mut self.cross,
                        self.published.contains_key(&track),
                        self.index,
                        track,
                        sub.owner_core,
                        src.ssrc,
                        src.seq,
                    );
                }
                continue;
            };
            let mut n = match (packet, sub.video.as_mut()) {
                (
                    Some(p),
                    Some(VideoLayers {
                        selector,
                        dd_out: Some(d),
                        ..
                    }),
                ) => d
                    .write(p, selector.current(), &mut self.rtp_out, n, stamp)
                    .unwrap_or(n),
                _ => n,
            };
            if self.transmits.overloaded() {
                self.counters.drop_tx_backlog.inc();
                continue;
            }
            if let Some(bps) = budget_bps {
                if !s.retransmit_budget.take(now, bps, n) {
                    self.counters.retransmits_limited.inc();
                    continue;
                }
            }
            if let Some(r) = sub.rtx.as_mut() {
                // Measured, not assumed: the Dependency Descriptor may have
                // grown the header.
                let header = RtpHeader::parse(&self.rtp_out[..n]).map_or(0, |h| h.header_len());
                match r.wrap(&mut self.rtp_out, header, n) {
                    Some(len) => n = len,
                    None => {
                        self.counters.retransmit_misses.inc();
                        sub.stats.as_ref().inspect(|st| st.retransmit_misses.inc());
                        continue;
                    }
                }
            }
            if let Ok(sealed_len) =
                self.transmits
                    .seal_rtp(srtp, dest, &self.rtp_out[..n], &self.counters)
            {
                if let Some((_, seq)) = s.send_twcc.as_mut() {
                    if let Some((bwe, _)) = s.bwe.as_deref_mut() {
                        bwe.on_sent(now, *seq, sealed_len);
                    }
                    *seq = seq.wrapping_add(1);
                }
                self.counters.retransmits_sent.inc();
                if sub.rtx.is_some() {
                    self.counters.retransmits_rtx.inc();
                }
                if let Some(st) = &sub.stats {
                    st.retransmissions.inc();
                    st.packets.inc();
                    st.bytes.add(sealed_len as u64);
                }
                s.counters.rtp_tx_packets.inc();
            }
        }
    }

    fn handle_rtcp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(idx) = self.checked_session(from) else {
            return;
        };
        let Some(s) = self.sessions[idx].as_mut() else {
            return;
        };
        let Some(srtp) = s.srtp.as_mut() else {
            self.counters.drop_srtp.inc();
            return;
        };
        // Decrypted in place in a scratch buffer taken out of `self` for the
        // call, so NACKs can be answered straight from it.
        let mut plain = std::mem::take(&mut self.plain);
        let len = datagram.len();
        let n = match plain.get_mut(..len) {
            Some(buf) => {
                buf.copy_from_slice(datagram);
                srtp.decrypt_rtcp_in_place(buf)
            }
            None => Err(crate::srtp::SrtpError::BufferTooSmall {
                need: len,
                have: plain.len(),
            }),
        };
        let Ok(n) = n else {
            self.counters.drop_srtp.inc();
            s.counters.srtp_rejected.inc();
            self.plain = plain;
            return;
        };
        s.counters.rtcp_rx_packets.inc();
        s.note_keyed(&mut self.events);
        // Reused across calls: no allocation once it has grown.
        let mut requests = std::mem::take(&mut self.keyframe_requests);
        let mut nacks = false;
        let mut reallocate = false;
        let now_ntp = self.ntp.ntp_middle(now);
        for item in rtcp::walk(&plain[..n]) {
            // PLI names one SSRC, FIR a list; at most this many are honoured
            // per FIR (Weir sends each subscriber a handful of streams).
            let mut ssrcs = [0u32; 8];
            let count = match item {
                Ok(RtcpItem::Pli { media_ssrc }) => {
                    ssrcs[0] = media_ssrc;
                    1
                }
                Ok(RtcpItem::Fir { entries }) => {
                    let mut k = 0;
                    for (slot, ssrc) in ssrcs.iter_mut().zip(rtcp::fir_ssrcs(entries)) {
                        *slot = ssrc;
                        k += 1;
                    }
                    k
                }
                Ok(RtcpItem::TransportCc { fci }) => {
                    self.counters.twcc_feedback_received.inc();
                    if let Some((bwe, _)) = s.bwe.as_deref_mut() {
                        if bwe.on_feedback(now, fci).is_err() {
                            self.counters.drop_malformed.inc();
                        }
                        reallocate = true;
                    }
                    continue;
                }
                Ok(RtcpItem::Nack { .. }) => {
                    self.counters.nack_received.inc();
                    nacks = true;
                    continue;
                }
                Ok(RtcpItem::SenderReport {
                    ssrc,
                    ntp,
                    rtp_timestamp,
                    ..
                }) => {
                    if let Some(&(i, e)) = s.ssrc_to_inbound.get(&ssrc) {
                        if let Some(enc) = s
                            .inbound
                            .get_mut(i)
                            .and_then(|i| i.encodings.get_mut(usize::from(e)))
                        {
                            enc.stats.on_sender_report(now, (ntp >> 16) as u32);
                            enc.sender_report = Some((ntp, rtp_timestamp));
                        }
                    }
                    continue;
                }
                Ok(RtcpItem::ReceiverReport { blocks, .. }) => {
                    for block in rtcp::report_blocks(blocks) {
                        let Some(track) = s.out_ssrc_to_track.get(&block.ssrc) else {
                            continue;
                        };
                        let Some(sub) = s.subs.get_mut(track) else {
                            continue;
                        };
                        sub.report = Some(relay::DownstreamSummary {
                            fraction_lost: block.fraction_lost,
                            cumulative_lost: block.cumulative_lost.max(0) as u32,
                            jitter: block.jitter,
                            ..Default::default()
                        });
                        if let Some(st) = &sub.stats {
                            st.packets_lost.set(block.cumulative_lost.max(0) as u64);
                            st.fraction_lost.set(u64::from(block.fraction_lost));
                            st.jitter_us.set(
                                u64::from(block.jitter) * 1_000_000
                                    / u64::from(clock_rate(sub.kind)),
                            );
                        }
                        if block.last_sr != 0 {
                            // RFC 3550 §6.4.1: RTT = A - LSR - DLSR, in 1/65536 s.
                            let rtt = now_ntp
                                .wrapping_sub(block.last_sr)
                                .wrapping_sub(block.delay_since_last_sr);
                            if rtt < 65536 * 10 {
                                let rtt = Duration::from_secs_f64(f64::from(rtt) / 65536.0);
                                sub.rtt = Some(rtt);
                                if let Some(st) = &sub.stats {
                                    st.rtt_us.set(rtt.as_micros() as u64);
                                }
                            }
                        }
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(_) => {
                    self.counters.drop_malformed.inc();
                    break;
                }
            };
            for ssrc in &ssrcs[..count] {
                if let Some(track) = s.out_ssrc_to_track.get(ssrc) {
                    if let Some(sub) = s.subs.get(track) {
                        self.counters.keyframe_requests_received.inc();
                        sub.stats.as_ref().inspect(|st| st.keyframe_requests.inc());
                        requests.push((*track, sub.owner_core, None));
                    }
                }
            }
        }
        for &(track, owner, encoding) in &requests {
            self.route_keyframe_request(now, track, owner, encoding);
        }
        requests.clear();
        self.keyframe_requests = requests;
        if nacks {
            // A second walk: the first one could not answer while it held
            // the session.
            for item in rtcp::walk(&plain[..n]) {
                if let Ok(RtcpItem::Nack { media_ssrc, fci }) = item {
                    self.retransmit(now, idx, media_ssrc, fci);
                }
            }
        }
        self.plain = plain;
        if reallocate {
            self.allocate(now, idx);
        }
    }

    /// Shares a subscriber's bandwidth estimate among its tracks and bounds
    /// each video selector by the layer it gets.
    fn allocate(&mut self, now: Instant, idx: usize) {
        let Some(s) = self.sessions.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        let Some((bwe, allocator)) = s.bwe.as_deref_mut() else {
            return;
        };
        let estimate = bwe.estimate_bps();
        let mut rates: Vec<TrackRates> = Vec::with_capacity(s.subs.len());
        for (track, sub) in &s.subs {
            let mut layers = Vec::new();
            let (kind, preferred, cumulative) = match &sub.video {
                Some(v) => {
                    let p = v.selector.preferred();
                    (
                        TrackKind::Video,
                        (p.spatial, p.temporal),
                        matches!(v.selector.layout(), Layout::Svc { .. }),
                    )
                }
                None => (TrackKind::Audio, (0, 0), false),
            };
            if let Some(r) = self.rates.get(track) {
                r.layer_rates(now, cumulative, &mut layers);
            }
            if kind == TrackKind::Video {
                crate::bwe::allocator::full_frame_rate_above_lowest(&mut layers, preferred.1);
            }
            if kind == TrackKind::Audio && layers.is_empty() {
                layers.push(LayerRate {
                    spatial: 0,
                    temporal: 0,
                    bps: AUDIO_BPS_GUESS,
                });
            }
            rates.push((*track, kind, preferred, layers));
        }
        let demands: Vec<TrackDemand<'_>> = rates
            .iter()
            .map(|(track, kind, preferred, layers)| TrackDemand {
                id: *track,
                kind: *kind,
                priority: 1,
                layers,
                preferred: *preferred,
            })
            .collect();
        // On the initial guess no track goes down (see `is_initial_guess`).
        let budget = if bwe.is_initial_guess() {
            estimate.max(allocator.held_bps(&demands))
        } else {
            estimate
        };
        let result = allocator.allocate(now, budget, &demands);
        bwe.set_desired_bps(allocator.desired_bps());
        for (track, choice) in result {
            let Some(sub) = s.subs.get_mut(&track) else {
                continue;
            };
            let bps = choice.and_then(|(sp, tp)| {
                rates
                    .iter()
                    .find(|(t, ..)| *t == track)
                    .and_then(|(.., l)| l.iter().find(|r| r.spatial == sp && r.temporal == tp))
                    .map(|r| r.bps)
            });
            sub.allocated_bps = Some(bps.unwrap_or(0));
            if let Some(st) = &sub.stats {
                st.bandwidth_estimate_bps.set(estimate);
                st.allocated_bps.set(bps.unwrap_or(0));
            }
            let Some(v) = sub.video.as_mut() else {
                continue;
            };
            // Layers never measured yet are not limited: the first keyframe
            // decides what exists.
            if !rates
                .iter()
                .any(|(t, _, _, l)| *t == track && !l.is_empty())
            {
                continue;
            }
            let was = (v.paused, v.selector.target());
            match choice {
                Some((spatial, temporal)) => {
                    if v.paused {
                        // Resume from a keyframe: a fresh selector waits for
                        // one and asks for it.
                        v.paused = false;
                        let preferred = v.selector.preferred();
                        v.selector = LayerSelector::new(v.selector.layout());
                        v.selector
                            .set_preferred(preferred.spatial, preferred.temporal);
                        self.counters.video_resumed.inc();
                    }
                    v.selector.set_max(spatial, temporal);
                }
                None if !v.paused => {
                    v.paused = true;
                    self.counters.video_paused.inc();
                }
                None => {}
            }
            if was != (v.paused, v.selector.target()) {
                // Not per packet: at most once per feedback or report.
                tracing::debug!(
                    session = s.id,
                    track,
                    estimate,
                    acked = bwe.acked_bps(),
                    delay = ?bwe.delay_usage(),
                    paused = v.paused,
                    target = ?v.selector.target(),
                    "allocation changed"
                );
            }
            poll_layers(
                s.id,
                track,
                sub,
                now,
                &mut self.keyframe_requests,
                &mut self.events,
            );
        }
        s.counters.bwe_estimate_bps.set(estimate);
        self.start_probe(now, idx);
        let requests = std::mem::take(&mut self.keyframe_requests);
        for &(track, owner, encoding) in &requests {
            self.route_keyframe_request(now, track, owner, encoding);
        }
        self.keyframe_requests = requests;
        self.keyframe_requests.clear();
    }

    /// Starts the probe cluster the estimator toward session `idx` asks
    /// for, if it has one due and an RTX stream to carry it.
    fn start_probe(&mut self, now: Instant, idx: usize) {
        let Some(s) = self.sessions.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        // Only a session that can put a cluster on the wire is asked for
        // one: a request taken earlier (an allocation between the answer
        // and the end of the DTLS handshake) would send nothing and spend
        // the initial probe, leaving the estimate at its start for the five
        // seconds until the periodic probe. Without RTX none is ever sent
        // (see `probe.rs`), and the estimator carries on without.
        let can_send = s.srtp.is_some()
            && s.ice.selected().is_some()
            && s.subs.values().any(|sub| sub.rtx.is_some());
        if s.probe.is_some() || s.send_twcc.is_none() || !can_send {
            return;
        }
        let Some((bwe, _)) = s.bwe.as_deref_mut() else {
            return;
        };
        let Some(request) = bwe.poll_probe(now) else {
            return;
        };
        tracing::debug!(
            session = s.id,
            bps = request.bps,
            bytes = request.bytes,
            "probe cluster started"
        );
        s.probe = Some(probe::ProbeSend::new(&request, now));
        self.probing.push(idx);
        self.counters.probe_clusters.inc();
    }

    /// Sends the probe packets due by `now`.
    fn send_probes(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.probing.len() {
            let idx = self.probing[i];
            let finished = match self.sessions.get_mut(idx).and_then(Option::as_mut) {
                Some(s) => {
                    let n = s.probe.as_mut().map_or(0, |p| p.due(now));
                    for _ in 0..n {
                        send_probe_packet(
                            s,
                            now,
                            &mut self.rtp_out,
                            &mut self.transmits,
                            &self.counters,
                        );
                    }
                    let done = s.probe.is_none_or(|p| p.done()) || s.dead;
                    if done {
                        s.probe = None;
                    }
                    done
                }
                None => true,
            };
            if finished {
                self.probing.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn route_keyframe_request(
        &mut self,
        now: Instant,
        track: TrackKey,
        owner_core: usize,
        encoding: Option<u8>,
    ) {
        if owner_core == self.index {
            self.send_pli(now, track, encoding);
        } else {
            let input = match encoding {
                Some(encoding) => CoreInput::EncodingKeyframeRequest { track, encoding },
                None => CoreInput::KeyframeRequest { track },
            };
            self.cross.push_back((owner_core, input));
        }
    }

    /// Sends a PLI to the publisher of `track`, throttled per track.
    fn send_pli(&mut self, now: Instant, track: TrackKey, encoding: Option<u8>) {
        let Some(p) = self.published.get_mut(&track) else {
            self.relay
                .feedback(track, RelayFeedback::KeyframeRequest { encoding });
            return;
        };
        let Some(s) = self.sessions.get_mut(p.session).and_then(Option::as_mut) else {
            return;
        };
        let mut targets = [(0u8, 0u32); MAX_ENCODINGS];
        let mut n_targets = 0;
        for (e, ssrc) in s.inbound_ssrcs(p.inbound) {
            let slot = usize::from(e).min(MAX_ENCODINGS - 1);
            let throttled = p.last_pli[slot].is_some_and(|t| now.duration_since(t) < PLI_THROTTLE);
            if encoding.is_none_or(|x| x == e) && !throttled && n_targets < MAX_ENCODINGS {
                targets[n_targets] = (e, ssrc);
                n_targets += 1;
            }
        }
        let (Some(srtp), Some(dest)) = (s.srtp.as_mut(), s.ice.selected()) else {
            return;
        };
        // FIR where the publisher negotiated `ccm fir`, PLI otherwise.
        let inbound = s.inbound.get_mut(p.inbound);
        let fir = inbound.as_ref().is_some_and(|i| i.fir);
        let mut buf = [0u8; rtcp::FIR_LEN * MAX_ENCODINGS];
        let mut len = 0;
        let mut fir_seqs = inbound.map(|i| &mut i.fir_seq);
        for &(e, ssrc) in &targets[..n_targets] {
            let slot = usize::from(e).min(MAX_ENCODINGS - 1);
            let written = match fir_seqs.as_mut().filter(|_| fir) {
                Some(seqs) => {
                    seqs[slot] = seqs[slot].wrapping_add(1);
                    rtcp::write_fir(&mut buf[len..], s.rtcp_ssrc, ssrc, seqs[slot])
                }
                None => rtcp::write_pli(&mut buf[len..], s.rtcp_ssrc, ssrc),
            };
            if let Some(n) = written {
                len += n;
                p.last_pli[slot] = Some(now);
            }
        }
        if len > 0
            && self
                .transmits
                .seal_rtcp(srtp, dest, &buf[..len], &self.counters)
                .is_ok()
        {
            let stats = s.inbound.get(p.inbound).and_then(|i| i.stats.as_ref());
            if fir {
                self.counters.fir_sent.add(n_targets as u64);
                stats.inspect(|st| st.firs_sent.add(n_targets as u64));
            } else {
                self.counters.pli_sent.add(n_targets as u64);
                stats.inspect(|st| st.plis_sent.add(n_targets as u64));
            }
            s.counters.rtcp_tx_packets.inc();
        }
    }

    fn remove_session(&mut self, id: SessionId) {
        let Some(idx) = self.by_id.remove(&id) else {
            return;
        };
        let Some(s) = self.sessions[idx].take() else {
            return;
        };
        self.by_ufrag.retain(|_, i| *i != idx);
        self.by_addr.retain(|_, i| *i != idx);
        for inbound in &s.inbound {
            self.relay.track_removed(inbound.spec.track);
            self.published.remove(&inbound.spec.track);
        }
        for track in s.subs.keys() {
            self.unsubscribe_slot(*track, idx);
        }
        self.free.push(idx);
    }
}

/// Sends one padding-only RTX packet of `s`'s probe cluster.
fn send_probe_packet(
    s: &mut Session,
    now: Instant,
    rtp_out: &mut [u8],
    tx: &mut TxQueue,
    counters: &CoreCounters,
) {
    let (Some(srtp), Some(dest), Some((ext_id, twcc_seq)), Some(p)) = (
        s.srtp.as_mut(),
        s.ice.selected(),
        s.send_twcc.as_mut(),
        s.probe,
    ) else {
        return;
    };
    if tx.overloaded() {
        // Probing for headroom while the core cannot send what it has
        // would measure the core, not the path.
        return;
    }
    let Some(sub) = s.subs.values_mut().find(|sub| sub.rtx.is_some()) else {
        return;
    };
    let timestamp = sub.forwarder.last_out_timestamp();
    let Some(rtx) = sub.rtx.as_mut() else { return };
    let Some(n) = rtx.write_padding(rtp_out, timestamp, *ext_id, *twcc_seq) else {
        return;
    };
    let Ok(sealed_len) = tx.seal_rtp(srtp, dest, &rtp_out[..n], counters) else {
        return;
    };
    if let Some((bwe, _)) = s.bwe.as_deref_mut() {
        bwe.on_probe_sent(now, *twcc_seq, sealed_len, p.id);
    }
    *twcc_seq = twcc_seq.wrapping_add(1);
    counters.probe_packets_sent.inc();
    s.counters.rtp_tx_packets.inc();
    s.counters.rtp_tx_bytes.add(sealed_len as u64);
}

/// Per subscribed track: its key, kind, preferred layers and measured rates.
type TrackRates = (TrackKey, TrackKind, (u8, u8), Vec<LayerRate>);

/// Drains a video subscription's selector: keyframe requests (to route to
/// the publisher's core) and layer changes (to report).
fn poll_layers(
    id: SessionId,
    track: TrackKey,
    sub: &mut Subscription,
    now: Instant,
    requests: &mut Vec<(TrackKey, usize, Option<u8>)>,
    events: &mut VecDeque<(SessionId, SessionEvent)>,
) {
    let Some(v) = sub.video.as_mut() else { return };
    let simulcast = matches!(v.selector.layout(), Layout::Simulcast { .. });
    while let Some(encoding) = v.selector.poll_keyframe_request(now) {
        requests.push((track, sub.owner_core, simulcast.then_some(encoding)));
    }
    while let Some(change) = v.selector.poll_event() {
        if v.layout_set {
            events.push_back((
                id,
                SessionEvent::LayersChanged {
                    track,
                    spatial: change.spatial,
                    temporal: change.temporal,
                },
            ));
        }
    }
}
