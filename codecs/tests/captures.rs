//! Real captures: RTP recorded from headless Chromium by `tools/capture` (see
//! `tests/fixtures/README.md`), parsed with weir-codecs.
//!
//! What each case must show is derived from how the sender was configured
//! (codec, `scalabilityMode`, simulcast rids and scale factors, 1280x720 or 640x360
//! capture, Opus at its default 20 ms ptime) and from the specifications, never from
//! the parsers under test:
//! - L1T3 and L3T3 (W3C WebRTC-SVC): the temporal pattern T0 T2 T1 T2, so temporal id 0
//!   every 4th temporal unit, from the key frame on; L3T3 has spatial layers 0, 1, 2
//!   in every temporal unit, in that order, sharing the temporal id; `_KEY` means no
//!   inter-layer prediction outside key frames; 3x3 = 9 decode targets.
//! - Simulcast: each rid's SSRC starts on its own key frame, at 1280x720 scaled down
//!   by 4, 2 and 1.
//! - Frame boundaries come from the RTP timestamp and marker bit, independently of
//!   the payload parsers' frame-start flags, which must agree with them.
//!
//! The transport facts a capture records (negotiated extension ids, which SSRC
//! carried which rid, as webrtc-rs reported it) come from the `.meta` files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use weir_codecs::av1::Av1Payload;
use weir_codecs::extensions::{parse_mid, parse_rtp_stream_id, uri};
use weir_codecs::{
    facts_with_descriptor, Codec, DependencyDescriptor, DependencyStructure, Extensions, OpusToc,
    PacketFacts, RtpHeader, Vp8Descriptor, Vp9Descriptor,
};

/// How the sender was configured (mirrors `CASES` in tools/capture/capture.js).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// One encoding, no scalabilityMode given.
    Single,
    /// One encoding, scalabilityMode L1T3.
    L1T3,
    /// One encoding, scalabilityMode L3T3_KEY, 1280x720 capture.
    L3T3Key,
    /// rids q, h, f with scaleResolutionDownBy 4, 2, 1 of a 1280x720 capture.
    Simulcast,
    /// The fake microphone, Opus with default parameters.
    Audio,
}

struct Case {
    name: &'static str,
    codec: Codec,
    mode: Mode,
}

const CASES: &[Case] = &[
    Case {
        name: "vp8",
        codec: Codec::Vp8,
        mode: Mode::Single,
    },
    Case {
        name: "vp8_l1t3",
        codec: Codec::Vp8,
        mode: Mode::L1T3,
    },
    Case {
        name: "vp8_simulcast",
        codec: Codec::Vp8,
        mode: Mode::Simulcast,
    },
    Case {
        name: "vp9_l3t3",
        codec: Codec::Vp9,
        mode: Mode::L3T3Key,
    },
    Case {
        name: "h264",
        codec: Codec::H264,
        mode: Mode::Single,
    },
    Case {
        name: "h264_simulcast",
        codec: Codec::H264,
        mode: Mode::Simulcast,
    },
    Case {
        name: "av1_l3t3",
        codec: Codec::Av1,
        mode: Mode::L3T3Key,
    },
    Case {
        name: "opus",
        codec: Codec::Opus,
        mode: Mode::Audio,
    },
];

/// W3C WebRTC-SVC: with three temporal layers, temporal units go T0 T2 T1 T2.
const T3_PATTERN: [u8; 4] = [0, 2, 1, 2];
/// Simulcast rids and the frame size each must have (1280x720 / scaleResolutionDownBy).
const SIMULCAST: [(&str, (u16, u16)); 3] =
    [("q", (320, 180)), ("h", (640, 360)), ("f", (1280, 720))];
