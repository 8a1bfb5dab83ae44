//! The per-subscriber layer selector: which packets of one video track a
//! subscriber receives, and when it needs a keyframe.

use std::time::{Duration, Instant};

use weir_codecs::PacketFacts;

use super::StreamLayers;

/// First retry interval of keyframe requests; also the minimum gap between
/// any two requests of one selector.
pub const KEYFRAME_RETRY_INITIAL: Duration = Duration::from_millis(500);

/// Cap of the exponential backoff between keyframe requests.
pub const KEYFRAME_RETRY_MAX: Duration = Duration::from_secs(4);

/// How the publisher layers a video track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Independent encodings (one SSRC each), each with temporal layers.
    Simulcast {
        /// Number of encodings (1..=3 in practice).
        encodings: u8,
        /// Number of temporal layers per encoding (1 when none).
        temporal: u8,
    },
    /// One stream with spatial and temporal layers (VP9, AV1 `L*T*`).
    Svc {
        /// Number of spatial layers.
        spatial: u8,
        /// Number of temporal layers.
        temporal: u8,
    },
    /// One stream with temporal layers only (VP8 `L1T*`, or none).
    Single {
        /// Number of temporal layers (1 when none).
        temporal: u8,
    },
}

impl Layout {
    /// Number of selectable spatial units: encodings, spatial layers or one.
    pub fn spatial_layers(&self) -> u8 {
        match *self {
            Layout::Simulcast { encodings, .. } => encodings.max(1),
            Layout::Svc { spatial, .. } => spatial.max(1),
            Layout::Single { .. } => 1,
        }
    }

    /// Number of temporal layers.
    pub fn temporal_layers(&self) -> u8 {
        match *self {
            Layout::Simulcast { temporal, .. }
            | Layout::Svc { temporal, .. }
            | Layout::Single { temporal } => temporal.max(1),
        }
    }
}

/// A spatial and temporal layer pair. For simulcast, `spatial` is the
/// encoding index (0 = lowest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Layers {
    /// Encoding index (simulcast) or spatial layer id (SVC); 0 otherwise.
    pub spatial: u8,
    /// Temporal layer id.
    pub temporal: u8,
}

impl Layers {
    /// The pair `(spatial, temporal)`.
    pub const fn new(spatial: u8, temporal: u8) -> Self {
        Self { spatial, temporal }
    }

    /// The highest layers: everything the publisher sends.
    pub const MAX: Layers = Layers::new(u8::MAX, u8::MAX);
}

/// What the selector needs to know about one published packet.
///
/// `keyframe` is set on the first packet of a keyframe only, as
/// [`weir_codecs::facts()`] does; `switching_point` on every packet of a frame
/// that a subscriber may switch up to (VP8 Y bit, VP9 U bit, Dependency
/// Descriptor switch indication).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LayerPacket {
    /// Simulcast encoding index, 0 = lowest; 0 when not simulcast.
    pub encoding: u8,
    /// SVC spatial layer id, 0 if none.
    pub spatial: u8,
    /// Temporal layer id, 0 if none.
    pub temporal: u8,
    /// The packet starts a keyframe.
    pub keyframe: bool,
    /// First packet of a (layer) frame.
    pub frame_start: bool,
    /// Last packet of a (layer) frame.
    pub frame_end: bool,
    /// A subscriber may switch up to this packet's temporal layer here.
    pub switching_point: bool,
    /// At a switching point, the highest temporal layer reachable from
    /// here when higher than the packet's own (the Dependency Descriptor
    /// marks a T1 frame as the switch point of T2); 0 when unknown.
    pub switch_up_to: u8,
    /// The RTP marker bit as published.
    pub marker: bool,
}

impl LayerPacket {
    /// Builds the selector's view of a packet from its parsed facts, the
    /// encoding it arrived on and its RTP marker bit.
    pub fn from_facts(encoding: u8, facts: &PacketFacts, marker: bool) -> Self {
        Self {
            encoding,
            spatial: facts.spatial_id.unwrap_or(0),
            temporal: facts.temporal_id.unwrap_or(0),
            keyframe: facts.keyframe,
            frame_start: facts.frame_start,
            frame_end: facts.frame_end || marker,
            switching_point: facts.switching_point,
            switch_up_to: 0,
            marker,
        }
    }
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Not for this subscriber. The forwarder closes the sequence-number gap
    /// and tells the [`PictureIdRewriter`](super::PictureIdRewriter).
    Drop,
    /// Forward the packet.
    Forward {
        /// The marker bit to write. It is the published marker, and for SVC
        /// also set on the last packet of the highest forwarded spatial layer
        /// frame when upper layers are dropped.
        set_marker: bool,
    },
}

