//! Selector and rewriter together, driven by a simulated publisher on a
//! virtual clock, through a small test forwarder that renumbers sequence
//! numbers the way `Forwarder` does for dropped packets. Every output packet
//! is checked against the one before it.

use std::time::{Duration, Instant};

use weir_codecs::{facts, Codec};

use super::rewrite::{vp8, vp8_ids, vp9, vp9_ids};
use crate::forwarder::is_newer;
use crate::layers::{Decision, LayerPacket, LayerSelector, Layout, PictureIdRewriter};

const FRAME: Duration = Duration::from_millis(33);
/// Publisher reaction time to a PLI.
const PLI_DELAY: Duration = Duration::from_millis(20);
const PATTERN: [u8; 4] = [0, 2, 1, 2];

/// From this time (ms), preferred and max layers.
type Phase = (u64, (u8, u8), (u8, u8));

/// Sequence numbers like `Forwarder`: a new source continues the output,
/// a dropped packet of the current source closes its gap.
#[derive(Default)]
struct SeqSim {
    source: Option<u32>,
    delta: u16,
    last_in: u16,
    last_out: u16,
}

impl SeqSim {
    fn forward(&mut self, ssrc: u32, seq: u16) -> u16 {
        if self.source != Some(ssrc) {
            self.delta = self.last_out.wrapping_add(1).wrapping_sub(seq);
            self.last_in = seq.wrapping_sub(1);
            self.source = Some(ssrc);
        }
        let out = seq.wrapping_add(self.delta);
        if is_newer(seq, self.last_in) {
            self.last_in = seq;
            self.last_out = out;
        }
        out
    }

    fn drop(&mut self, ssrc: u32, seq: u16) {
        if self.source == Some(ssrc) && is_newer(seq, self.last_in) {
            self.last_in = seq;
            self.delta = self.delta.wrapping_sub(1);
        }
    }
}

/// One packet from the publisher.
struct InPkt {
    enc: u8,
    ssrc: u32,
    seq: u16,
    payload: Vec<u8>,
    marker: bool,
    /// Picture index, for grouping SVC layer frames.
    picture: u64,
}

/// What the subscriber received.
#[derive(Debug, Clone, Copy)]
struct OutPkt {
    seq: u16,
    ssrc: u32,
    in_seq: u16,
    enc: u8,
    spatial: u8,
    temporal: u8,
    start: bool,
    key: bool,
    marker: bool,
    pid: u16,
    tl0: u8,
    picture: u64,
}

struct Encoding {
    ssrc: u32,
    seq: u16,
    pid: u16,
    tl0: u8,
    gop: usize,
    keyframe_at: Option<Instant>,
}

/// A subscriber: selector, rewriter, sequence numbers, and what it received.
struct Sub {
    sel: LayerSelector,
    rw: PictureIdRewriter,
    seq: SeqSim,
    out: Vec<OutPkt>,
    plis: Vec<(Instant, u8)>,
}

impl Sub {
    fn new(layout: Layout, codec: Codec) -> Self {
        Self {
            sel: LayerSelector::new(layout),
            rw: PictureIdRewriter::new(codec),
            seq: SeqSim::default(),
            out: Vec::new(),
            plis: Vec::new(),
        }
    }

    fn on_packet(&mut self, now: Instant, codec: Codec, p: &InPkt) {
        let f = facts(codec, &p.payload, None).unwrap();
        let lp = LayerPacket::from_facts(p.enc, &f, p.marker);
        match self.sel.on_packet(now, &lp) {
            Decision::Drop => {
                self.seq.drop(p.ssrc, p.seq);
                self.rw.on_dropped(p.enc, &p.payload);
            }
            Decision::Forward { set_marker } => {
                let seq = self.seq.forward(p.ssrc, p.seq);
                let mut payload = p.payload.clone();
                self.rw.rewrite(p.enc, &mut payload).unwrap();
                let (pid, tl0) = match codec {
                    Codec::Vp8 => vp8_ids(&payload),
                    _ => vp9_ids(&payload),
                };
                self.out.push(OutPkt {
                    seq,
                    ssrc: p.ssrc,
                    in_seq: p.seq,
                    enc: p.enc,
                    spatial: lp.spatial,
                    temporal: lp.temporal,
                    start: lp.frame_start,
                    key: lp.keyframe,
                    marker: set_marker,
                    pid,
                    tl0,
                    picture: p.picture,
                });
            }
        }
    }