/// L3T3 spatial layers of a 1280x720 capture: 1/4, 1/2, 1/1.
const L3_SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// A fixture: each record is a big-endian u16 length and one RTP packet.
fn load_packets(name: &str) -> Vec<Vec<u8>> {
    let path = fixtures().join(format!("{name}.rtpdump"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 2, "{name}: truncated record length");
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        assert!(rest.len() >= 2 + len, "{name}: truncated record");
        out.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    out
}

struct Meta {
    packets: usize,
    /// Extension id by URI, from the negotiated answer.
    extmap: BTreeMap<String, u8>,
    /// SSRC -> (rid or "-", payload type, packet count).
    streams: BTreeMap<u32, (String, u8, usize)>,
}

fn load_meta(name: &str) -> Meta {
    let path = fixtures().join(format!("{name}.meta"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut m = Meta {
        packets: 0,
        extmap: BTreeMap::new(),
        streams: BTreeMap::new(),
    };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("packets") => m.packets = words.next().unwrap().parse().unwrap(),
            Some("extmap") => {
                // "extmap 13 uri" or "extmap 13/recvonly uri"
                let id = words.next().unwrap();
                let id = id.split('/').next().unwrap().parse().unwrap();
                m.extmap.insert(words.next().unwrap().to_owned(), id);
            }
            Some("stream") => {
                let ssrc = words.next().unwrap().parse().unwrap();
                let mut kv = BTreeMap::new();
                for w in words {
                    let (k, v) = w.split_once('=').unwrap();
                    kv.insert(k, v);
                }
                m.streams.insert(
                    ssrc,
                    (
                        kv["rid"].to_owned(),
                        kv["pt"].parse().unwrap(),
                        kv["packets"].parse().unwrap(),
                    ),
                );
            }
            _ => {}
        }
    }
    m
}

/// One parsed packet.
struct Pkt {
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
    facts: Option<PacketFacts>,
    dd: Option<DependencyDescriptor>,
}

/// Everything about one capture that the checks need.
struct Capture {
    pkts: Vec<Pkt>,
    structures: BTreeMap<u32, DependencyStructure>,
}

fn parse_capture(case: &Case, meta: &Meta) -> Capture {
    let raw = load_packets(case.name);
    assert_eq!(
        raw.len(),
        meta.packets,
        "{}: packet count vs meta",
        case.name
    );
    assert!(
        (100..=2000).contains(&raw.len()),
        "{}: a few hundred packets",
        case.name
    );
    let ext = |u: &str| meta.extmap.get(u).copied();
    let (mid_id, rid_id, dd_id) = (
        ext(uri::MID),
        ext(uri::RTP_STREAM_ID),
        ext(uri::DEPENDENCY_DESCRIPTOR),
    );
    let mut caches: BTreeMap<u32, Option<DependencyStructure>> = BTreeMap::new();
    let mut pkts = Vec::with_capacity(raw.len());
    for (i, bytes) in raw.iter().enumerate() {
        let at = format!("{} packet {i}", case.name);
        let h = RtpHeader::parse(bytes).unwrap_or_else(|e| panic!("{at}: RTP header: {e}"));
        assert_eq!(h.version(), 2, "{at}");
        let (rid, pt, _) = meta
            .streams
            .get(&h.ssrc())
            .unwrap_or_else(|| panic!("{at}: ssrc {} not in meta", h.ssrc()));
        assert_eq!(h.payload_type(), *pt, "{at}: payload type");
        let exts = Extensions::from_header(&h).unwrap_or_else(|e| panic!("{at}: extensions: {e}"));
        assert!(
            exts.iter().count() > 0,
            "{at}: Chromium always sends header extensions"
        );
        if let Some(v) = mid_id.and_then(|id| exts.get(id)) {
            parse_mid(v).unwrap_or_else(|e| panic!("{at}: mid: {e}"));
        }
        if let Some(v) = rid_id.and_then(|id| exts.get(id)) {
            let r = parse_rtp_stream_id(v).unwrap_or_else(|e| panic!("{at}: rid: {e}"));
            assert_eq!(
                r, rid,
                "{at}: rid extension vs the track webrtc-rs reported"
            );
        }
        let cache = caches.entry(h.ssrc()).or_default();
        let dd = dd_id.and_then(|id| exts.get(id)).map(|v| {
            DependencyDescriptor::parse_with_cache(v, cache)
                .unwrap_or_else(|e| panic!("{at}: dependency descriptor: {e}"))
        });
        let payload = h.payload();
        // Padding-only packets (bandwidth probes) carry no payload to parse.
        let facts = (!payload.is_empty()).then(|| {
            facts_with_descriptor(case.codec, payload, dd.as_ref())
                .unwrap_or_else(|e| panic!("{at}: {:?} payload: {e}", case.codec))
        });
        pkts.push(Pkt {
            ssrc: h.ssrc(),
            seq: h.sequence_number(),
            ts: h.timestamp(),
            marker: h.marker(),
            payload: payload.to_vec(),
            facts,
            dd,
        });
    }
    let structures = caches
        .into_iter()
        .filter_map(|(s, c)| c.map(|c| (s, c)))
        .collect();
    Capture { pkts, structures }
}

/// A frame (all layers of one RTP timestamp) of one SSRC: indexes into `pkts`.
fn temporal_units(c: &Capture, ssrc: u32) -> Vec<Vec<usize>> {
    let mut units: Vec<Vec<usize>> = Vec::new();
    let mut last_ts = None;
    for (i, p) in c.pkts.iter().enumerate().filter(|(_, p)| p.ssrc == ssrc) {
        if p.facts.is_none() {
            continue; // padding
        }
        if last_ts != Some(p.ts) {
            units.push(Vec::new());
            last_ts = Some(p.ts);
        }
        units.last_mut().unwrap().push(i);
    }
    units
}

/// Checks common to every video SSRC; returns its temporal units.
fn check_video_stream(case: &Case, c: &Capture, ssrc: u32) -> Vec<Vec<usize>> {
    let name = case.name;
    let stream: Vec<&Pkt> = c.pkts.iter().filter(|p| p.ssrc == ssrc).collect();
    for w in stream.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{name} ssrc {ssrc}: loss or reordering"
        );
    }
    let first = stream[0].facts.expect("first packet has a payload");
    assert!(
        first.keyframe && first.frame_start,
        "{name} ssrc {ssrc}: starts on a key frame: {first:?}"
    );
    let keyframes = stream
        .iter()
        .filter(|p| p.facts.is_some_and(|f| f.keyframe))
        .count();
    assert!(keyframes >= 1, "{name} ssrc {ssrc}: key frames");

    let units = temporal_units(c, ssrc);
    assert!(
        units.len() >= 8,
        "{name} ssrc {ssrc}: only {} frames",
        units.len()
    );
    for (n, u) in units.iter().enumerate() {
        let head = &c.pkts[u[0]];
        let last = &c.pkts[*u.last().unwrap()];
        assert!(
            head.facts.unwrap().frame_start,
            "{name} ssrc {ssrc} unit {n}: first packet starts a frame"
        );
        // The recording stops on a marker, so every unit, the last included, is whole.
        assert!(
            last.marker,
            "{name} ssrc {ssrc} unit {n}: marker on the last packet"
        );
        for &i in &u[..u.len() - 1] {
            assert!(
                !c.pkts[i].marker,
                "{name} ssrc {ssrc} unit {n}: marker before the end"
            );
        }
        if let Some(dd) = &last.dd {
            assert!(
                dd.end_of_frame,
                "{name} ssrc {ssrc} unit {n}: DD end of frame on the marker"
            );
        }
    }
    // A key frame flag may sit on later packets of a key frame (an H.264 IDR in several
    // slices), but never in a unit whose first packet is not flagged.
    for (n, u) in units.iter().enumerate() {
        if !c.pkts[u[0]].facts.unwrap().keyframe {
            for &i in u {
                assert!(
                    !c.pkts[i].facts.unwrap().keyframe,
                    "{name} ssrc {ssrc} unit {n}: key frame flag inside a delta frame"
                );
            }
        }
    }
    units
}

