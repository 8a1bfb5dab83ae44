//! Per-session state of a core: what a transport publishes (inbound
//! streams, one per simulcast encoding) and subscribes to.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_codecs::{DependencyStructure, Extensions, RtpHeader};

use super::{InboundSpec, SessionEvent, SessionId, TrackKey, RETRANSMIT_SLOTS};
use crate::bwe::{Allocator, BandwidthEstimator};
use crate::counters::{InboundStreamCounters, OutboundStreamCounters, TransportCounters};
use crate::forwarder::Forwarder;
use crate::ice::{IceEvent, IceLite};
use crate::layers::{LayerSelector, PictureIdRewriter};
use crate::packet::Kind;
use crate::packet_pool::PacketRef;
use crate::rtcp::nack::NackGenerator;
use crate::rtcp::receiver::ReceiveStats;
use crate::rtcp::twcc::TwccRecorder;
use crate::srtp::SrtpSession;

/// One RTP stream of a published track: the only one, or one simulcast
/// encoding.
pub(super) struct Encoding {
    /// The SSRC it arrives with (announced, or learned from a packet).
    pub(super) ssrc: Option<u32>,
    pub(super) stats: ReceiveStats,
    pub(super) nack: NackGenerator,
    /// The latest sender report: (NTP, RTP timestamp).
    pub(super) sender_report: Option<(u64, u32)>,
    /// The last Dependency Descriptor template structure of this stream;
    /// boxed (it is kilobytes) and allocated once per SSRC, not per packet.
    pub(super) dd: Box<Option<DependencyStructure>>,
}

impl Encoding {
    fn new(kind: Kind, now: Instant) -> Self {
        Self {
            ssrc: None,
            stats: ReceiveStats::new(clock_rate(kind), now),
            nack: NackGenerator::default(),
            sender_report: None,
            dd: Box::new(None),
        }
    }

    /// Starts over for a new SSRC (first packet, or a publisher restart).
    pub(super) fn reset(&mut self, kind: Kind, ssrc: u32, now: Instant) {
        *self = Self::new(kind, now);
        self.ssrc = Some(ssrc);
    }
}

/// A publish m-section.
pub(super) struct Inbound {
    pub(super) spec: InboundSpec,
    pub(super) seen: bool,
    /// Simulcast `rid`s, lowest resolution first; empty without simulcast.
    pub(super) rids: Vec<String>,
    pub(super) rid_ext_id: Option<u8>,
    /// The Dependency Descriptor extension id, if negotiated.
    pub(super) dd_ext_id: Option<u8>,
    /// One per rid, or one.
    pub(super) encodings: Vec<Encoding>,
    /// RTX from the publisher, when negotiated.
    pub(super) rtx: Option<InboundRtx>,
    /// Keyframe requests are FIRs (`ccm fir` negotiated), not PLIs.
    pub(super) fir: bool,
    /// FIR command sequence numbers, per encoding.
    pub(super) fir_seq: [u8; super::MAX_ENCODINGS],
    /// Counters the control plane reads, once attached.
    pub(super) stats: Option<Arc<InboundStreamCounters>>,
}

/// RTX negotiated with a publisher for one m-section.
#[derive(Debug, Clone, Copy)]
pub(super) struct InboundRtx {
    pub(super) payload_type: u8,
    pub(super) rrid_ext_id: Option<u8>,
}

impl Inbound {
    pub(super) fn new(spec: InboundSpec, now: Instant) -> Self {
        let encodings = vec![Encoding::new(spec.kind, now)];
        Self {
            spec,
            seen: false,
            rids: Vec::new(),
            rid_ext_id: None,
            dd_ext_id: None,
            encodings,
            rtx: None,
            fir: false,
            fir_seq: [0; super::MAX_ENCODINGS],
            stats: None,
        }
    }

    /// Declares simulcast encodings (rids, lowest first).
    pub(super) fn set_rids(&mut self, rids: Vec<String>, rid_ext_id: Option<u8>, now: Instant) {
        self.encodings = (0..rids.len().max(1))
            .map(|_| Encoding::new(self.spec.kind, now))
            .collect();
        self.rids = rids;
        self.rid_ext_id = rid_ext_id;
    }
}

/// RTP clock rate by kind: Opus is the only audio codec Weir forwards.
pub(super) fn clock_rate(kind: Kind) -> u32 {
    match kind {
        Kind::Audio => 48_000,
        Kind::Video => 90_000,
    }
}