impl Decision {
    /// Whether the packet is forwarded.
    pub fn is_forward(&self) -> bool {
        matches!(self, Decision::Forward { .. })
    }
}

/// The layers a subscriber receives changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayersChanged {
    /// Current encoding index (simulcast) or spatial layer (SVC).
    pub spatial: u8,
    /// Current temporal layer.
    pub temporal: u8,
}

/// Keyframe-request pacing: what is wanted and when to ask next.
#[derive(Debug, Clone)]
struct KeyframeRequests {
    initial: Duration,
    max: Duration,
    /// The encoding a keyframe is wanted from.
    wanted: Option<u8>,
    /// When the next request is due while `wanted` is set.
    next_at: Option<Instant>,
    /// Gap after the next request.
    interval: Duration,
    last_sent: Option<Instant>,
}

impl KeyframeRequests {
    fn update(&mut self, now: Instant, wanted: Option<u8>) {
        if wanted == self.wanted {
            return;
        }
        self.wanted = wanted;
        self.interval = self.initial;
        self.next_at = wanted.map(|_| match self.last_sent {
            // A new need still respects the minimum gap, so that flapping
            // preferences cannot flood the publisher with PLIs.
            Some(last) => (last + self.initial).max(now),
            None => now,
        });
    }

    fn poll(&mut self, now: Instant) -> Option<u8> {
        let encoding = self.wanted?;
        if now < self.next_at? {
            return None;
        }
        self.last_sent = Some(now);
        self.next_at = Some(now + self.interval);
        self.interval = (self.interval * 2).min(self.max);
        Some(encoding)
    }
}

/// Chooses, per packet, what one subscriber of one video track receives.
///
/// It holds three layer pairs: *preferred* (set by the application),
/// *max* (set by the bandwidth allocator), and *current* (what is being
/// forwarded). The *target* is the component-wise minimum of preferred and
/// max, clamped to the [`Layout`]. Current moves towards target only where
/// the decoder can follow:
///
/// - Start: nothing is forwarded until a keyframe; the first keyframe sets
///   current (for simulcast, a keyframe of any encoding at or below the
///   target).
/// - Simulcast: only the current encoding is forwarded. The encoding changes
///   only at a keyframe of an encoding between current (exclusive) and
///   target (inclusive), up or down, so two encodings are never interleaved
///   and a down-switch may stop at a keyframe of an intermediate encoding.
///   The partly forwarded frame of the old encoding is cut off; the decoder
///   discards it when the keyframe begins.
/// - SVC: spatial layers above current are dropped. Up-switch only at a
///   keyframe (also for full SVC, where an inter-layer switch would be
///   possible earlier: keyframe-only keeps the rule codec-independent);
///   down-switch at the next picture start (frame start of spatial layer 0).
///   When upper layers are dropped, the last packet of the top forwarded
///   layer frame gets the marker bit, without holding packets back.
/// - Temporal: layers above current are dropped; up-switch at a frame start
///   that is a switching point of a layer at or below target, or directly
///   to target at a keyframe; down-switch at the next frame (picture) start.
///
/// While a keyframe is needed (start, simulcast encoding change, SVC
/// up-switch), [`poll_keyframe_request`](Self::poll_keyframe_request) asks
/// for one at once, then after 500 ms, 1 s, 2 s … capped at 4 s, until it
/// arrives. A lost keyframe start therefore only delays the switch.
///
/// # Calling order
///
/// 1. [`set_preferred`](Self::set_preferred) / [`set_max`](Self::set_max)
///    whenever the application or the allocator decide;
/// 2. [`on_packet`](Self::on_packet) for every packet of the track, in
///    arrival order, and act on the [`Decision`];
/// 3. after either of the above, and when
///    [`poll_timeout`](Self::poll_timeout) passes: drain
///    [`poll_keyframe_request`](Self::poll_keyframe_request) (send a PLI or
///    FIR for the returned encoding) and
///    [`poll_event`](Self::poll_event).
///
/// No clock, IO or allocation inside.
#[derive(Debug, Clone)]
pub struct LayerSelector {
    layout: Layout,
    preferred: Layers,
    max: Layers,
    current: Option<Layers>,
    reported: Option<Layers>,
    keyframes: KeyframeRequests,
}