/// Width and height of a VP8 key frame (RFC 6386 9.1), read by hand.
fn vp8_keyframe_size(payload: &[u8]) -> (u16, u16) {
    let d = Vp8Descriptor::parse(payload).unwrap();
    let b = &payload[d.header_len..];
    assert_eq!(b[0] & 1, 0, "a key frame");
    assert_eq!(&b[3..6], &[0x9d, 0x01, 0x2a], "VP8 key frame start code");
    (
        u16::from_le_bytes([b[6], b[7]]) & 0x3fff,
        u16::from_le_bytes([b[8], b[9]]) & 0x3fff,
    )
}

fn check_single_layer(case: &Case, c: &Capture, meta: &Meta) {
    assert_eq!(meta.streams.len(), 1, "{}: one SSRC", case.name);
    let ssrc = *meta.streams.keys().next().unwrap();
    let units = check_video_stream(case, c, ssrc);
    for u in &units {
        for &i in u {
            let f = c.pkts[i].facts.unwrap();
            assert!(
                f.spatial_id.unwrap_or(0) == 0,
                "{}: one spatial layer",
                case.name
            );
            assert!(
                f.temporal_id.unwrap_or(0) == 0,
                "{}: L1T1 has one temporal layer",
                case.name
            );
        }
    }
    if case.codec == Codec::Vp8 {
        assert_eq!(vp8_keyframe_size(&c.pkts[units[0][0]].payload), (640, 360));
        check_frame_numbers(case, c, &units);
    }
}

