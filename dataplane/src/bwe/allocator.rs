//! The per-transport allocator: shares a bandwidth estimate among the
//! tracks of one subscribe transport and picks each video track's target
//! layer.
//!
//! Audio is reserved first and always kept. Video is served in rounds, in
//! descending priority: each round every video track may step up one layer
//! per point of priority (a priority-3 track climbs three layers for a
//! priority-1 track's one), as long as the step fits in what is left and
//! does not pass the track's preferred layer. A track whose lowest layer
//! does not fit is paused.
//!
//! Results are sticky: climbing above the layer a track had after the
//! previous call needs [`UP_HEADROOM`] spare on top of the new layer's
//! rate, so an estimate wobbling around a layer boundary does not make the
//! track flip back and forth. Going down needs no margin.
//!
//! Results are also slow to retry: after a track goes down it may not
//! climb again for [`UP_HOLD_MIN`], and if it goes down within
//! [`FAILED_UP_WINDOW`] of its last climb (the climb did not hold) the
//! hold doubles, up to [`UP_HOLD_MAX`]. On a link just big enough for a
//! layer, a climb's keyframe burst is often what tips the estimate back
//! down; without the hold the track flaps between two encodings every
//! second or so, each switch a keyframe request to the publisher and a
//! stall while the decoder waits for it.
use std::cmp::Reverse;
use std::time::{Duration, Instant};

/// Climbing above the previous layer needs this fraction of the new
/// layer's rate spare.
pub const UP_HEADROOM: f64 = 0.10;

/// A track that went down waits at least this long before climbing.
pub const UP_HOLD_MIN: Duration = Duration::from_secs(1);

/// The longest a track waits to climb after climbs that did not hold.
pub const UP_HOLD_MAX: Duration = Duration::from_secs(8);

/// Going down this soon after a climb counts the climb as failed and
/// doubles the hold.
pub const FAILED_UP_WINDOW: Duration = Duration::from_secs(4);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// Always forwarded; its rate is reserved first.
    Audio,
    /// Gets a layer from what the audio leaves.
    Video,
}

/// One layer a track can be forwarded at and the rate it then takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerRate {
    /// The spatial layer (simulcast encoding or SVC spatial id).
    pub spatial: u8,
    /// The temporal layer.
    pub temporal: u8,
    /// The whole stream's rate when forwarding this layer (it includes the
    /// lower temporal layers it depends on), bit/s.
    pub bps: u64,
}

/// What one track of the transport could use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackDemand<'a> {
    /// The caller's name for the track; echoed in the result.
    pub id: u64,
    /// Audio or video.
    pub kind: TrackKind,
    /// Weight among video tracks: layers climbed per round (0 counts as 1).
    pub priority: u8,
    /// The available layers, in ascending order of rate.
    pub layers: &'a [LayerRate],
    /// The highest layer the subscriber wants (spatial, temporal).
    pub preferred: (u8, u8),
}

/// Shares an estimate among a transport's tracks, remembering the last
/// result for hysteresis.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    previous: Vec<History>,
    allocated_bps: u64,
    desired_bps: u64,
}

/// What the allocator remembers of one track between calls.
#[derive(Debug, Clone, Copy)]
struct History {
    id: u64,
    /// The layer of the last call; `None` when paused.
    layer: Option<(u8, u8)>,
    /// When the track last climbed.
    went_up_at: Option<Instant>,
    /// The hold the next down-switch starts from.
    hold: Duration,
    /// No climbing before this.
    hold_until: Option<Instant>,
}