impl LayerSelector {
    /// A selector for `layout`, preferring and allowed the highest layers,
    /// waiting for a keyframe.
    pub fn new(layout: Layout) -> Self {
        Self::with_keyframe_backoff(layout, KEYFRAME_RETRY_INITIAL, KEYFRAME_RETRY_MAX)
    }

    /// Like [`new`](Self::new) with another keyframe-request backoff: the
    /// first retry after `initial`, doubling up to `max`.
    pub fn with_keyframe_backoff(layout: Layout, initial: Duration, max: Duration) -> Self {
        Self {
            layout,
            preferred: Layers::MAX,
            max: Layers::MAX,
            current: None,
            reported: None,
            keyframes: KeyframeRequests {
                initial,
                max: max.max(initial),
                wanted: None,
                next_at: None,
                interval: initial,
                last_sent: None,
            },
        }
    }

    /// The layout this selector was made for.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Adopts the layer counts the stream announced in-band (VP9
    /// scalability structure, Dependency Descriptor template structure).
    ///
    /// A simulcast layout keeps its encodings and takes the temporal count
    /// (each encoding announces its own). Any other layout becomes
    /// [`Layout::Svc`] or [`Layout::Single`] as the counts say, keeping
    /// preferred, max and current: a stream forwarded whole until now
    /// gave the decoder every spatial layer, so current continues at the
    /// target and moves down at the next picture start if it must.
    pub fn on_stream_layers(&mut self, layers: StreamLayers) {
        let layout = match self.layout {
            Layout::Simulcast { encodings, .. } => Layout::Simulcast {
                encodings,
                temporal: layers.temporal.max(1),
            },
            Layout::Svc { .. } | Layout::Single { .. } => layers.layout(),
        };
        if layout == self.layout {
            return;
        }
        let was_single = matches!(self.layout, Layout::Single { .. });
        self.layout = layout;
        let target = self.target();
        if let Some(c) = self.current.as_mut() {
            c.spatial = match layout {
                Layout::Svc { .. } if was_single => target.spatial,
                Layout::Simulcast { .. } => c.spatial,
                _ => c.spatial.min(layout.spatial_layers() - 1),
            };
            c.temporal = c.temporal.min(layout.temporal_layers() - 1);
        }
    }

    /// The layers the application asks for.
    pub fn set_preferred(&mut self, spatial: u8, temporal: u8) {
        self.preferred = Layers::new(spatial, temporal);
    }

    /// The highest layers the bandwidth allows.
    pub fn set_max(&mut self, spatial: u8, temporal: u8) {
        self.max = Layers::new(spatial, temporal);
    }

    /// The layers being forwarded; `None` before the first keyframe.
    pub fn current(&self) -> Option<Layers> {
        self.current
    }

    /// The layers the application prefers.
    pub fn preferred(&self) -> Layers {
        self.preferred
    }

    /// What a relay origin is asked to send for this subscriber: the
    /// target and one layer above it (spatial and temporal), within the
    /// preferred layers. The layer above lets the bandwidth allocator
    /// measure it and move up: it only allocates layers it has seen, so a
    /// relay sending the target alone would hold the subscriber there for
    /// good. While the layout is still unknown (a stream whose SVC
    /// structure has not arrived yet) the preferred spatial layer stands.
    pub fn wanted(&self) -> Layers {
        let target = self.target();
        let p = self.preferred;
        let spatial = match self.layout {
            Layout::Single { .. } => p.spatial,
            _ => p.spatial.min(target.spatial.saturating_add(1)),
        };
        Layers::new(spatial, p.temporal.min(target.temporal.saturating_add(1)))
    }

    /// The layers the selector moves towards: min(preferred, max), clamped
    /// to the layout.
    pub fn target(&self) -> Layers {
        Layers::new(
            self.preferred
                .spatial
                .min(self.max.spatial)
                .min(self.layout.spatial_layers() - 1),
            self.preferred
                .temporal
                .min(self.max.temporal)
                .min(self.layout.temporal_layers() - 1),
        )
    }