/// One identity per frame: the VP8 picture id (RFC 7741), growing by one per frame,
/// or, where Chromium sends the Dependency Descriptor instead of the VP8 extension
/// fields, the DD frame number, which grows.
fn check_frame_numbers(case: &Case, c: &Capture, units: &[Vec<usize>]) {
    let mut prev: Option<(bool, u16)> = None;
    for (n, u) in units.iter().enumerate() {
        let ids: BTreeSet<_> = u
            .iter()
            .map(|&i| {
                let p = &c.pkts[i];
                match (p.facts.unwrap().picture_id, &p.dd) {
                    (Some(id), _) => (true, id),
                    (None, Some(dd)) => (false, dd.frame_number),
                    (None, None) => {
                        panic!("{} frame {n}: neither a picture id nor a DD", case.name)
                    }
                }
            })
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "{} frame {n}: one picture id / frame number per frame",
            case.name
        );
        let id = ids.into_iter().next().unwrap();
        if let Some((pic, p)) = prev {
            assert_eq!(pic, id.0, "{}: picture id and DD mixed", case.name);
            if pic {
                assert_eq!(
                    id.1,
                    (p + 1) & 0x7fff,
                    "{} frame {n}: picture id + 1",
                    case.name
                );
            } else {
                // DD frame numbers grow; Chromium shares one counter between simulcast
                // streams, so a stream may skip numbers.
                let d = id.1.wrapping_sub(p);
                assert!(
                    (1..0x8000).contains(&d),
                    "{} frame {n}: DD frame number {p} -> {}",
                    case.name,
                    id.1
                );
            }
        }
        prev = Some(id);
    }
}