impl Allocator {
    /// An allocator with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks a layer per track for `estimate_bps` at `now`, in the order
    /// of `tracks`: `Some((spatial, temporal))`, or `None` for a paused
    /// video track (resuming it needs a keyframe).
    pub fn allocate(
        &mut self,
        now: Instant,
        estimate_bps: u64,
        tracks: &[TrackDemand<'_>],
    ) -> Vec<(u64, Option<(u8, u8)>)> {
        let mut budget = estimate_bps;
        // Per track: index of the chosen layer among its eligible layers.
        let mut chosen: Vec<Option<usize>> = vec![None; tracks.len()];
        let mut desired = 0u64;
        for (i, t) in tracks.iter().enumerate() {
            let top = eligible(t).last().map_or(0, |l| l.bps);
            // A video track climbs only with UP_HEADROOM spare: the
            // estimator must probe for that much, not stop just short.
            let wanted = match t.kind {
                TrackKind::Audio => top,
                TrackKind::Video => top + (top as f64 * UP_HEADROOM) as u64,
            };
            desired = desired.saturating_add(wanted);
            if t.kind == TrackKind::Audio {
                budget = budget.saturating_sub(top);
                chosen[i] = eligible(t).count().checked_sub(1);
            }
        }
        let mut order: Vec<usize> = (0..tracks.len())
            .filter(|&i| tracks[i].kind == TrackKind::Video)
            .collect();
        order.sort_by_key(|&i| Reverse(tracks[i].priority));
        loop {
            let mut stepped = false;
            for &i in &order {
                let t = &tracks[i];
                let previous = self.previous_index(t);
                let held = self
                    .history(t.id)
                    .and_then(|h| h.hold_until)
                    .is_some_and(|until| now < until);
                for _ in 0..t.priority.max(1) {
                    let next = chosen[i].map_or(0, |c| c + 1);
                    let Some(layer) = eligible(t).nth(next) else {
                        break;
                    };
                    let current = chosen[i].map_or(0, |c| rate(t, c));
                    let cost = layer.bps.saturating_sub(current);
                    let above_previous = previous.is_some_and(|p| p.is_none_or(|p| next > p));
                    let margin = if above_previous {
                        (layer.bps as f64 * UP_HEADROOM) as u64
                    } else {
                        0
                    };
                    if (above_previous && held) || cost.saturating_add(margin) > budget {
                        break;
                    }
                    budget -= cost;
                    chosen[i] = Some(next);
                    stepped = true;
                }
            }
            if !stepped {
                break;
            }
        }
        let result: Vec<(u64, Option<(u8, u8)>)> = tracks
            .iter()
            .zip(&chosen)
            .map(|(t, c)| {
                let layer = match (t.kind, c) {
                    (_, Some(c)) => eligible(t).nth(*c).map(|l| (l.spatial, l.temporal)),
                    // Audio without a matching layer is still kept.
                    (TrackKind::Audio, None) => Some(t.preferred),
                    (TrackKind::Video, None) => None,
                };
                (t.id, layer)
            })
            .collect();
        self.allocated_bps = tracks
            .iter()
            .zip(&chosen)
            .filter_map(|(t, c)| c.map(|c| rate(t, c)))
            .sum();
        self.desired_bps = desired;
        // A track with no layer to give (none measured yet) was not paused:
        // it stays new, so its first layer needs no climbing margin.
        let history: Vec<History> = tracks
            .iter()
            .zip(&chosen)
            .zip(&result)
            .filter(|((t, _), _)| eligible(t).next().is_some())
            .map(|((t, c), &(id, layer))| self.remember(now, t, *c, id, layer))
            .collect();
        self.previous = history;
        result
    }

    /// The history of track `id` after this call, which chose index
    /// `chosen` among its eligible layers (`None`: paused).
    fn remember(
        &self,
        now: Instant,
        t: &TrackDemand<'_>,
        chosen: Option<usize>,
        id: u64,
        layer: Option<(u8, u8)>,
    ) -> History {
        let mut h = self.history(id).copied().unwrap_or(History {
            id,
            layer,
            went_up_at: None,
            hold: UP_HOLD_MIN,
            hold_until: None,
        });
        h.layer = layer;
        match self.previous_index(t) {
            Some(previous) if chosen < previous => {
                let failed = h
                    .went_up_at
                    .is_some_and(|up| now.saturating_duration_since(up) < FAILED_UP_WINDOW);
                let hold = if failed {
                    (h.hold * 2).min(UP_HOLD_MAX)
                } else {
                    UP_HOLD_MIN
                };
                h.hold = hold;
                h.hold_until = Some(now + hold);
            }
            Some(previous) if chosen > previous => h.went_up_at = Some(now),
            _ => {}
        }
        h
    }

    fn history(&self, id: u64) -> Option<&History> {
        self.previous.iter().find(|h| h.id == id)
    }

    /// Where the track was after the previous call, as an index among its
    /// eligible layers: `None` if it is new, `Some(None)` if it was paused.
    fn previous_index(&self, t: &TrackDemand<'_>) -> Option<Option<usize>> {
        let layer = self.history(t.id)?.layer;
        match layer {
            None => Some(None),
            // A layer no longer offered (the preference or the layers
            // changed): no history to be sticky to.
            Some((s, tl)) => eligible(t)
                .position(|l| (l.spatial, l.temporal) == (s, tl))
                .map(Some),
        }
    }

    /// What `tracks` need at their current rates to keep the layers the
    /// last call gave them (a new or paused track: its lowest layer),
    /// bit/s: the least an estimate must be for no track to go down or be
    /// paused. Given as the estimate while that is only the initial guess
    /// ([`BandwidthEstimator::is_initial_guess`](super::BandwidthEstimator::is_initial_guess)).
    pub fn held_bps(&self, tracks: &[TrackDemand<'_>]) -> u64 {
        tracks
            .iter()
            .map(|t| match self.previous_index(t) {
                Some(Some(i)) => rate(t, i),
                _ => eligible(t).next().map_or(0, |l| l.bps),
            })
            .sum()
    }

    /// The rate the last allocation hands out, bit/s (audio included, so it
    /// may exceed a very low estimate).
    pub fn allocated_bps(&self) -> u64 {
        self.allocated_bps
    }

    /// What the tracks of the last allocation would take at their preferred
    /// layers, bit/s: what the estimator may probe for
    /// ([`BandwidthEstimator::set_desired_bps`](super::BandwidthEstimator::set_desired_bps)).
    pub fn desired_bps(&self) -> u64 {
        self.desired_bps
    }
}

/// The layers a track may be given: those not above its preferred layer.
fn eligible<'a>(t: &TrackDemand<'a>) -> impl Iterator<Item = &'a LayerRate> {
    let (s, tl) = t.preferred;
    t.layers
        .iter()
        .filter(move |l| l.spatial <= s && l.temporal <= tl)
}