    /// Decides about one published packet of the track.
    pub fn on_packet(&mut self, now: Instant, pkt: &LayerPacket) -> Decision {
        let decision = self.decide(pkt);
        self.keyframes.update(now, self.keyframe_wanted());
        decision
    }

    /// The encoding a keyframe should be requested from now, if any. Call
    /// until it returns `None`; requests are paced with backoff.
    #[must_use]
    pub fn poll_keyframe_request(&mut self, now: Instant) -> Option<u8> {
        self.keyframes.update(now, self.keyframe_wanted());
        self.keyframes.poll(now)
    }

    /// When [`poll_keyframe_request`](Self::poll_keyframe_request) should
    /// be called next, as of the last call to it or to
    /// [`on_packet`](Self::on_packet).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.keyframes.wanted.and(self.keyframes.next_at)
    }

    /// The current layers, when they changed since the last event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<LayersChanged> {
        let current = self.current?;
        if self.reported == Some(current) {
            return None;
        }
        self.reported = Some(current);
        Some(LayersChanged {
            spatial: current.spatial,
            temporal: current.temporal,
        })
    }

    /// Which encoding a keyframe is needed from for current to reach target.
    fn keyframe_wanted(&self) -> Option<u8> {
        let target = self.target();
        let simulcast = matches!(self.layout, Layout::Simulcast { .. });
        match self.current {
            None => Some(if simulcast { target.spatial } else { 0 }),
            Some(c) => match self.layout {
                Layout::Simulcast { .. } => (c.spatial != target.spatial).then_some(target.spatial),
                Layout::Svc { .. } => (target.spatial > c.spatial).then_some(0),
                Layout::Single { .. } => None,
            },
        }
    }

    fn decide(&mut self, pkt: &LayerPacket) -> Decision {
        let target = self.target();
        let svc = matches!(self.layout, Layout::Svc { .. });
        // The unit a keyframe switches to: an encoding, or the whole SVC stream.
        let unit = match self.layout {
            Layout::Simulcast { .. } => pkt.encoding,
            Layout::Svc { .. } | Layout::Single { .. } => 0,
        };
        // A keyframe is a switch point only if this subscriber gets it; one
        // claiming an upper layer would leave the switch without its start.
        let keyframe =
            pkt.keyframe && pkt.temporal <= target.temporal && (!svc || pkt.spatial == 0);
        let mut cur = match self.current {
            Some(c) => c,
            None if keyframe && unit <= target.spatial => {
                // SVC keyframes carry every spatial layer; simulcast starts on
                // the encoding whose keyframe came first.
                let spatial = if svc { target.spatial } else { unit };
                Layers::new(spatial, target.temporal)
            }
            None => return Decision::Drop,
        };
        if let Layout::Simulcast { .. } = self.layout {
            if unit != cur.spatial {
                if !(keyframe && between(cur.spatial, unit, target.spatial)) {
                    return Decision::Drop;
                }
                cur.spatial = unit;
            }
        }
        if keyframe {
            // Everything after a keyframe depends on it alone.
            cur.temporal = target.temporal;
            if svc {
                cur.spatial = target.spatial;
            }
        }
        // A picture is all spatial layer frames of one time instant.
        let picture_start = pkt.frame_start && (!svc || pkt.spatial == 0);
        if picture_start {
            if svc && target.spatial < cur.spatial {
                cur.spatial = target.spatial;
            }
            if target.temporal < cur.temporal {
                cur.temporal = target.temporal;
            } else if pkt.switching_point && pkt.temporal <= target.temporal {
                let reach = pkt.switch_up_to.max(pkt.temporal).min(target.temporal);
                if reach > cur.temporal {
                    cur.temporal = reach;
                }
            }
        }
        self.current = Some(cur);
        if pkt.temporal > cur.temporal || (svc && pkt.spatial > cur.spatial) {
            return Decision::Drop;
        }
        Decision::Forward {
            set_marker: pkt.marker || (svc && pkt.frame_end && pkt.spatial >= cur.spatial),
        }
    }
}

/// Whether `candidate` lies on the way from `current` (exclusive) to
/// `target` (inclusive).
fn between(current: u8, candidate: u8, target: u8) -> bool {
    use std::cmp::Ordering::*;
    match target.cmp(&current) {
        Greater => current < candidate && candidate <= target,
        Less => target <= candidate && candidate < current,
        Equal => false,
    }
}