fn check_vp8_l1t3(case: &Case, c: &Capture, meta: &Meta) {
    assert_eq!(meta.streams.len(), 1);
    let ssrc = *meta.streams.keys().next().unwrap();
    let units = check_video_stream(case, c, ssrc);
    check_frame_numbers(case, c, &units);
    assert_eq!(vp8_keyframe_size(&c.pkts[units[0][0]].payload), (640, 360));
    let mut tl0: Option<u8> = None;
    for (n, u) in units.iter().enumerate() {
        let tids: BTreeSet<_> = u
            .iter()
            .map(|&i| c.pkts[i].facts.unwrap().temporal_id)
            .collect();
        assert_eq!(tids.len(), 1, "{}: one TID per frame", case.name);
        let tid = tids
            .into_iter()
            .next()
            .unwrap()
            .expect("L1T3 VP8 tells the TID (descriptor or DD)");
        assert_eq!(
            tid,
            T3_PATTERN[n % 4],
            "{}: frame {n} TID (pattern T0 T2 T1 T2)",
            case.name
        );
        // RFC 7741: TL0PICIDX, when sent, counts base-layer frames.
        if let Some(idx) = c.pkts[u[0]].facts.unwrap().tl0_pic_idx {
            if let Some(prev) = tl0 {
                let expect = if tid == 0 { prev.wrapping_add(1) } else { prev };
                assert_eq!(idx, expect, "{}: frame {n} TL0PICIDX", case.name);
            }
            tl0 = Some(idx);
        }
        // In L1T3 nothing predicts from T2 frames; T0 and T1 frames are references.
        let d = Vp8Descriptor::parse(&c.pkts[u[0]].payload).unwrap();
        assert_eq!(
            d.non_reference,
            tid == 2,
            "{}: frame {n} (T{tid}) N bit",
            case.name
        );
    }
    assert!(units.len() >= 8, "{}: two whole patterns", case.name);
    if let Some(s) = c.structures.get(&ssrc) {
        assert_eq!(
            s.decode_target_count(),
            3,
            "{}: L1T3 has 3 decode targets",
            case.name
        );
        assert_eq!(
            s.spatial_layer_count(),
            1,
            "{}: one spatial layer",
            case.name
        );
    }
}

fn check_simulcast(case: &Case, c: &Capture, meta: &Meta) {
    let rids: BTreeSet<&str> = meta.streams.values().map(|(r, _, _)| r.as_str()).collect();
    let want: BTreeSet<&str> = SIMULCAST.iter().map(|(r, _)| *r).collect();
    assert_eq!(rids, want, "{}: one SSRC per rid", case.name);
    for (&ssrc, (rid, _, count)) in &meta.streams {
        assert_eq!(c.pkts.iter().filter(|p| p.ssrc == ssrc).count(), *count);
        let units = check_video_stream(case, c, ssrc);
        for u in &units {
            for &i in u {
                let f = c.pkts[i].facts.unwrap();
                assert!(
                    f.spatial_id.unwrap_or(0) == 0,
                    "{}: simulcast layers are single-spatial",
                    case.name
                );
            }
        }
        if case.codec == Codec::Vp8 {
            let size = SIMULCAST.iter().find(|(r, _)| r == rid).unwrap().1;
            assert_eq!(
                vp8_keyframe_size(&c.pkts[units[0][0]].payload),
                size,
                "{}: rid {rid}",
                case.name
            );
            check_frame_numbers(case, c, &units);
        }
    }
}

