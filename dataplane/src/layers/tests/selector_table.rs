//! Table-driven tests of the selector: one row per switch sequence.

use std::time::{Duration, Instant};

use crate::layers::{Decision, LayerPacket, LayerSelector, Layers, LayersChanged, Layout};

/// What a packet step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Dropped.
    D,
    /// Forwarded, marker clear.
    F,
    /// Forwarded with the marker set.
    M,
}
use Want::*;

#[derive(Debug, Clone, Copy)]
enum Step {
    Pkt(LayerPacket, Want),
    Prefer(u8, u8),
    Max(u8, u8),
    /// Advance the simulated clock by this many milliseconds.
    Wait(u64),
    /// The next keyframe request (one poll).
    Pli(Option<u8>),
    Cur(Option<(u8, u8)>),
    Target(u8, u8),
    Event(Option<(u8, u8)>),
}
use Step::*;

const fn pkt(encoding: u8, spatial: u8, temporal: u8) -> LayerPacket {
    LayerPacket {
        encoding,
        spatial,
        temporal,
        keyframe: false,
        frame_start: false,
        frame_end: false,
        switching_point: false,
        switch_up_to: 0,
        marker: false,
    }
}

/// First packet of a simulcast keyframe on `enc`.
const fn kf(enc: u8) -> LayerPacket {
    let mut p = pkt(enc, 0, 0);
    p.keyframe = true;
    p.frame_start = true;
    p.switching_point = true;
    p
}

/// First packet of a delta frame, no switching point.
const fn start(enc: u8, t: u8) -> LayerPacket {
    let mut p = pkt(enc, 0, t);
    p.frame_start = true;
    p
}

/// First packet of a frame that is a switching point.
const fn sync(enc: u8, t: u8) -> LayerPacket {
    let mut p = start(enc, t);
    p.switching_point = true;
    p
}

/// A middle packet of a frame.
const fn mid(enc: u8, t: u8) -> LayerPacket {
    pkt(enc, 0, t)
}

/// The last packet of a frame (marker set).
const fn end(enc: u8, t: u8) -> LayerPacket {
    let mut p = pkt(enc, 0, t);
    p.frame_end = true;
    p.marker = true;
    p
}

/// A middle packet that claims a switching point (VP8 Y bit is on every packet).
const fn sync_mid(enc: u8, t: u8) -> LayerPacket {
    let mut p = pkt(enc, 0, t);
    p.switching_point = true;
    p
}

/// SVC layer-frame packet: spatial `s`, temporal `t`, frame start/end, RTP marker.
const fn svc(s: u8, t: u8, b: bool, e: bool, marker: bool) -> LayerPacket {
    let mut p = pkt(0, s, t);
    p.frame_start = b;
    p.frame_end = e || marker;
    p.marker = marker;
    p
}

/// First packet of an SVC keyframe (spatial 0).
const fn svc_kf() -> LayerPacket {
    let mut p = svc(0, 0, true, false, false);
    p.keyframe = true;
    p.switching_point = true;
    p
}

const SIM: Layout = Layout::Simulcast {
    encodings: 3,
    temporal: 3,
};
const SVC: Layout = Layout::Svc {
    spatial: 3,
    temporal: 3,
};
const SINGLE: Layout = Layout::Single { temporal: 3 };

/// One complete two-packet simulcast frame forwarded as is.
const fn frame_f(enc: u8, t: u8) -> [Step; 2] {
    [Pkt(start(enc, t), F), Pkt(end(enc, t), M)]
}

type Case = (&'static str, Layout, &'static [Step]);