    fn poll(&mut self, now: Instant) -> Vec<u8> {
        let mut wanted = Vec::new();
        while let Some(e) = self.sel.poll_keyframe_request(now) {
            self.plis.push((now, e));
            wanted.push(e);
        }
        while self.sel.poll_event().is_some() {}
        wanted
    }
}

/// Sequence numbers continuous, packet by packet: a gap only where
/// packets of the forwarded source were `lost` before the SFU.
fn check_seq(out: &[OutPkt], lost: &[(u32, u16)]) {
    for w in out.windows(2) {
        let (a, b) = (w[0], w[1]);
        let gap = if a.ssrc == b.ssrc {
            lost.iter()
                .filter(|&&(ssrc, seq)| {
                    ssrc == a.ssrc && is_newer(seq, a.in_seq) && is_newer(b.in_seq, seq)
                })
                .count() as u16
        } else {
            0
        };
        assert_eq!(b.seq, a.seq.wrapping_add(1 + gap), "{a:?} -> {b:?}");
    }
}

/// Applies the preference and max changes due in `(prev, t]` (ms since
/// start), first checking that the phase before has reached its target.
fn apply_phase(sel: &mut LayerSelector, phases: &[Phase], prev: Option<u64>, t: u64) {
    for &(at, pref, max) in phases {
        if prev.is_none_or(|p| p < at) && at <= t {
            if at > 0 {
                assert_eq!(sel.current(), Some(sel.target()), "before {at} ms");
            }
            sel.set_preferred(pref.0, pref.1);
            sel.set_max(max.0, max.1);
        }
    }
}