fn check_l3t3_key(case: &Case, c: &Capture, meta: &Meta) {
    let name = case.name;
    assert_eq!(meta.streams.len(), 1, "{name}: SVC uses one SSRC");
    let ssrc = *meta.streams.keys().next().unwrap();
    let units = check_video_stream(case, c, ssrc);
    assert!(units.len() >= 8, "{name}: two whole patterns");

    for (n, u) in units.iter().enumerate() {
        // Layer frames of the unit, in order: (spatial id, temporal id, packets).
        let mut frames: Vec<(u8, u8, Vec<usize>)> = Vec::new();
        for &i in u {
            let f = c.pkts[i].facts.unwrap();
            let (s, t) = (
                f.spatial_id.expect("spatial id"),
                f.temporal_id.expect("temporal id"),
            );
            if f.frame_start {
                frames.push((s, t, Vec::new()));
            }
            let cur = frames.last_mut().expect("unit starts with a frame");
            assert_eq!(
                (cur.0, cur.1),
                (s, t),
                "{name} unit {n}: layer ids change mid-frame"
            );
            cur.2.push(i);
        }
        let sids: Vec<u8> = frames.iter().map(|f| f.0).collect();
        assert_eq!(
            sids,
            [0, 1, 2],
            "{name} unit {n}: S0 S1 S2 in every temporal unit"
        );
        let tid = T3_PATTERN[n % 4];
        for f in &frames {
            assert_eq!(
                f.1, tid,
                "{name} unit {n}: temporal id (pattern T0 T2 T1 T2)"
            );
        }
        let key = n == 0 || c.pkts[u[0]].facts.unwrap().keyframe;
        if key {
            assert_eq!(tid, 0, "{name} unit {n}: key frames are T0");
        }
        match case.codec {
            Codec::Vp9 => check_vp9_unit(name, n, key, c, &frames),
            Codec::Av1 => check_av1_unit(name, n, key, c, &frames),
            _ => unreachable!(),
        }
    }

    if case.codec == Codec::Av1 || meta.extmap.contains_key(uri::DEPENDENCY_DESCRIPTOR) {
        if let Some(s) = c.structures.get(&ssrc) {
            assert_eq!(
                s.decode_target_count(),
                9,
                "{name}: L3T3 has 3x3 decode targets"
            );
            if let Some(res) = s.resolutions() {
                let got: Vec<(u16, u16)> = res
                    .iter()
                    .map(|r| (r.width as u16, r.height as u16))
                    .collect();
                assert_eq!(got, L3_SIZES, "{name}: DD resolutions");
            }
        } else {
            assert_ne!(
                case.codec,
                Codec::Av1,
                "{name}: AV1 SVC needs the DD structure"
            );
        }
    }
}

fn check_vp9_unit(name: &str, n: usize, key: bool, c: &Capture, frames: &[(u8, u8, Vec<usize>)]) {
    for (s, _, pk) in frames {
        let d = Vp9Descriptor::parse(&c.pkts[pk[0]].payload).unwrap();
        let layers = d.layers.expect("L bit set in SVC");
        if key {
            // A key picture: no inter-picture prediction; S1, S2 predict from the layer below.
            assert!(
                !d.inter_picture_predicted,
                "{name} unit {n} S{s}: key picture is intra/inter-layer only"
            );
            assert_eq!(
                layers.inter_layer_dependency,
                *s > 0,
                "{name} unit {n} S{s}: D bit in the key picture"
            );
            if *s == 0 {
                let ss = d.scalability_structure.expect("SS in the key frame");
                assert_eq!(ss.spatial_layers(), 3, "{name}: SS N_S+1");
                if let Some(r) = ss.resolutions() {
                    assert_eq!(r.collect::<Vec<_>>(), L3_SIZES, "{name}: SS resolutions");
                }
            }
        } else {
            // _KEY: spatial layers depend on each other only in key pictures.
            assert!(
                d.inter_picture_predicted,
                "{name} unit {n} S{s}: delta picture"
            );
            assert!(
                !layers.inter_layer_dependency,
                "{name} unit {n} S{s}: no inter-layer prediction outside key pictures"
            );
        }
        for &i in pk {
            let p = &c.pkts[i];
            if let Some(dd) = &p.dd {
                // Both descriptors must tell the same layers.
                let f = Vp9Descriptor::parse(&p.payload).unwrap().layers.unwrap();
                assert_eq!(
                    (dd.frame.spatial_id, dd.frame.temporal_id),
                    (f.spatial_id, f.temporal_id),
                    "{name} unit {n}: DD vs VP9 descriptor"
                );
            }
        }
    }
}