const CASES: &[Case] = &[
    (
        "start waits for a keyframe and requests one at once",
        SIM,
        &[
            Cur(None),
            Pkt(start(2, 0), D),
            Pkt(end(2, 0), D),
            Pli(Some(2)),
            Pli(None),
            Event(None),
            Pkt(kf(2), F),
            Pkt(end(2, 0), M),
            Cur(Some((2, 2))),
            Event(Some((2, 2))),
            Event(None),
            Pli(None),
        ],
    ),
    (
        "start skips a keyframe above the target",
        SIM,
        &[
            Prefer(1, 2),
            Pkt(kf(2), D),
            Pkt(kf(1), F),
            Cur(Some((1, 2))),
        ],
    ),
    (
        "start on a lower keyframe, then up through an intermediate encoding",
        SIM,
        &[
            Pkt(kf(0), F),
            Cur(Some((0, 2))),
            Pli(Some(2)),
            Pkt(start(2, 0), D),
            Pkt(start(1, 0), D),
            Pkt(start(0, 1), F),
            Pkt(kf(1), F),
            Cur(Some((1, 2))),
            Pkt(end(0, 1), D),
            Pkt(mid(1, 0), F),
            Pkt(kf(2), F),
            Cur(Some((2, 2))),
            Pkt(end(1, 0), D),
            Pkt(end(2, 0), M),
            Pli(None),
            Event(Some((2, 2))),
        ],
    ),
    (
        "simulcast up-switch only at a keyframe of the target",
        SIM,
        &[
            Prefer(0, 2),
            Pkt(kf(0), F),
            Pli(None),
            Prefer(2, 2),
            Target(2, 2),
            Pli(Some(2)),
            Pkt(sync(2, 0), D),
            Pkt(start(2, 1), D),
            Pkt(start(0, 0), F),
            Cur(Some((0, 2))),
            Pkt(kf(2), F),
            Pkt(start(0, 0), D),
            Cur(Some((2, 2))),
            Pli(None),
        ],
    ),
    (
        "simulcast down-switch at a keyframe of the lower encoding",
        SIM,
        &[
            Pkt(kf(2), F),
            Event(Some((2, 2))),
            Prefer(0, 2),
            Pli(Some(0)),
            Pkt(start(2, 1), F),
            Pkt(start(0, 1), D),
            Pkt(kf(0), F),
            Cur(Some((0, 2))),
            Pkt(end(2, 1), D),
            Pkt(mid(0, 0), F),
            Event(Some((0, 2))),
            Pli(None),
        ],
    ),
    (
        "simulcast down-switch may stop at an intermediate keyframe",
        SIM,
        &[
            Pkt(kf(2), F),
            Prefer(0, 2),
            Pkt(kf(1), F),
            Cur(Some((1, 2))),
            Pli(Some(0)),
            Pkt(kf(2), D),
            Pkt(kf(0), F),
            Cur(Some((0, 2))),
        ],
    ),
    (
        "simulcast keyframe of an encoding beyond the target is ignored",
        SIM,
        &[
            Prefer(0, 2),
            Pkt(kf(0), F),
            Prefer(1, 2),
            Pkt(kf(2), D),
            Cur(Some((0, 2))),
            Pkt(kf(1), F),
            Cur(Some((1, 2))),
        ],
    ),
    (
        // Found by the property test: switching on a dropped keyframe would
        // forward the rest of the new encoding without its start.
        "a keyframe above the target temporal layer is not a switch point",
        Layout::Simulcast {
            encodings: 2,
            temporal: 2,
        },
        &[
            Prefer(1, 0),
            Pkt(kf(1), F),
            Prefer(0, 0),
            Pkt(
                LayerPacket {
                    temporal: 1,
                    ..kf(0)
                },
                D,
            ),
            Pkt(mid(0, 0), D),
            Cur(Some((1, 0))),
            Pkt(mid(1, 0), F),
        ],
    ),
    (
        "temporal down-switch waits for the next frame start",
        SIM,
        &[
            Pkt(kf(0), F),
            Pkt(end(0, 0), M),
            Pkt(start(0, 2), F),
            Prefer(0, 0),
            // The frame in progress is finished, not cut.
            Pkt(mid(0, 2), F),
            Pkt(end(0, 2), M),
            Cur(Some((0, 2))),
            Pkt(start(0, 1), D),
            Cur(Some((0, 0))),
            Pkt(end(0, 1), D),
            Pkt(start(0, 0), F),
            Pkt(end(0, 0), M),
            Pkt(sync(0, 2), D),
            Event(Some((0, 0))),
        ],
    ),
    (
        "temporal up-switch only at a switching point",
        SIM,
        &[
            Prefer(0, 0),
            Pkt(kf(0), F),
            Pkt(end(0, 0), M),
            Prefer(0, 2),
            Pkt(start(0, 2), D),
            Pkt(end(0, 2), D),
            Pkt(start(0, 1), D),
            Pkt(end(0, 1), D),
            Cur(Some((0, 0))),
            Pkt(sync(0, 1), F),
            Cur(Some((0, 1))),
            Pkt(end(0, 1), M),
            Pkt(start(0, 2), D),
            Pkt(sync(0, 2), F),
            Cur(Some((0, 2))),
            Pli(None),
        ],
    ),
    (
        "temporal up-switch ignores a switching point mid-frame",
        SIM,
        &[
            Prefer(0, 0),
            Pkt(kf(0), F),
            Prefer(0, 1),
            // First packet of the sync frame lost: switching mid-frame
            // would forward half a frame.
            Pkt(sync_mid(0, 1), D),
            Pkt(end(0, 1), D),
            Cur(Some((0, 0))),
        ],
    ),
    (
        "temporal up-switch stops at the target",
        SIM,
        &[
            Prefer(0, 0),
            Pkt(kf(0), F),
            Prefer(0, 1),
            Pkt(sync(0, 2), D),
            Cur(Some((0, 0))),
            Pkt(sync(0, 1), F),
            Cur(Some((0, 1))),
        ],
    ),
    (
        "temporal up-switch directly to the target at a keyframe",
        SIM,
        &[
            Prefer(0, 0),
            Pkt(kf(0), F),
            Prefer(0, 2),
            Pkt(start(0, 2), D),
            Pkt(kf(0), F),
            Cur(Some((0, 2))),
            Pkt(start(0, 2), F),
        ],
    ),
    (
        "max bounds the target; lifting max restores the preference",
        SIM,
        &[
            Max(1, 1),
            Target(1, 1),
            Pkt(kf(2), D),
            Pkt(kf(1), F),
            Cur(Some((1, 1))),
            Pkt(start(1, 2), D),
            Max(2, 2),
            Target(2, 2),
            Pli(Some(2)),
            Pkt(kf(2), F),
            Cur(Some((2, 2))),
        ],
    ),
    (
        "target is clamped to the layout",
        Layout::Simulcast {
            encodings: 2,
            temporal: 1,
        },
        &[
            Prefer(9, 9),
            Target(1, 0),
            Pkt(kf(1), F),
            Cur(Some((1, 0))),
            Pkt(start(1, 1), D),
        ],
    ),
    (
        "loss of a keyframe's first packet: the switch waits and PLI is retried",
        SIM,
        &[
            Prefer(0, 2),
            Pkt(kf(0), F),
            Prefer(2, 2),
            Pli(Some(2)),
            // kf(2) lost: the rest of the keyframe must not start a switch.
            Pkt(mid(2, 0), D),
            Pkt(end(2, 0), D),
            Pkt(start(2, 1), D),
            Cur(Some((0, 2))),
            Wait(499),
            Pli(None),
            Wait(1),
            Pli(Some(2)),
            Pkt(kf(2), F),
            Pkt(end(2, 0), M),
            Cur(Some((2, 2))),
            Wait(5000),
            Pli(None),
        ],
    ),
    (
        "a keyframe that never comes: backoff 500 ms, 1 s, 2 s, then capped at 4 s",
        SIM,
        &[
            Pli(Some(2)),
            Wait(499),
            Pli(None),
            Wait(1),
            Pli(Some(2)),
            Pli(None),
            Wait(999),
            Pli(None),
            Wait(1),
            Pli(Some(2)),
            Wait(1999),
            Pli(None),
            Wait(1),
            Pli(Some(2)),
            Wait(3999),
            Pli(None),
            Wait(1),
            Pli(Some(2)),
            Wait(3999),
            Pli(None),
            Wait(1),
            Pli(Some(2)),
        ],
    ),
    (
        "a new need restarts the backoff but keeps the minimum gap",
        SIM,
        &[
            Pkt(kf(0), F),
            Pli(Some(2)),
            Wait(100),
            Prefer(1, 2),
            Pli(None),
            Wait(399),
            Pli(None),
            Wait(1),
            Pli(Some(1)),
            Wait(500),
            Pli(Some(1)),
        ],
    ),
    (
        "flapping preferences do not flood the publisher",
        SIM,
        &[
            Pkt(kf(0), F),
            Pli(Some(2)),
            Prefer(0, 2),
            Pli(None),
            Wait(10),
            Prefer(2, 2),
            Pli(None),
            Wait(10),
            Prefer(1, 2),
            Pli(None),
            Wait(10),
            Prefer(0, 2),
            Pli(None),
            Wait(10),
            Prefer(2, 2),
            Pli(None),
            Wait(460),
            Pli(Some(2)),
        ],
    ),
    (
        "no keyframe request once the need is gone",
        SIM,
        &[
            Pkt(kf(0), F),
            Pli(Some(2)),
            Prefer(0, 2),
            Wait(10_000),
            Pli(None),
        ],
    ),
    (
        "events report each change of current once",
        SIM,
        &[
            Event(None),
            Pkt(kf(1), F),
            Event(Some((1, 2))),
            Event(None),
            Prefer(1, 0),
            Pkt(start(1, 0), F),
            Prefer(1, 1),
            Pkt(sync(1, 1), F),
            // Coalesced: only the latest current is reported.
            Event(Some((1, 1))),
            Event(None),
            Pkt(start(1, 0), F),
            Event(None),
        ],
    ),
    (
        "svc: start at a keyframe with every spatial layer",
        SVC,
        &[
            Pkt(svc(0, 0, true, true, false), D),
            Pkt(svc(1, 0, true, true, false), D),
            Pli(Some(0)),
            Pkt(svc_kf(), F),
            Cur(Some((2, 2))),
            Pkt(svc(0, 0, false, true, false), F),
            Pkt(svc(1, 0, true, true, false), F),
            Pkt(svc(2, 0, true, false, false), F),
            Pkt(svc(2, 0, false, true, true), M),
            Pli(None),
        ],
    ),
    (
        "svc: spatial down-switch at the next picture, marker on the top forwarded layer",
        SVC,
        &[
            Pkt(svc_kf(), F),
            Pkt(svc(0, 0, false, true, false), F),
            Prefer(0, 2),
            // The picture in progress is finished.
            Pkt(svc(1, 0, true, true, false), F),
            Pkt(svc(2, 0, true, true, true), M),
            Cur(Some((2, 2))),
            Pkt(svc(0, 2, true, false, false), F),
            Cur(Some((0, 2))),
            Pkt(svc(0, 2, false, true, false), M),
            Pkt(svc(1, 2, true, true, false), D),
            Pkt(svc(2, 2, true, true, true), D),
            Pkt(svc(0, 1, true, true, false), M),
            Pkt(svc(1, 1, true, true, false), D),
            Pli(None),
            Event(Some((0, 2))),
        ],
    ),
    (
        "svc: middle spatial layer marks the end of its frame",
        SVC,
        &[
            Prefer(1, 2),
            Pkt(svc_kf(), F),
            Cur(Some((1, 2))),
            Pkt(svc(0, 0, false, true, false), F),
            Pkt(svc(1, 0, true, false, false), F),
            Pkt(svc(1, 0, false, true, false), M),
            Pkt(svc(2, 0, true, true, true), D),
        ],
    ),
    (
        "svc: spatial up-switch waits for a keyframe, PLI retried",
        SVC,
        &[
            Prefer(0, 2),
            Pkt(svc_kf(), F),
            Cur(Some((0, 2))),
            Prefer(2, 2),
            Pli(Some(0)),
            // A switching point is not enough: keyframe-only up-switch.
            Pkt(
                LayerPacket {
                    switching_point: true,
                    ..svc(0, 0, true, true, false)
                },
                M,
            ),
            Pkt(svc(1, 0, true, true, false), D),
            Pkt(svc(2, 0, true, true, true), D),
            Cur(Some((0, 2))),
            Wait(500),
            Pli(Some(0)),
            Pkt(svc_kf(), F),
            Cur(Some((2, 2))),
            Pkt(svc(0, 0, false, true, false), F),
            Pkt(svc(1, 0, true, true, false), F),
            Pkt(svc(2, 0, true, true, true), M),
            Pli(None),
        ],
    ),
    (
        "svc: temporal down-switch at the picture start, not at an upper layer frame",
        SVC,
        &[
            Pkt(svc_kf(), F),
            Pkt(svc(0, 0, false, true, false), F),
            Pkt(svc(1, 0, true, true, false), F),
            Prefer(2, 0),
            // Frame start of spatial 1 is not a picture start.
            Pkt(svc(2, 0, true, true, true), M),
            Cur(Some((2, 2))),
            Pkt(svc(0, 2, true, true, false), D),
            Cur(Some((2, 0))),
            Pkt(svc(1, 2, true, true, false), D),
            Pkt(svc(2, 2, true, true, true), D),
            Pkt(svc(0, 0, true, true, false), F),
        ],
    ),
    (
        "svc: temporal up-switch at a switching point of the base layer",
        SVC,
        &[
            Prefer(2, 0),
            Pkt(svc_kf(), F),
            Prefer(2, 1),
            Pkt(svc(0, 1, true, true, false), D),
            Pkt(
                LayerPacket {
                    switching_point: true,
                    ..svc(1, 1, true, true, false)
                },
                D,
            ),
            Cur(Some((2, 0))),
            Pkt(
                LayerPacket {
                    switching_point: true,
                    ..svc(0, 1, true, true, false)
                },
                F,
            ),
            Cur(Some((2, 1))),
            Pkt(svc(1, 1, true, true, false), F),
        ],
    ),
    (
        "single stream: temporal only, no keyframe requests after the start",
        SINGLE,
        &[
            Prefer(5, 0),
            Target(0, 0),
            Pkt(start(0, 0), D),
            Pli(Some(0)),
            Pkt(kf(0), F),
            Pli(None),
            Pkt(start(0, 1), D),
            Pkt(end(0, 0), M),
            Prefer(0, 2),
            Pkt(sync(0, 2), F),
            Cur(Some((0, 2))),
            Wait(10_000),
            Pli(None),
        ],
    ),
    (
        "single stream without layer ids forwards everything after a keyframe",
        Layout::Single { temporal: 0 },
        &[
            Pkt(kf(0), F),
            Pkt(end(0, 0), M),
            Pkt(start(0, 0), F),
            Cur(Some((0, 0))),
        ],
    ),
];