/// Simulcast VP8, three encodings with L1T3, switched through `phases`.
/// With `lose_requested_keyframes`, the first packet of every other
/// requested keyframe is lost before the SFU.
fn simulcast(lose_requested_keyframes: bool) {
    let t0 = Instant::now();
    let mut encs: Vec<Encoding> = (0..3u8)
        .map(|e| Encoding {
            ssrc: 1000 + u32::from(e),
            seq: 65_500 - 97 * u16::from(e),
            pid: 0x7ff0 + 3 * u16::from(e),
            tl0: 250 + e,
            gop: 0,
            keyframe_at: Some(t0),
        })
        .collect();
    let phases: &[Phase] = &[
        (0, (2, 2), (2, 2)),
        (1000, (0, 2), (2, 2)),
        (2000, (2, 2), (2, 2)),
        (3000, (1, 0), (2, 2)),
        (4000, (1, 2), (2, 2)),
        (5000, (2, 2), (1, 1)),
        (6000, (2, 2), (0, 0)),
        (7000, (2, 2), (2, 2)),
    ];
    let mut sub = Sub::new(
        Layout::Simulcast {
            encodings: 3,
            temporal: 3,
        },
        Codec::Vp8,
    );
    let mut lost = Vec::new();
    let mut requested = 0u32;
    let mut picture = 0u64;
    let mut t = 0u64;
    let mut prev = None;
    while t < 8000 {
        let now = t0 + Duration::from_millis(t);
        apply_phase(&mut sub.sel, phases, prev, t);
        // Build every encoding's frame, then interleave them packet by packet.
        let mut frames: Vec<Vec<InPkt>> = Vec::new();
        for (e, enc) in encs.iter_mut().enumerate() {
            let key = enc.keyframe_at.is_some_and(|at| at <= now);
            let mut lose_first = false;
            if key {
                if enc.keyframe_at != Some(t0) {
                    requested += 1;
                    lose_first = lose_requested_keyframes && requested % 2 == 1;
                }
                enc.keyframe_at = None;
                enc.gop = 0;
            }
            let tid = PATTERN[enc.gop % 4];
            enc.gop += 1;
            enc.pid = enc.pid.wrapping_add(1) & 0x7fff;
            if tid == 0 {
                enc.tl0 = enc.tl0.wrapping_add(1);
            }
            let n = 1 + e + (picture % 2) as usize;
            let mut frame = Vec::new();
            for i in 0..n {
                enc.seq = enc.seq.wrapping_add(1);
                let pkt = InPkt {
                    enc: e as u8,
                    ssrc: enc.ssrc,
                    seq: enc.seq,
                    payload: vp8(enc.pid, true, enc.tl0, tid, i == 0, key && i == 0),
                    marker: i + 1 == n,
                    picture,
                };
                if i == 0 && lose_first {
                    lost.push((pkt.ssrc, pkt.seq));
                    continue;
                }
                frame.push(pkt);
            }
            frames.push(frame);
        }
        picture += 1;
        let longest = frames.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for frame in &frames {
                if let Some(p) = frame.get(i) {
                    sub.on_packet(now, Codec::Vp8, p);
                    for e in sub.poll(now) {
                        encs[usize::from(e)]
                            .keyframe_at
                            .get_or_insert(now + PLI_DELAY);
                    }
                }
            }
        }
        for e in sub.poll(now) {
            encs[usize::from(e)]
                .keyframe_at
                .get_or_insert(now + PLI_DELAY);
        }
        prev = Some(t);
        t += FRAME.as_millis() as u64;
    }
    apply_phase(&mut sub.sel, phases, prev, t);
    let out = &sub.out;
    assert!(out.len() > 400, "{} {:?} {:?}", out.len(), sub.plis, lost);
    check_seq(out, &lost);
    let mut switches = 0;
    for w in out.windows(2) {
        let (a, b) = (w[0], w[1]);
        let at = format!("{a:?} -> {b:?}");
        if a.enc != b.enc {
            // Never two encodings without a keyframe of the new one.
            assert!(b.key, "{at}");
            switches += 1;
        }
        // A new picture; its first packet may have been lost.
        if b.picture != a.picture || b.enc != a.enc {
            assert_eq!(
                b.pid,
                a.pid.wrapping_add(1) & 0x7fff,
                "picture id continuous: {at}"
            );
            let tl0 = if b.temporal == 0 {
                a.tl0.wrapping_add(1)
            } else {
                a.tl0
            };
            assert_eq!(b.tl0, tl0, "TL0PICIDX continuous: {at}");
            // A frame is cut short only by an encoding switch.
            assert!(a.marker || a.enc != b.enc, "frame not finished: {at}");
        } else {
            assert_eq!((b.pid, b.tl0, b.enc), (a.pid, a.tl0, a.enc), "{at}");
        }
    }
    assert!(switches >= 6, "{switches}");
    // Temporal filtering was visible: some phases forwarded layer 0 only.
    let low = out.iter().filter(|p| p.temporal == 0).count();
    assert!(low < out.len() && low > 0);
    // Keyframe requests: one per switch, plus one retry per lost keyframe.
    let max_plis = 2 * switches + lost.len() + 1;
    assert!(
        sub.plis.len() <= max_plis,
        "{} > {max_plis}",
        sub.plis.len()
    );
    if lose_requested_keyframes {
        assert!(!lost.is_empty());
    }
}

#[test]
fn simulcast_switches_keep_sequence_and_picture_ids_continuous() {
    simulcast(false);
}

#[test]
fn simulcast_switches_survive_lost_keyframe_starts() {
    simulcast(true);
}