fn check_av1_unit(name: &str, n: usize, key: bool, c: &Capture, frames: &[(u8, u8, Vec<usize>)]) {
    let numbers: Vec<u16> = frames
        .iter()
        .map(|(_, _, pk)| {
            c.pkts[pk[0]]
                .dd
                .as_ref()
                .expect("AV1 SVC carries the DD")
                .frame_number
        })
        .collect();
    for (k, (s, t, pk)) in frames.iter().enumerate() {
        for &i in pk {
            let p = &c.pkts[i];
            let dd = p.dd.as_ref().unwrap();
            assert_eq!(
                dd.frame_number, numbers[k],
                "{name} unit {n}: one frame number per layer frame"
            );
            // OBU extension headers, where the packet starts an OBU, agree with the DD.
            let a = Av1Payload::parse(&p.payload).unwrap();
            if let (Some(os), Some(ot)) = (a.spatial_id, a.temporal_id) {
                assert_eq!((os, ot), (*s, *t), "{name} unit {n}: OBU extension vs DD");
            }
        }
        let dd = c.pkts[pk[0]].dd.as_ref().unwrap();
        assert!(dd.start_of_frame, "{name} unit {n}: DD start of frame");
        let refs: Vec<u16> = dd
            .frame
            .fdiffs
            .as_slice()
            .iter()
            .map(|d| numbers[k].wrapping_sub(*d))
            .collect();
        let same_unit: Vec<&u16> = refs.iter().filter(|r| numbers[..k].contains(r)).collect();
        if key {
            // S0 of a key unit has no references; S1 and S2 predict from the layer below only.
            if *s == 0 {
                assert!(
                    refs.is_empty(),
                    "{name} unit {n}: key S0 references {refs:?}"
                );
            } else {
                assert_eq!(
                    refs,
                    [numbers[k - 1]],
                    "{name} unit {n}: key S{s} predicts from S{}",
                    s - 1
                );
            }
        } else {
            assert!(
                same_unit.is_empty(),
                "{name} unit {n} S{s}: no inter-layer references outside key frames ({refs:?})"
            );
            assert!(
                !refs.is_empty(),
                "{name} unit {n} S{s}: delta frames reference earlier frames"
            );
        }
    }
    if key {
        let a = Av1Payload::parse(&c.pkts[frames[0].2[0]].payload).unwrap();
        assert!(
            a.has_sequence_header,
            "{name} unit {n}: the key unit carries the sequence header"
        );
    }
}

fn check_opus(case: &Case, c: &Capture, meta: &Meta) {
    assert_eq!(meta.streams.len(), 1);
    let name = case.name;
    for w in c.pkts.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{name}: loss or reordering"
        );
    }
    let mut prev: Option<&Pkt> = None;
    let mut media = 0;
    for (i, p) in c.pkts.iter().enumerate() {
        if p.payload.is_empty() {
            // Padding-only packets (bandwidth probes) reuse the last timestamp.
            assert_eq!(
                Some(p.ts),
                prev.map(|q| q.ts),
                "{name} packet {i}: padding timestamp"
            );
            continue;
        }
        media += 1;
        let toc =
            OpusToc::parse(&p.payload).unwrap_or_else(|e| panic!("{name} packet {i}: TOC: {e}"));
        // Chromium's Opus default is 20 ms per packet (no ptime in the SDP).
        assert_eq!(
            toc.duration_samples_48k(),
            960,
            "{name} packet {i}: {toc:?}"
        );
        if let Some(q) = prev {
            assert_eq!(
                p.ts.wrapping_sub(q.ts),
                960,
                "{name} packet {i}: 20 ms of 48 kHz per packet"
            );
        }
        prev = Some(p);
    }
    assert!(media >= 100, "{name}: {media} audio packets");
}

#[test]
fn captures_from_chromium() {
    let t0 = std::time::Instant::now();
    for case in CASES {
        let meta = load_meta(case.name);
        let c = parse_capture(case, &meta);
        match case.mode {
            Mode::Single => check_single_layer(case, &c, &meta),
            Mode::L1T3 => check_vp8_l1t3(case, &c, &meta),
            Mode::Simulcast => check_simulcast(case, &c, &meta),
            Mode::L3T3Key => check_l3t3_key(case, &c, &meta),
            Mode::Audio => check_opus(case, &c, &meta),
        }
    }
    eprintln!("all captures checked in {:?}", t0.elapsed());
}