fn run(name: &str, layout: Layout, steps: &[Step]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut s = LayerSelector::new(layout);
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{name}: step {i} {step:?}");
        match *step {
            Pkt(p, want) => {
                let got = match s.on_packet(now, &p) {
                    Decision::Drop => D,
                    Decision::Forward { set_marker: false } => F,
                    Decision::Forward { set_marker: true } => M,
                };
                assert_eq!(got, want, "{at}");
            }
            Prefer(a, b) => s.set_preferred(a, b),
            Max(a, b) => s.set_max(a, b),
            Wait(ms) => now += Duration::from_millis(ms),
            Pli(want) => assert_eq!(s.poll_keyframe_request(now), want, "{at}"),
            Cur(want) => assert_eq!(s.current(), want.map(|(a, b)| Layers::new(a, b)), "{at}"),
            Target(a, b) => assert_eq!(s.target(), Layers::new(a, b), "{at}"),
            Event(want) => assert_eq!(
                s.poll_event(),
                want.map(|(spatial, temporal)| LayersChanged { spatial, temporal }),
                "{at}"
            ),
        }
    }
}

#[test]
fn table() {
    for (name, layout, steps) in CASES {
        run(name, *layout, steps);
    }
}

#[test]
fn whole_frames_are_forwarded_in_steady_state() {
    let mut steps = vec![Pkt(kf(1), F), Pkt(end(1, 0), M)];
    for t in [2, 1, 2, 0] {
        steps.extend(frame_f(1, t));
    }
    run("steady", SIM, &steps);
}

