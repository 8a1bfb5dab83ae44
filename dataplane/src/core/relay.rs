//! The data plane's two seams for the server-to-server relay.
//!
//! * A **relay tap** on the core that owns a published track hands each
//!   published packet (decrypted, with its layer facts) to a bounded
//!   channel read by the relay task, the way `AddFanout` hands it to
//!   another core. A full channel drops the packet and counts it: the core
//!   never waits for the relay.
//! * A **relayed track** registered on one core of the downstream server
//!   stands in for a local publisher: the relay task feeds it packets
//!   ([`CoreInput::RelayedMedia`]) and it fans them out to the cores with
//!   subscribers, whose rings answer NACKs as for a local track. Keyframe
//!   requests and NACKs the rings cannot answer become [`RelayFeedback`]
//!   for the relay task to send upstream.
//! * **Wanted layers**: every [`WANTS_INTERVAL`] each core works out, per
//!   track it has video subscribers of, the highest layers they want and
//!   tells the track's owner core when that changed
//!   ([`CoreInput::RelayWants`]). The owner of a relayed track combines the
//!   cores' answers and, when the result changed, sends it upstream as
//!   [`RelayFeedback::Layers`], so the origin stops relaying layers nobody
//!   here takes.
//! * **Reports**: every [`RELAY_REPORT_INTERVAL`] each core sums up, per track,
//!   its subscribers' receiver reports (the worst loss, jitter and RTT)
//!   and the most bandwidth the allocator gives any of them for it
//!   ([`DownstreamSummary`], [`CoreInput::RelayReport`]); the owner of a
//!   relayed track combines the cores' latest and sends the result
//!   upstream as [`RelayFeedback::Report`], so the origin sees how its
//!   relayed media fares past the relay.
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::session::{Session, Subscription};
use super::{Core, CoreInput, TrackKey};
use crate::layers::Layers;
use crate::packet_pool::PacketRef;

/// How often a core works out what its subscribers of each track want.
/// Also bounds how often a relayed track's wanted layers change upstream.
pub const WANTS_INTERVAL: Duration = Duration::from_millis(100);

/// How often cores sum up their subscribers' reports per track, and how
/// often a relayed track's summary goes upstream.
pub const RELAY_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// A core's summary older than this is left out of a relayed track's
/// report (the core's subscribers left, or it stopped reporting).
const REPORT_STALE: Duration = Duration::from_secs(3);

/// What the subscribers of one track on this server report, summed up
/// for the origin: each figure is the worst subscriber's (a summary of
/// many receivers is most useful as its bad end), the bandwidth the best
/// one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DownstreamSummary {
    /// Worst fraction lost since the previous report (RFC 3550, /256).
    pub fraction_lost: u8,
    /// Largest cumulative number of packets lost.
    pub cumulative_lost: u32,
    /// Largest interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
    /// Longest round-trip time to a subscriber, if any reported one.
    pub rtt: Option<Duration>,
    /// The most bandwidth the allocator gives any subscriber for this
    /// track, bit/s; `None` where no subscriber has an estimate.
    pub bandwidth_bps: Option<u64>,
}

impl DownstreamSummary {
    /// Both summaries in one: the worse of each figure, the larger
    /// bandwidth.
    pub fn merge(self, other: Self) -> Self {
        Self {
            fraction_lost: self.fraction_lost.max(other.fraction_lost),
            cumulative_lost: self.cumulative_lost.max(other.cumulative_lost),
            jitter: self.jitter.max(other.jitter),
            rtt: self.rtt.max(other.rtt),
            bandwidth_bps: self.bandwidth_bps.max(other.bandwidth_bps),
        }
    }
}