/// Layer selection of a video subscription.
pub(super) struct VideoLayers {
    pub(super) selector: LayerSelector,
    pub(super) rewriter: PictureIdRewriter,
    /// Whether the control plane described the layers (events are only
    /// worth reporting then).
    pub(super) layout_set: bool,
    /// The Dependency Descriptor toward the subscriber, if negotiated.
    pub(super) dd_out: Option<super::svc::DdOut>,
    /// The allocator found no room even for the lowest layer: nothing is
    /// forwarded until it does, and then from a keyframe.
    pub(super) paused: bool,
}

/// One subscription of a session.
pub(super) struct Subscription {
    pub(super) forwarder: Forwarder,
    pub(super) owner_core: usize,
    pub(super) kind: Kind,
    /// Video only.
    pub(super) video: Option<VideoLayers>,
    pub(super) packets_sent: u32,
    pub(super) octets_sent: u32,
    pub(super) last_sent_at: Option<Instant>,
    /// Round-trip time from the subscriber's receiver reports.
    pub(super) rtt: Option<Duration>,
    /// RTX toward the subscriber, when negotiated.
    pub(super) rtx: Option<super::rtx::RtxStream>,
    /// Counters the control plane reads, once attached.
    pub(super) stats: Option<Arc<OutboundStreamCounters>>,
    /// The subscriber's latest receiver report for this stream (loss and
    /// jitter; `rtt` above), for the relay's summary to the origin.
    pub(super) report: Option<super::relay::DownstreamSummary>,
    /// What the allocator last gave this track toward the subscriber,
    /// bit/s; `None` without a bandwidth estimate.
    pub(super) allocated_bps: Option<u64>,
}

/// The last packets of a track on this core, indexed by sequence number:
/// the source of retransmissions.
pub(super) struct PacketRing {
    slots: Vec<Option<PacketRef>>,
}

impl PacketRing {
    pub(super) fn new() -> Self {
        Self {
            slots: vec![None; RETRANSMIT_SLOTS],
        }
    }

    fn slot(seq: u16) -> usize {
        usize::from(seq) % RETRANSMIT_SLOTS
    }

    /// Keeps `packet`, releasing the one it replaces (whose pool slot is
    /// then free again unless another core still holds it).
    pub(super) fn put(&mut self, packet: &PacketRef) {
        self.slots[Self::slot(packet.seq)] = Some(packet.clone());
    }

    /// The packet of `ssrc` with sequence number `seq`, if still held.
    pub(super) fn get(&self, ssrc: u32, seq: u16) -> Option<&PacketRef> {
        self.slots[Self::slot(seq)]
            .as_ref()
            .filter(|p| p.seq == seq && p.ssrc == ssrc)
    }
}

/// A transport on this core.
///
/// Sessions sit inline in the core's slab, so every slot costs
/// `size_of::<Session>()` whether or not its transport uses the big parts:
/// the SRTP contexts, the send-side estimate and the REMB estimator are
/// boxed and allocated once, when negotiated (a subscriber never has REMB,
/// a publisher never a send-side estimate).
pub(super) struct Session {
    pub(super) id: SessionId,
    pub(super) ice: IceLite,
    pub(super) srtp: Option<Box<SrtpSession>>,
    pub(super) counters: Arc<TransportCounters>,
    pub(super) inbound: Vec<Inbound>,
    /// SSRC → (inbound index, encoding index).
    pub(super) ssrc_to_inbound: HashMap<u32, (usize, u8)>,
    /// Boxed: a map reserves room for more entries than it holds, and a
    /// subscription is ~950 B.
    pub(super) subs: HashMap<TrackKey, Box<Subscription>>,
    pub(super) out_ssrc_to_track: HashMap<u32, TrackKey>,
    /// A publisher's RTX SSRCs → the media SSRCs they repair.
    pub(super) rtx_to_media: HashMap<u32, u32>,
    /// SSRC we use as the sender of our RTCP feedback.
    pub(super) rtcp_ssrc: u32,
    pub(super) next_report: Instant,
    /// transport-cc: the extension id and the arrival recorder.
    pub(super) twcc: Option<(u8, TwccRecorder)>,
    /// transport-cc toward a subscriber: extension id, next sequence number.
    pub(super) send_twcc: Option<(u8, u16)>,
    /// Bandwidth estimate toward a subscriber and its allocator.
    pub(super) bwe: Option<Box<(BandwidthEstimator, Allocator)>>,
    /// Receive-side estimate for REMB toward a publisher without
    /// transport-cc.
    pub(super) remb: Option<Box<crate::bwe::RemoteEstimator>>,
    /// Retransmissions toward a subscriber, limited to its estimate.
    pub(super) retransmit_budget: super::rtx::RetransmitBudget,
    /// A probe cluster being sent to a subscriber.
    pub(super) probe: Option<super::probe::ProbeSend>,
    /// Whether a packet from the peer passed SRTP authentication yet
    /// ([`SessionEvent::PeerKeyed`] went out).
    pub(super) peer_keyed: bool,
    pub(super) dead: bool,
}