/// VP9 L3T3: every picture has three spatial layer frames of one or two
/// packets; the marker is on the last packet of spatial layer 2.
#[test]
fn svc_switches_keep_one_marker_per_picture() {
    let t0 = Instant::now();
    let phases: &[Phase] = &[
        (0, (2, 2), (2, 2)),
        (1000, (0, 2), (2, 2)),
        (2000, (1, 1), (2, 2)),
        (3000, (2, 0), (2, 2)),
        (4000, (2, 2), (1, 2)),
        (5000, (2, 2), (2, 2)),
    ];
    let mut sub = Sub::new(
        Layout::Svc {
            spatial: 3,
            temporal: 3,
        },
        Codec::Vp9,
    );
    let (mut seq, mut pid, mut tl0) = (40_000u16, 0x7ff8u16, 0u8);
    let mut gop = 0usize;
    let mut keyframe_at = Some(t0);
    let mut picture = 0u64;
    let mut t = 0u64;
    let mut prev = None;
    while t < 6000 {
        let now = t0 + Duration::from_millis(t);
        apply_phase(&mut sub.sel, phases, prev, t);
        let key = keyframe_at.is_some_and(|at| at <= now);
        if key {
            keyframe_at = None;
            gop = 0;
        }
        let tid = PATTERN[gop % 4];
        gop += 1;
        pid = pid.wrapping_add(1) & 0x7fff;
        if tid == 0 {
            tl0 = tl0.wrapping_add(1);
        }
        for sid in 0..3u8 {
            let n = 1 + usize::from(sid % 2);
            for i in 0..n {
                seq = seq.wrapping_add(1);
                let mut payload = vp9(pid, tl0, sid, tid, i == 0, i + 1 == n);
                if key {
                    // No inter-picture prediction: P bit clear.
                    payload[0] &= !0x40;
                }
                if tid > 0 && i == 0 {
                    // U bit: this picture is a switching point.
                    payload[3] |= 0x10;
                }
                let p = InPkt {
                    enc: 0,
                    ssrc: 7,
                    seq,
                    payload,
                    marker: sid == 2 && i + 1 == n,
                    picture,
                };
                sub.on_packet(now, Codec::Vp9, &p);
                if !sub.poll(now).is_empty() {
                    keyframe_at.get_or_insert(now + PLI_DELAY);
                }
            }
        }
        picture += 1;
        prev = Some(t);
        t += FRAME.as_millis() as u64;
    }
    apply_phase(&mut sub.sel, phases, prev, t);
    let out = &sub.out;
    check_seq(out, &[]);
    // Group by picture: exactly one marker, on the last forwarded packet.
    let mut i = 0;
    let mut pictures = 0;
    let mut top_spatial = [0usize; 3];
    while i < out.len() {
        let pic = out[i].picture;
        let j = out[i..]
            .iter()
            .position(|p| p.picture != pic)
            .map_or(out.len(), |k| i + k);
        let group = &out[i..j];
        let markers: Vec<_> = group.iter().map(|p| p.marker).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1, "{group:?}");
        assert!(group.last().unwrap().marker, "{group:?}");
        assert!(group[0].start && group[0].spatial == 0, "{group:?}");
        // Spatial layers in order, none skipped.
        let mut expect = 0;
        for p in group {
            if p.start {
                assert_eq!(p.spatial, expect, "{group:?}");
                expect += 1;
            }
        }
        top_spatial[usize::from(expect - 1)] += 1;
        // VP9 picture ids are passed through.
        assert!(group
            .iter()
            .all(|p| p.pid == group[0].pid && p.tl0 == group[0].tl0));
        pictures += 1;
        i = j;
    }
    assert!(pictures > 100);
    assert!(top_spatial.iter().all(|n| *n > 0), "{top_spatial:?}");
    for w in out.windows(2) {
        // Forward in 15-bit serial arithmetic (the ids wrap during the run).
        assert!(w[1].pid.wrapping_sub(w[0].pid) & 0x7fff < 0x4000, "{w:?}");
    }
    // A PLI for each up-switch (0 -> 1, 1 -> 2, 1 -> 2), nothing more: the
    // stream starts with a keyframe and down-switches need none.
    assert_eq!(sub.plis.len(), 3, "{:?}", sub.plis);
}