/// What a downstream core asks of a relayed track's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFeedback {
    /// A keyframe, of one simulcast encoding or of all.
    KeyframeRequest {
        /// The encoding, or every one.
        encoding: Option<u8>,
    },
    /// A packet a subscriber NACKed that no ring here holds.
    Nack {
        /// The publisher's SSRC.
        ssrc: u32,
        /// Its sequence number.
        seq: u16,
    },
    /// The highest layers any subscriber here wants (spatial: simulcast
    /// encoding or SVC spatial id), `None` when none wants any (all
    /// paused, or none left). Sent when it changes, at most once per
    /// [`WANTS_INTERVAL`] per core's tick. A relay tap on the track (relayed
    /// on to another server) wants every layer.
    Layers {
        /// The layers wanted.
        wanted: Option<Layers>,
    },
    /// How the track fares toward the subscribers here, every
    /// [`RELAY_REPORT_INTERVAL`] while any reports.
    Report(DownstreamSummary),
}

/// The sending end of a relay tap, with its drop counter.
#[derive(Debug, Clone)]
pub struct RelayTapSender {
    /// Distinguishes taps of one track (several peers may pull it).
    pub id: u64,
    /// Where packets go.
    pub tx: mpsc::Sender<PacketRef>,
    /// Packets dropped because the relay task fell behind.
    pub dropped: Arc<AtomicU64>,
}

/// A relayed track on its owner core.
#[derive(Debug)]
struct Relayed {
    /// Cores with subscribers, with how many subscriptions each.
    fanout: Vec<(usize, u32)>,
    feedback: mpsc::Sender<RelayFeedback>,
    /// Feedback dropped because the relay task fell behind.
    dropped: Arc<AtomicU64>,
    /// What each core with subscribers wants (cores wanting nothing are
    /// left out).
    wants: Vec<(usize, Layers)>,
    /// Whether any core told what it wants: before, nothing is reported
    /// and the origin sends everything.
    started: bool,
    /// The wanted layers last sent upstream.
    reported: Option<Option<Layers>>,
    /// Each core's latest summary of its subscribers' reports, and when
    /// it came.
    reports: Vec<(usize, DownstreamSummary, Instant)>,
}

impl Relayed {
    /// What every subscriber here wants together, a tap wanting it all.
    fn wanted(&self, tapped: bool) -> Option<Layers> {
        if tapped {
            return Some(Layers::MAX);
        }
        self.wants
            .iter()
            .map(|(_, l)| *l)
            .reduce(|a, b| Layers::new(a.spatial.max(b.spatial), a.temporal.max(b.temporal)))
    }
}

/// Relay state of one core.
#[derive(Debug, Default)]
pub(super) struct RelayHooks {
    taps: HashMap<TrackKey, Vec<RelayTapSender>>,
    relayed: HashMap<TrackKey, Relayed>,
    /// What this core last told each track's owner core that its
    /// subscribers want: (owner, wanted).
    wants_told: HashMap<TrackKey, (usize, Option<Layers>)>,
    /// Scratch for the periodic scan, kept so it does not allocate.
    wants_now: HashMap<TrackKey, (usize, Option<Layers>)>,
    wants_changed: Vec<(TrackKey, usize, Option<Layers>)>,
    next_wants: Option<Instant>,
    /// Scratch for the report scan: per track, its owner core and this
    /// core's summary.
    reports_now: HashMap<TrackKey, (usize, DownstreamSummary)>,
    next_report: Option<Instant>,
}