impl Session {
    /// Notes a packet from the peer that passed SRTP or SRTCP
    /// authentication; the first one tells the control plane.
    pub(super) fn note_keyed(&mut self, events: &mut VecDeque<(SessionId, SessionEvent)>) {
        if !self.peer_keyed {
            self.peer_keyed = true;
            events.push_back((self.id, SessionEvent::PeerKeyed));
        }
    }
}

impl Session {
    /// The known SSRCs of an inbound track's encodings.
    pub(super) fn inbound_ssrcs(&self, inbound: usize) -> impl Iterator<Item = (u8, u32)> + '_ {
        self.inbound.get(inbound).into_iter().flat_map(|i| {
            i.encodings
                .iter()
                .enumerate()
                .filter_map(|(e, enc)| Some((e as u8, enc.ssrc?)))
        })
    }
}

/// A track published on this core.
pub(super) struct Published {
    pub(super) session: usize,
    pub(super) inbound: usize,
    /// Cores with subscribers, with how many subscriptions each.
    pub(super) fanout: Vec<(usize, u32)>,
    /// The fanout rings of its streams, by publisher SSRC: built with the
    /// first packet published while another core subscribes.
    pub(super) rings: Vec<(u32, crate::fanout::Producer)>,
    /// When a PLI last went out, per encoding.
    pub(super) last_pli: [Option<Instant>; super::MAX_ENCODINGS],
}

/// Finds the inbound track (and simulcast encoding) of an SSRC not
/// announced in the SDP: by the rid and mid header extensions, else by
/// payload type when only one m-section uses it.
pub(super) fn bind_ssrc(s: &mut Session, header: &RtpHeader<'_>) -> Option<(usize, u8)> {
    let mut found = None;
    if let Some(profile) = header.extension_profile() {
        if let Ok(exts) = Extensions::parse(profile, header.extension_block()) {
            for (i, inbound) in s.inbound.iter().enumerate() {
                let Some(id) = inbound.spec.mid_ext_id else {
                    continue;
                };
                let mid = exts
                    .get(id)
                    .and_then(|v| weir_codecs::extensions::parse_mid(v).ok());
                if mid != Some(inbound.spec.mid.as_str()) {
                    continue;
                }
                if inbound.rids.is_empty() {
                    found = Some((i, 0));
                    break;
                }
                // Simulcast: the rid names the encoding; without it the
                // SSRC stays unbound until a packet carries one.
                let rid = inbound
                    .rid_ext_id
                    .and_then(|id| exts.get(id))
                    .and_then(|v| weir_codecs::extensions::parse_rtp_stream_id(v).ok());
                if let Some(e) = rid.and_then(|r| inbound.rids.iter().position(|x| x == r)) {
                    found = Some((i, e as u8));
                }
                break;
            }
        }
    }
    if found.is_none() {
        let pt = header.payload_type();
        let mut matches = s
            .inbound
            .iter()
            .enumerate()
            .filter(|(_, i)| i.spec.payload_type == pt && i.rids.is_empty());
        if let (Some((i, _)), None) = (matches.next(), matches.next()) {
            found = Some((i, 0));
        }
    }
    let (i, e) = found?;
    s.ssrc_to_inbound.insert(header.ssrc(), (i, e));
    Some((i, e))
}

pub(super) fn push_ice_event(
    events: &mut VecDeque<(SessionId, SessionEvent)>,
    id: SessionId,
    ev: IceEvent,
    dead: &mut bool,
) {
    let ev = match ev {
        IceEvent::Connected(a) => SessionEvent::IceConnected(a),
        IceEvent::SelectedChanged(a) => SessionEvent::IceSelected(a),
        IceEvent::ConsentExpired => {
            *dead = true;
            SessionEvent::ConsentExpired
        }
        #[allow(unreachable_patterns)]
        _ => return,
    };
    events.push_back((id, ev));
}