#[test]
fn keyframe_requests_stay_bounded_over_a_minute() {
    let t0 = Instant::now();
    let mut s = LayerSelector::new(SIM);
    let mut sent = Vec::new();
    for ms in (0..60_000).step_by(5) {
        let now = t0 + Duration::from_millis(ms);
        // Packets keep flowing, none a keyframe.
        let _ = s.on_packet(now, &start(2, 0));
        while let Some(e) = s.poll_keyframe_request(now) {
            assert_eq!(e, 2);
            sent.push(ms);
        }
    }
    // 0, 0.5, 1.5, 3.5, 7.5, then every 4 s.
    assert_eq!(&sent[..5], &[0, 500, 1500, 3500, 7500]);
    assert!(sent
        .windows(2)
        .all(|w| w[1] - w[0] <= 4000 && w[1] - w[0] >= 500));
    assert_eq!(sent.len(), 5 + (60_000 - 7500 - 1) / 4000);
    assert!(s.current().is_none());
}

#[test]
fn poll_timeout_names_the_next_retry() {
    let t0 = Instant::now();
    let mut s = LayerSelector::new(SIM);
    assert_eq!(s.poll_timeout(), None);
    let _ = s.on_packet(t0, &start(0, 0));
    assert_eq!(s.poll_timeout(), Some(t0));
    assert_eq!(s.poll_keyframe_request(t0), Some(2));
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(500)));
    let _ = s.on_packet(t0, &kf(2));
    assert_eq!(s.poll_timeout(), None);
}