impl RelayHooks {
    /// Hands a published packet to every tap of its track.
    pub(super) fn tap(&self, track: TrackKey, packet: &PacketRef) {
        let Some(taps) = self.taps.get(&track) else {
            return;
        };
        for t in taps {
            if t.tx.try_send(packet.clone()).is_err() {
                t.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The track stopped being published here: dropping its taps' senders
    /// ends their channels, which tells the relay task.
    pub(super) fn track_removed(&mut self, track: TrackKey) {
        self.taps.remove(&track);
    }

    /// `AddFanout` for a track not published by a local session.
    pub(super) fn add_fanout(&mut self, track: TrackKey, core: usize) {
        if let Some(r) = self.relayed.get_mut(&track) {
            match r.fanout.iter_mut().find(|(c, _)| *c == core) {
                Some((_, n)) => *n += 1,
                None => r.fanout.push((core, 1)),
            }
        }
    }

    /// `RemoveFanout` for a track not published by a local session.
    pub(super) fn remove_fanout(&mut self, track: TrackKey, core: usize) {
        if let Some(r) = self.relayed.get_mut(&track) {
            if let Some(pos) = r.fanout.iter().position(|(c, _)| *c == core) {
                r.fanout[pos].1 -= 1;
                if r.fanout[pos].1 == 0 {
                    r.fanout.swap_remove(pos);
                }
            }
        }
    }

    /// A core's subscribers of `track` want `wanted` now.
    fn on_wants(&mut self, track: TrackKey, core: usize, wanted: Option<Layers>) {
        let Some(r) = self.relayed.get_mut(&track) else {
            return;
        };
        r.wants.retain(|(c, _)| *c != core);
        if let Some(l) = wanted {
            r.wants.push((core, l));
        }
        // The first word from any core starts the reporting.
        r.started = true;
        self.report_wants(track);
    }

    /// Sends a relayed track's wanted layers upstream if they changed since
    /// last sent. A full feedback channel leaves it for the next scan.
    fn report_wants(&mut self, track: TrackKey) {
        let tapped = self.taps.contains_key(&track);
        let Some(r) = self.relayed.get_mut(&track) else {
            return;
        };
        let wanted = r.wanted(tapped);
        if !r.started || r.reported == Some(wanted) {
            return;
        }
        if r.feedback
            .try_send(RelayFeedback::Layers { wanted })
            .is_ok()
        {
            r.reported = Some(wanted);
        }
    }

    /// A core's subscribers of `track` report `summary`.
    fn on_report(
        &mut self,
        now: Instant,
        track: TrackKey,
        core: usize,
        summary: DownstreamSummary,
    ) {
        let Some(r) = self.relayed.get_mut(&track) else {
            return;
        };
        match r.reports.iter_mut().find(|(c, ..)| *c == core) {
            Some(slot) => *slot = (core, summary, now),
            None => r.reports.push((core, summary, now)),
        }
    }

    /// Sends each relayed track's combined report upstream, leaving out
    /// cores that stopped reporting. A full channel skips a report: the
    /// next one follows in a second.
    fn send_reports(&mut self, now: Instant) {
        for r in self.relayed.values_mut() {
            r.reports
                .retain(|(_, _, at)| now.saturating_duration_since(*at) < REPORT_STALE);
            let Some(summary) = r
                .reports
                .iter()
                .map(|(_, s, _)| *s)
                .reduce(DownstreamSummary::merge)
            else {
                continue;
            };
            if r.feedback.try_send(RelayFeedback::Report(summary)).is_err() {
                r.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Sends feedback upstream if `track` is relayed here; `false` if not.
    pub(super) fn feedback(&self, track: TrackKey, feedback: RelayFeedback) -> bool {
        let Some(r) = self.relayed.get(&track) else {
            return false;
        };
        if r.feedback.try_send(feedback).is_err() {
            r.dropped.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

/// Every subscription of the core's live sessions with its track: what the
/// periodic relay summaries (wanted layers, downstream reports) walk.
fn live_subscriptions(
    sessions: &[Option<Session>],
) -> impl Iterator<Item = (&TrackKey, &Subscription)> {
    sessions
        .iter()
        .flatten()
        .filter(|s| !s.dead)
        .flat_map(|s| s.subs.iter().map(|(track, sub)| (track, &**sub)))
}

impl Core {
    /// The relay commands of [`CoreInput`].
    pub(super) fn handle_relay_input(&mut self, now: Instant, input: CoreInput) {
        match input {
            CoreInput::AddRelayTap { track, tap } => {
                self.relay.taps.entry(track).or_default().push(tap);
                self.relay.report_wants(track);
            }
            CoreInput::RemoveRelayTap { track, tap } => {
                if let Some(list) = self.relay.taps.get_mut(&track) {
                    list.retain(|t| t.id != tap);
                    if list.is_empty() {
                        self.relay.taps.remove(&track);
                    }
                }
                self.relay.report_wants(track);
            }
            CoreInput::RelayWants {
                track,
                core,
                wanted,
            } => self.relay.on_wants(track, core, wanted),
            CoreInput::RelayReport {
                track,
                core,
                summary,
            } => self.relay.on_report(now, track, core, summary),
            CoreInput::AddRelayedTrack {
                track,
                feedback,
                dropped,
            } => {
                self.relay.relayed.insert(
                    track,
                    Relayed {
                        fanout: Vec::new(),
                        feedback,
                        dropped,
                        wants: Vec::new(),
                        started: false,
                        reported: None,
                        reports: Vec::new(),
                    },
                );
            }
            CoreInput::RemoveRelayedTrack { track } => {
                self.relay.relayed.remove(&track);
                self.relay.track_removed(track);
            }
            CoreInput::RelayedMedia { track, packet } => self.relayed_media(now, track, &packet),
            CoreInput::RelayedMediaBatch { track, packets } => {
                for packet in &packets {
                    self.relayed_media(now, track, packet);
                }
            }
            CoreInput::RelayNackMiss { track, ssrc, seq } => {
                self.relay
                    .feedback(track, RelayFeedback::Nack { ssrc, seq });
            }
            _ => {}
        }
    }

    /// Every [`WANTS_INTERVAL`]: tells each track's owner core what this
    /// core's video subscribers want of it, when that changed. Allocates
    /// nothing once the set of tracks is stable (the maps keep their room).
    pub(super) fn relay_wants(&mut self, now: Instant) {
        if self.relay.next_wants.is_some_and(|t| now < t) {
            return;
        }
        self.relay.next_wants = Some(now + WANTS_INTERVAL);
        let hooks = &mut self.relay;
        hooks.wants_now.clear();
        for (track, sub) in live_subscriptions(&self.sessions) {
            let Some(v) = &sub.video else { continue };
            let wanted = (!v.paused).then(|| v.selector.wanted());
            hooks
                .wants_now
                .entry(*track)
                .and_modify(|(_, w)| {
                    *w = match (*w, wanted) {
                        (Some(a), Some(b)) => Some(Layers::new(
                            a.spatial.max(b.spatial),
                            a.temporal.max(b.temporal),
                        )),
                        (a, b) => a.or(b),
                    }
                })
                .or_insert((sub.owner_core, wanted));
        }
        hooks.wants_changed.clear();
        for (track, told) in &hooks.wants_now {
            if hooks.wants_told.get(track) != Some(told) {
                hooks.wants_changed.push((*track, told.0, told.1));
            }
        }
        // Tracks with no subscriber here any more: withdrawn.
        for (track, (owner, _)) in &hooks.wants_told {
            if !hooks.wants_now.contains_key(track) {
                hooks.wants_changed.push((*track, *owner, None));
            }
        }
        hooks
            .wants_told
            .retain(|track, _| hooks.wants_now.contains_key(track));
        for (track, told) in &hooks.wants_now {
            hooks.wants_told.insert(*track, *told);
        }
        for i in 0..hooks.wants_changed.len() {
            let (track, owner, wanted) = hooks.wants_changed[i];
            if owner == self.index {
                hooks.on_wants(track, self.index, wanted);
            } else {
                self.cross.push_back((
                    owner,
                    CoreInput::RelayWants {
                        track,
                        core: self.index,
                        wanted,
                    },
                ));
            }
        }
        // Reports a full channel held back.
        hooks.wants_changed.clear();
        hooks
            .wants_changed
            .extend(hooks.relayed.keys().map(|t| (*t, 0, None)));
        for i in 0..hooks.wants_changed.len() {
            let track = hooks.wants_changed[i].0;
            hooks.report_wants(track);
        }
    }

    /// Every [`RELAY_REPORT_INTERVAL`]: sums up this core's subscribers' reports
    /// per track for the track's owner core, then sends the relayed tracks
    /// this core owns upstream. Allocates nothing once the set of tracks
    /// is stable.
    pub(super) fn relay_reports(&mut self, now: Instant) {
        if self.relay.next_report.is_some_and(|t| now < t) {
            return;
        }
        self.relay.next_report = Some(now + RELAY_REPORT_INTERVAL);
        let hooks = &mut self.relay;
        hooks.reports_now.clear();
        for (track, sub) in live_subscriptions(&self.sessions) {
            if sub.report.is_none() && sub.allocated_bps.is_none() {
                continue;
            }
            let mine = DownstreamSummary {
                rtt: sub.rtt,
                bandwidth_bps: sub.allocated_bps,
                ..sub.report.unwrap_or_default()
            };
            hooks
                .reports_now
                .entry(*track)
                .and_modify(|(_, s)| *s = s.merge(mine))
                .or_insert((sub.owner_core, mine));
        }
        // Taken out of `hooks` for the walk, which stores the own entries
        // in it; put back after, so the map keeps its room.
        let reports = std::mem::take(&mut hooks.reports_now);
        for (&track, &(owner, summary)) in &reports {
            if owner == self.index {
                hooks.on_report(now, track, self.index, summary);
            } else {
                self.cross.push_back((
                    owner,
                    CoreInput::RelayReport {
                        track,
                        core: self.index,
                        summary,
                    },
                ));
            }
        }
        hooks.reports_now = reports;
        hooks.send_reports(now);
    }

    /// A packet of a relayed track, from the relay task: to every core with
    /// subscribers, as `handle_rtp` does for a local publisher's packet.
    fn relayed_media(&mut self, now: Instant, track: TrackKey, packet: &PacketRef) {
        let Some(r) = self.relay.relayed.get(&track) else {
            return;
        };
        // A relayed track may be relayed on again (origin → B → C).
        self.relay.tap(track, packet);
        let mut local = false;
        for &(core, _) in &r.fanout {
            if core == self.index {
                local = true;
            } else {
                self.counters.cross_core_sent.inc();
                self.cross.push_back((
                    core,
                    CoreInput::Media {
                        track,
                        packet: packet.clone(),
                    },
                ));
            }
        }
        if local {
            self.deliver_local(now, track, packet);
        }
    }
}

/// A subscriber's NACK found nothing in its core's ring: if the track is
/// relayed, its owner core asks the origin. A free function because the
/// caller holds a borrow of the subscriber's session.
#[allow(clippy::too_many_arguments)]
pub(super) fn nack_miss(
    hooks: &RelayHooks,
    cross: &mut VecDeque<(usize, CoreInput)>,
    published_here: bool,
    index: usize,
    track: TrackKey,
    owner: usize,
    ssrc: u32,
    seq: u16,
) {
    if owner != index {
        cross.push_back((owner, CoreInput::RelayNackMiss { track, ssrc, seq }));
    } else if !published_here {
        hooks.feedback(track, RelayFeedback::Nack { ssrc, seq });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::CoreCounters;
    use crate::packet::{LayerFacts, MediaPacket};
    use std::time::Duration;

    fn packet(seq: u16) -> PacketRef {
        PacketRef::from(MediaPacket {
            data: vec![0x80, 96, 0, seq as u8, 0, 0, 0, 0, 0, 0, 0, 7, 1],
            payload_offset: 12,
            payload_len: 1,
            seq,
            timestamp: 0,
            ssrc: 7,
            marker: false,
            keyframe: false,
            layers: LayerFacts::default(),
            sender_report: None,
        })
    }

    fn core(now: Instant) -> Core {
        Core::new(
            0,
            Duration::from_secs(30),
            Arc::new(CoreCounters::default()),
            now,
        )
    }

    #[test]
    fn a_relayed_track_fans_out_and_sends_feedback_upstream() {
        let now = Instant::now();
        let mut c = core(now);
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        c.handle_input(
            now,
            CoreInput::AddRelayedTrack {
                track: 5,
                feedback: tx,
                dropped: dropped.clone(),
            },
        );
        // Subscribers on core 1 (twice) and core 2.
        for core in [1, 1, 2] {
            c.handle_input(now, CoreInput::AddFanout { track: 5, core });
        }
        c.handle_input(
            now,
            CoreInput::RelayedMedia {
                track: 5,
                packet: packet(1),
            },
        );
        let mut to: Vec<usize> = std::iter::from_fn(|| c.poll_cross_core())
            .map(|(core, input)| {
                assert!(matches!(input, CoreInput::Media { track: 5, .. }));
                core
            })
            .collect();
        to.sort_unstable();
        assert_eq!(to, vec![1, 2], "one copy per subscribing core");
        // One of core 1's two subscriptions ends: it still gets packets.
        c.handle_input(now, CoreInput::RemoveFanout { track: 5, core: 1 });
        c.handle_input(now, CoreInput::RemoveFanout { track: 5, core: 2 });
        c.handle_input(
            now,
            CoreInput::RelayedMedia {
                track: 5,
                packet: packet(2),
            },
        );
        assert!(matches!(c.poll_cross_core(), Some((1, _))));
        assert!(c.poll_cross_core().is_none());

        // A keyframe request for the track (from any core) goes upstream,
        // as do NACK misses.
        c.handle_input(
            now,
            CoreInput::EncodingKeyframeRequest {
                track: 5,
                encoding: 1,
            },
        );
        c.handle_input(
            now,
            CoreInput::RelayNackMiss {
                track: 5,
                ssrc: 7,
                seq: 9,
            },
        );
        assert_eq!(
            rx.try_recv(),
            Ok(RelayFeedback::KeyframeRequest { encoding: Some(1) })
        );
        assert_eq!(rx.try_recv(), Ok(RelayFeedback::Nack { ssrc: 7, seq: 9 }));
        // A full feedback channel drops and counts; the core never waits.
        for _ in 0..3 {
            c.handle_input(now, CoreInput::KeyframeRequest { track: 5 });
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        while rx.try_recv().is_ok() {}

        // The track ends: its feedback channel closes and packets stop.
        c.handle_input(now, CoreInput::RemoveRelayedTrack { track: 5 });
        assert_eq!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
        c.handle_input(
            now,
            CoreInput::RelayedMedia {
                track: 5,
                packet: packet(3),
            },
        );
        assert!(c.poll_cross_core().is_none());
    }

    /// Relayed track 5 on `c`, and the receiver of its upstream feedback.
    fn relayed_track(c: &mut Core, now: Instant) -> mpsc::Receiver<RelayFeedback> {
        let (tx, rx) = mpsc::channel(8);
        c.handle_input(
            now,
            CoreInput::AddRelayedTrack {
                track: 5,
                feedback: tx,
                dropped: Arc::default(),
            },
        );
        rx
    }

    /// Relay tap 1 on track 5 (relaying on to another server); keep the
    /// receiver alive while the tap should be.
    fn add_tap(c: &mut Core, now: Instant) -> mpsc::Receiver<PacketRef> {
        let (tap, rx) = mpsc::channel(1);
        c.handle_input(
            now,
            CoreInput::AddRelayTap {
                track: 5,
                tap: RelayTapSender {
                    id: 1,
                    tx: tap,
                    dropped: Arc::default(),
                },
            },
        );
        rx
    }

    #[test]
    fn the_owner_combines_the_cores_wanted_layers_and_reports_changes_only() {
        let now = Instant::now();
        let mut c = core(now);
        let mut rx = relayed_track(&mut c, now);
        let mut wants = |c: &mut Core, core: usize, wanted: Option<(u8, u8)>| {
            c.handle_input(
                now,
                CoreInput::RelayWants {
                    track: 5,
                    core,
                    wanted: wanted.map(|(s, t)| Layers::new(s, t)),
                },
            );
            let mut got = Vec::new();
            while let Ok(RelayFeedback::Layers { wanted }) = rx.try_recv() {
                got.push(wanted.map(|l| (l.spatial, l.temporal)));
            }
            got
        };
        assert_eq!(wants(&mut c, 1, Some((0, 2))), vec![Some((0, 2))]);
        assert_eq!(wants(&mut c, 2, Some((2, 1))), vec![Some((2, 2))]);
        // No change, no report.
        assert_eq!(wants(&mut c, 1, Some((0, 2))), vec![]);
        assert_eq!(wants(&mut c, 1, Some((1, 2))), vec![]);
        assert_eq!(wants(&mut c, 2, None), vec![Some((1, 2))]);
        // Every core's subscribers paused or gone: nothing wanted.
        assert_eq!(wants(&mut c, 1, None), vec![None]);
        // A tap (relaying on to another server) wants everything.
        let _tap_rx = add_tap(&mut c, now);
        assert_eq!(
            rx.try_recv(),
            Ok(RelayFeedback::Layers {
                wanted: Some(Layers::MAX)
            })
        );
        c.handle_input(now, CoreInput::RemoveRelayTap { track: 5, tap: 1 });
        assert_eq!(rx.try_recv(), Ok(RelayFeedback::Layers { wanted: None }));
    }

    #[test]
    fn the_owner_sends_the_cores_reports_combined_every_second_leaving_out_stale_ones() {
        let start = Instant::now();
        let mut c = core(start);
        let mut rx = relayed_track(&mut c, start);
        // Past the core's first tick.
        let t0 = start + Duration::from_millis(100);
        let report = |c: &mut Core, now: Instant, core: usize, summary: DownstreamSummary| {
            c.handle_input(
                now,
                CoreInput::RelayReport {
                    track: 5,
                    core,
                    summary,
                },
            );
        };
        let lossy = DownstreamSummary {
            fraction_lost: 26,
            cumulative_lost: 5,
            jitter: 900,
            rtt: Some(Duration::from_millis(80)),
            bandwidth_bps: Some(300_000),
        };
        let fast = DownstreamSummary {
            fraction_lost: 0,
            cumulative_lost: 40,
            jitter: 90,
            rtt: None,
            bandwidth_bps: Some(2_500_000),
        };
        report(&mut c, t0, 1, lossy);
        report(&mut c, t0, 2, fast);
        c.handle_timeout(t0);
        assert_eq!(
            rx.try_recv(),
            Ok(RelayFeedback::Report(DownstreamSummary {
                fraction_lost: 26,
                cumulative_lost: 40,
                jitter: 900,
                rtt: Some(Duration::from_millis(80)),
                bandwidth_bps: Some(2_500_000),
            })),
            "the worst of each figure, the best bandwidth"
        );
        assert!(rx.try_recv().is_err(), "one report per interval");
        c.handle_timeout(t0 + Duration::from_millis(500));
        assert!(rx.try_recv().is_err(), "not before the interval");
        // Core 1 stops reporting; core 2 goes on.
        report(&mut c, t0 + Duration::from_secs(2), 2, fast);
        c.handle_timeout(t0 + Duration::from_millis(3_500));
        assert_eq!(rx.try_recv(), Ok(RelayFeedback::Report(fast)));
        // Nobody reports any more: nothing goes upstream.
        c.handle_timeout(t0 + Duration::from_secs(10));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn no_report_before_any_core_tells() {
        let now = Instant::now();
        let mut c = core(now);
        let mut rx = relayed_track(&mut c, now);
        let _tap_rx = add_tap(&mut c, now);
        c.handle_timeout(now + Duration::from_secs(1));
        // Without a word from any core the origin keeps sending everything.
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn taps_get_packets_drop_when_full_and_end_with_the_track() {
        let now = Instant::now();
        let mut c = core(now);
        let (fb, _fb_rx) = mpsc::channel(1);
        c.handle_input(
            now,
            CoreInput::AddRelayedTrack {
                track: 5,
                feedback: fb,
                dropped: Arc::default(),
            },
        );
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        c.handle_input(
            now,
            CoreInput::AddRelayTap {
                track: 5,
                tap: RelayTapSender {
                    id: 1,
                    tx,
                    dropped: dropped.clone(),
                },
            },
        );
        for seq in 0..3 {
            c.handle_input(
                now,
                CoreInput::RelayedMedia {
                    track: 5,
                    packet: packet(seq),
                },
            );
        }
        assert_eq!(rx.try_recv().map(|p| p.seq), Ok(0));
        assert_eq!(rx.try_recv().map(|p| p.seq), Ok(1));
        assert!(rx.try_recv().is_err());
        assert_eq!(dropped.load(Ordering::Relaxed), 1, "the third was dropped");
        c.handle_input(now, CoreInput::RemoveRelayedTrack { track: 5 });
        assert_eq!(
            rx.try_recv().map(|p| p.seq),
            Err(mpsc::error::TryRecvError::Disconnected),
            "the tap's channel ends with the track"
        );
    }
}