fn rate(t: &TrackDemand<'_>, index: usize) -> u64 {
    eligible(t).nth(index).map_or(0, |l| l.bps)
}

/// Trims a video track's measured layers before allocation: keeps its
/// lowest spatial layer at every frame rate but the
/// higher ones only at their full rate (their top measured temporal layer,
/// or the preferred one if lower): by rate alone, 720p at a quarter of the
/// frames can undercut 360p at all of them, and a subscriber short of
/// bandwidth is better served by fewer pixels than by a slideshow.
pub fn full_frame_rate_above_lowest(layers: &mut Vec<LayerRate>, preferred_temporal: u8) {
    let Some(lowest) = layers.iter().map(|l| l.spatial).min() else {
        return;
    };
    let mut top = [0u8; 8];
    for l in layers.iter() {
        let slot = &mut top[usize::from(l.spatial).min(7)];
        *slot = (*slot).max(l.temporal);
    }
    layers.retain(|l| {
        l.spatial == lowest
            || l.temporal == top[usize::from(l.spatial).min(7)].min(preferred_temporal)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIO: &[LayerRate] = &[LayerRate {
        spatial: 0,
        temporal: 0,
        bps: 50_000,
    }];
    /// Three simulcast encodings of three temporal layers each; the rate is
    /// the encoding's, with every temporal layer.
    const VIDEO: &[LayerRate] = &[
        LayerRate {
            spatial: 0,
            temporal: 2,
            bps: 150_000,
        },
        LayerRate {
            spatial: 1,
            temporal: 2,
            bps: 500_000,
        },
        LayerRate {
            spatial: 2,
            temporal: 2,
            bps: 1_500_000,
        },
    ];
    const SVC: &[LayerRate] = &[
        LayerRate {
            spatial: 0,
            temporal: 0,
            bps: 100_000,
        },
        LayerRate {
            spatial: 0,
            temporal: 1,
            bps: 150_000,
        },
        LayerRate {
            spatial: 1,
            temporal: 0,
            bps: 300_000,
        },
        LayerRate {
            spatial: 1,
            temporal: 1,
            bps: 450_000,
        },
    ];

    fn audio(id: u64) -> TrackDemand<'static> {
        TrackDemand {
            id,
            kind: TrackKind::Audio,
            priority: 1,
            layers: AUDIO,
            preferred: (0, 0),
        }
    }

    fn video(id: u64, priority: u8) -> TrackDemand<'static> {
        TrackDemand {
            id,
            kind: TrackKind::Video,
            priority,
            layers: VIDEO,
            preferred: (2, 2),
        }
    }

    /// A track's result: its layer, or paused.
    type Layer = Option<(u8, u8)>;
    /// (case, estimate, tracks, expected layers).
    type Case = (&'static str, u64, Vec<TrackDemand<'static>>, Vec<Layer>);

    const L0: Option<(u8, u8)> = Some((0, 2));
    const L1: Option<(u8, u8)> = Some((1, 2));
    const L2: Option<(u8, u8)> = Some((2, 2));
    const MIC: Option<(u8, u8)> = Some((0, 0));

    /// Fresh allocations: (case, estimate, tracks, expected layers).
    #[test]
    fn table() {
        let preferring_mid = TrackDemand {
            preferred: (1, 2),
            ..video(2, 1)
        };
        let svc = TrackDemand {
            layers: SVC,
            preferred: (1, 0),
            ..video(2, 1)
        };
        let cases: &[Case] = &[
            (
                "nothing: audio kept, video paused",
                0,
                vec![audio(1), video(2, 1)],
                vec![MIC, None],
            ),
            (
                "audio first, the rest too little",
                100_000,
                vec![video(2, 1), audio(1)],
                vec![None, MIC],
            ),
            (
                "lowest layer",
                250_000,
                vec![audio(1), video(2, 1)],
                vec![MIC, L0],
            ),
            (
                "middle layer",
                600_000,
                vec![audio(1), video(2, 1)],
                vec![MIC, L1],
            ),
            (
                "everything",
                2_000_000,
                vec![audio(1), video(2, 1)],
                vec![MIC, L2],
            ),
            (
                "never above preferred",
                5_000_000,
                vec![audio(1), preferring_mid],
                vec![MIC, L1],
            ),
            (
                "temporal preference filters",
                5_000_000,
                vec![svc],
                vec![Some((1, 0))],
            ),
            // 900 kbit/s for video. Priority 2 climbs two layers per round.
            (
                "priority first",
                950_000,
                vec![video(3, 1), video(2, 2), audio(1)],
                vec![L0, L1, MIC],
            ),
            (
                "equal priority: input order",
                950_000,
                vec![video(3, 1), video(2, 1)],
                vec![L1, L0],
            ),
            (
                "low priority paused",
                650_000,
                vec![video(3, 1), video(2, 2), audio(1)],
                vec![None, L1, MIC],
            ),
            (
                "two audio tracks",
                90_000,
                vec![audio(1), audio(4)],
                vec![MIC, MIC],
            ),
        ];
        for (case, estimate, tracks, expected) in cases {
            let got = Allocator::new().allocate(Instant::now(), *estimate, tracks);
            let ids: Vec<u64> = tracks.iter().map(|t| t.id).collect();
            assert_eq!(
                got.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                ids,
                "{case}"
            );
            let layers: Vec<_> = got.into_iter().map(|(_, l)| l).collect();
            assert_eq!(&layers, expected, "{case}");
        }
    }

    /// A sequence of estimates through one allocator, one call a second
    /// apart: (estimate, expected video layer, why).
    #[test]
    fn hysteresis_and_resume() {
        let steps: &[(u64, Layer, &str)] = &[
            (600_000, L1, "550 kbit/s needed"),
            (540_000, L0, "down at once"),
            (560_000, L0, "up needs 10 % of 500 kbit/s spare"),
            (599_000, L0, "still short of 600"),
            (600_000, L1, "up with the margin"),
            (560_000, L1, "staying needs no margin"),
            (100_000, None, "paused"),
            (210_000, None, "resuming needs 165 kbit/s for video"),
            (215_000, L0, "resumed"),
            (0, None, "paused again"),
        ];
        let t0 = Instant::now();
        let mut a = Allocator::new();
        for (i, (estimate, expected, why)) in steps.iter().enumerate() {
            let now = t0 + Duration::from_secs(i as u64);
            let got = a.allocate(now, *estimate, &[audio(1), video(2, 1)]);
            assert_eq!(got, vec![(1, MIC), (2, *expected)], "{estimate}: {why}");
        }
        // The top layer with its climbing margin, and the audio.
        assert_eq!(a.desired_bps(), 1_700_000);
        assert_eq!(
            a.allocated_bps(),
            50_000,
            "audio is kept beyond the estimate"
        );
        a.allocate(
            t0 + Duration::from_secs(20),
            600_000,
            &[audio(1), video(2, 1)],
        );
        assert_eq!(a.allocated_bps(), 550_000, "both steps up had their margin");
    }

    /// An estimate that dips after every climb (a climb's keyframe burst
    /// on a link just big enough): the track retries after 1 s, then 2, 4
    /// and 8 s, instead of flapping at the estimate's pace.
    #[test]
    fn climbs_that_do_not_hold_are_retried_ever_later() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let tracks = [audio(1), video(2, 1)];
        let mut a = Allocator::new();
        assert_eq!(a.allocate(at(0), 600_000, &tracks)[1], (2, L1));
        // Each 200 ms the estimate dips below the middle layer whenever
        // the track is on it and is back above it otherwise.
        let mut climbs = Vec::new();
        let mut on_middle = true;
        for step in 1..150u64 {
            let estimate = if on_middle { 540_000 } else { 600_000 };
            let got = a.allocate(at(step * 200), estimate, &tracks)[1].1;
            if got == L1 && !on_middle {
                climbs.push(step * 200);
            }
            on_middle = got == L1;
        }
        // Down at 200 ms; held 1 s, 2 s, 4 s, then 8 s from each fall
        // (which follows its climb by 200 ms).
        assert_eq!(climbs, vec![1_200, 3_400, 7_600, 15_800, 24_000]);
        // A climb that held for longer than the window resets the hold.
        let later = at(40_000);
        assert_eq!(a.allocate(later, 600_000, &tracks)[1], (2, L1));
        assert_eq!(
            a.allocate(later + Duration::from_secs(5), 540_000, &tracks)[1],
            (2, L0)
        );
        let retry = later + Duration::from_secs(5) + UP_HOLD_MIN;
        assert_eq!(
            a.allocate(retry - Duration::from_millis(1), 600_000, &tracks)[1],
            (2, L0),
            "held"
        );
        assert_eq!(a.allocate(retry, 600_000, &tracks)[1], (2, L1));
    }

    /// A lower preferred layer is the application's choice, not a failed
    /// climb: raising it again takes effect at once.
    #[test]
    fn a_preference_change_does_not_hold_the_track() {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let mid = TrackDemand {
            preferred: (1, 2),
            ..video(2, 1)
        };
        let low = TrackDemand {
            preferred: (0, 2),
            ..video(2, 1)
        };
        assert_eq!(a.allocate(t0, 2_000_000, &[mid])[0], (2, L1));
        assert_eq!(a.allocate(t0, 2_000_000, &[low])[0], (2, L0));
        assert_eq!(a.allocate(t0, 2_000_000, &[mid])[0], (2, L1));
    }

    #[test]
    fn a_new_track_needs_no_margin_and_a_removed_one_is_forgotten() {
        let mut a = Allocator::new();
        let now = Instant::now();
        a.allocate(now, 600_000, &[audio(1)]);
        assert_eq!(
            a.allocate(now, 550_000, &[audio(1), video(2, 1)])[1],
            (2, L1)
        );
        a.allocate(now, 550_000, &[audio(1)]);
        assert_eq!(
            a.allocate(now, 550_000, &[audio(1), video(2, 1)])[1],
            (2, L1)
        );
    }
    #[test]
    fn a_track_not_yet_measured_is_new_at_its_first_measured_allocation() {
        let now = Instant::now();
        let mut a = Allocator::new();
        let unmeasured = TrackDemand {
            layers: &[],
            ..video(2, 1)
        };
        assert_eq!(a.allocate(now, 1_000_000, &[unmeasured]), vec![(2, None)]);
        // Exactly the lowest layer's rate: a paused track would need the
        // climbing margin on top, a new one does not.
        let tracks = [audio(1), video(2, 1)];
        assert_eq!(a.held_bps(&tracks), 200_000);
        assert_eq!(a.allocate(now, 200_000, &tracks), vec![(1, MIC), (2, L0)]);
        // Holding the top layer takes its rate, whatever the estimate.
        a.allocate(now, 10_000_000, &tracks);
        assert_eq!(a.held_bps(&tracks), 1_550_000);
        assert_eq!(
            a.allocate(now, a.held_bps(&tracks), &tracks),
            vec![(1, MIC), (2, L2)]
        );
    }
}

#[cfg(test)]
mod trim_tests {
    use super::*;

    #[test]
    fn higher_spatial_layers_only_at_full_frame_rate() {
        let l = |spatial, temporal, bps| LayerRate {
            spatial,
            temporal,
            bps,
        };
        let mut layers = vec![
            l(0, 0, 50),
            l(0, 1, 100),
            l(0, 2, 170),
            l(2, 0, 300),
            l(1, 0, 200),
            l(1, 1, 400),
            l(1, 2, 600),
            l(2, 1, 900),
            l(2, 2, 1500),
        ];
        full_frame_rate_above_lowest(&mut layers, 2);
        let kept: Vec<(u8, u8)> = layers.iter().map(|l| (l.spatial, l.temporal)).collect();
        assert_eq!(kept, vec![(0, 0), (0, 1), (0, 2), (1, 2), (2, 2)]);
        // A preferred temporal layer below the top one is the full rate.
        let mut layers = vec![l(0, 0, 50), l(0, 1, 100), l(1, 0, 200), l(1, 1, 400)];
        full_frame_rate_above_lowest(&mut layers, 0);
        let kept: Vec<(u8, u8)> = layers.iter().map(|l| (l.spatial, l.temporal)).collect();
        assert_eq!(kept, vec![(0, 0), (0, 1), (1, 0)]);
        let mut empty = Vec::new();
        full_frame_rate_above_lowest(&mut empty, 2);
        assert!(empty.is_empty());
    }
}
