//! SVC layer selection through one data-plane core, with real packets:
//! the VP9 and AV1 `L3T3_KEY` and VP8 `L1T3` captures from headless
//! Chromium (`codecs/tests/fixtures`) are replayed, SRTP-protected, from a
//! publisher to a subscriber on simulated time. The subscription starts
//! with the layout the control plane gives it (one stream, structure
//! unknown); the core must read the structure from the stream (VP9
//! scalability structure, Dependency Descriptor template structure) and
//! filter to the preferred layers.
mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    add_session, inbound_spec, send_check, subscriber_spec, FIRST_OUT_SEQ, OUT_PT, OUT_SSRC, TRACK,
};
use weir_codecs::{DependencyDescriptor, Extensions, RtpHeader, Vp9Descriptor};
use weir_dataplane::core::{Codec, Core, Transmit};
use weir_dataplane::counters::CoreCounters;
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::layers::Layout;
use weir_dataplane::rtcp;
use weir_dataplane::srtp::{SrtpProfile, SrtpSession};
use weir_dataplane::{CoreInput, Kind, SessionEvent, SubscriberLayers, SubscriberSpec};
const DD_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../codecs/tests/fixtures")
}

/// The packets of a capture (big-endian u16 length, then one RTP packet).
fn load_packets(name: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(fixtures().join(format!("{name}.rtpdump"))).unwrap();
    let mut out = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        out.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    out
}

/// The Dependency Descriptor's extension id in a capture's negotiation.
fn dd_ext_id(name: &str) -> u8 {
    let meta = std::fs::read_to_string(fixtures().join(format!("{name}.meta"))).unwrap();
    meta.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("extmap ")?;
            let (id, uri) = rest.split_once(' ')?;
            (uri == DD_URI).then(|| id.parse().unwrap())
        })
        .expect("the capture negotiated the Dependency Descriptor")
}

/// A captured packet with its layer ids as the test reads them itself
/// (not through the data plane): from the Dependency Descriptor, or from
/// the VP9 payload descriptor.
struct Captured {
    rtp: Vec<u8>,
    payload: Vec<u8>,
    spatial: u8,
    temporal: u8,
    keyframe_start: bool,
}

fn layered(name: &str, codec: Codec, from_dd: bool) -> Vec<Captured> {
    let dd_id = dd_ext_id(name);
    let mut cache = None;
    let mut out = Vec::new();
    for rtp in load_packets(name) {
        let h = RtpHeader::parse(&rtp).unwrap();
        let payload = h.payload().to_vec();
        if payload.is_empty() {
            continue; // padding-only probes are not media
        }
        let dd = Extensions::from_header(&h)
            .unwrap()
            .get(dd_id)
            .map(|v| DependencyDescriptor::parse_with_cache(v, &mut cache).unwrap());
        let (spatial, temporal) = if from_dd {
            let d = dd
                .as_ref()
                .expect("every media packet carries the descriptor");
            (d.frame.spatial_id, d.frame.temporal_id)
        } else {
            let l = Vp9Descriptor::parse(&payload).unwrap().layers.unwrap();
            (l.spatial_id, l.temporal_id)
        };
        let f = weir_codecs::facts_with_descriptor(codec, &payload, dd.as_ref()).unwrap();
        out.push(Captured {
            keyframe_start: f.keyframe && f.frame_start,
            rtp,
            payload,
            spatial,
            temporal,
        });
    }
    out
}

struct Peer {
    addr: SocketAddr,
    server: IceCredentials,
    srtp: SrtpSession,
}

struct Sim {
    core: Core,
    now: Instant,
    publisher: Peer,
    subscriber: Peer,
    /// PLIs the core sent to the publisher.
    plis: usize,
}

impl Sim {
    /// A publisher of `codec` (payload type and SSRC of the capture) and a
    /// subscriber configured as the control plane does it, both connected.
    /// `dd` negotiates the Dependency Descriptor with the publisher.
    fn new(codec: Codec, first: &[u8], dd: Option<u8>) -> Self {
        let now = Instant::now();
        let counters = Arc::new(CoreCounters::default());
        let mut core = Core::new(0, Duration::from_secs(30), counters, now);
        let mut peer = |id: u64, port: u16, seed: u8| {
            let (server, srtp) = add_session(&mut core, now, id, seed, SrtpProfile::AeadAes128Gcm);
            let p = Peer {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                server,
                srtp,
            };
            send_check(&mut core, now, p.addr, &p.server);
            while core.poll_transmit().is_some() {}
            p
        };
        let publisher = peer(1, 5000, 10);
        let subscriber = peer(2, 6000, 20);
        let h = RtpHeader::parse(first).unwrap();
        core.handle_input(
            now,
            CoreInput::AddInbound {
                id: 1,
                spec: inbound_spec(TRACK, Kind::Video, codec, h.payload_type(), vec![h.ssrc()]),
            },
        );
        if dd.is_some() {
            core.handle_input(
                now,
                CoreInput::SetDependencyDescriptor {
                    id: 1,
                    track: TRACK,
                    ext_id: dd,
                },
            );
        }
        core.handle_input(
            now,
            CoreInput::AddSubscriber {
                id: 2,
                spec: SubscriberSpec {
                    // What the control plane gives a non-simulcast track.
                    layers: Some(SubscriberLayers {
                        layout: Layout::Single { temporal: 3 },
                        codec,
                    }),
                    ..subscriber_spec(TRACK, Kind::Video, OUT_SSRC, OUT_PT, FIRST_OUT_SEQ)
                },
            },
        );
        core.handle_input(
            now,
            CoreInput::AddFanout {
                track: TRACK,
                core: 0,
            },
        );
        Self {
            core,
            now,
            publisher,
            subscriber,
            plis: 0,
        }
    }

    /// The subscriber negotiated the Dependency Descriptor with `ext_id`.
    fn send_dd(&mut self, ext_id: u8) {
        self.core.handle_input(
            self.now,
            CoreInput::SetSendDependencyDescriptor {
                id: 2,
                track: TRACK,
                ext_id: Some(ext_id),
            },
        );
    }

    fn prefer(&mut self, spatial: u8, temporal: u8) {
        self.core.handle_input(
            self.now,
            CoreInput::SetPreferredLayers {
                id: 2,
                track: TRACK,
                spatial,
                temporal,
            },
        );
    }

    /// Sends one captured packet; returns the RTP packets the subscriber
    /// got, decrypted.
    fn send(&mut self, rtp: &[u8]) -> Vec<Vec<u8>> {
        self.now += Duration::from_millis(2);
        let mut sealed = Vec::new();
        self.publisher.srtp.encrypt_rtp(rtp, &mut sealed).unwrap();
        self.core
            .handle_datagram(self.now, self.publisher.addr, &sealed);
        let out: Vec<Transmit> = std::iter::from_fn(|| self.core.poll_transmit()).collect();
        for t in out.iter().filter(|t| t.dest == self.publisher.addr) {
            let mut plain = Vec::new();
            if self
                .publisher
                .srtp
                .decrypt_rtcp(&t.data, &mut plain)
                .is_ok()
            {
                self.plis += rtcp::walk(&plain)
                    .filter(|i| format!("{i:?}").contains("Pli"))
                    .count();
            }
        }
        let mut got = Vec::new();
        for t in out.iter().filter(|t| t.dest == self.subscriber.addr) {
            // SRTCP (sender reports) has packet type 200..=206 here.
            if (200..=206).contains(&t.data[1]) {
                continue;
            }
            let mut plain = Vec::new();
            self.subscriber
                .srtp
                .decrypt_rtp(&t.data, &mut plain)
                .unwrap();
            got.push(plain);
        }
        got
    }

    fn events(&mut self) -> Vec<SessionEvent> {
        std::iter::from_fn(|| self.core.poll_event())
            .filter(|(id, _)| *id == 2)
            .map(|(_, e)| e)
            .collect()
    }
}

/// What the subscriber received, mapped back to the captured packets.
struct Received {
    /// Index into the capture of each forwarded packet, in order.
    index: Vec<usize>,
    /// The forwarded packets.
    rtp: Vec<Vec<u8>>,
}

impl Received {
    fn layers(&self, cap: &[Captured]) -> BTreeSet<(u8, u8)> {
        self.index
            .iter()
            .map(|&i| (cap[i].spatial, cap[i].temporal))
            .collect()
    }

    /// Sequence numbers have no gaps (filtering must not look like loss),
    /// and the last forwarded packet of each picture carries the marker.
    fn check_continuity(&self) {
        for w in self.rtp.windows(2) {
            let (a, b) = (
                RtpHeader::parse(&w[0]).unwrap(),
                RtpHeader::parse(&w[1]).unwrap(),
            );
            assert_eq!(
                b.sequence_number(),
                a.sequence_number().wrapping_add(1),
                "no sequence gap from filtering"
            );
            if a.timestamp() != b.timestamp() {
                assert!(
                    a.marker(),
                    "marker on the last forwarded packet of a picture"
                );
            }
        }
    }
}

impl Received {
    /// Every forwarded packet carries the publisher's descriptor (same
    /// frame, same layer) under the subscriber's id, and the receiver's
    /// active decode targets are exactly those within (s, t).
    fn check_forwarded_dd(&self, cap: &[Captured], s: u8, t: u8) {
        let mut cache = None;
        let mut active = None;
        for (&i, p) in self.index.iter().zip(&self.rtp) {
            let h = RtpHeader::parse(p).unwrap();
            let value = Extensions::from_header(&h)
                .unwrap()
                .get(SUB_DD_ID)
                .expect("the forwarded packet carries the descriptor");
            let d = DependencyDescriptor::parse_with_cache(value, &mut cache).unwrap();
            assert_eq!(
                (d.frame.spatial_id, d.frame.temporal_id),
                (cap[i].spatial, cap[i].temporal)
            );
            assert_eq!(
                h.payload(),
                &cap[i].payload[..],
                "payload intact behind the new block"
            );
            let structure = cache.as_ref().unwrap();
            if let Some(m) = d.effective_active_decode_targets(structure) {
                active = Some(m);
            }
            let expected = (0..usize::from(structure.decode_target_count()))
                .filter(|&dt| {
                    let (ds, dtt) = structure.decode_target_layers(dt).unwrap();
                    ds <= s && dtt <= t
                })
                .fold(0u32, |m, dt| m | (1 << dt));
            assert_eq!(
                active,
                Some(expected),
                "active decode targets for ({s}, {t})"
            );
        }
        assert!(!self.index.is_empty());
    }
}

/// Replays `cap`, calling `at(sim, i)` before packet `i`.
fn replay(sim: &mut Sim, cap: &[Captured], mut at: impl FnMut(&mut Sim, usize)) -> Received {
    let by_payload: HashMap<&[u8], usize> = cap
        .iter()
        .enumerate()
        .map(|(i, c)| (c.payload.as_slice(), i))
        .collect();
    let mut r = Received {
        index: Vec::new(),
        rtp: Vec::new(),
    };
    for (i, c) in cap.iter().enumerate() {
        at(sim, i);
        for p in sim.send(&c.rtp) {
            let h = RtpHeader::parse(&p).unwrap();
            assert_eq!(h.ssrc(), OUT_SSRC);
            let idx = *by_payload
                .get(h.payload())
                .expect("payload forwarded unchanged");
            assert_eq!(idx, i, "forwarded in arrival order, without delay");
            r.index.push(idx);
            r.rtp.push(p);
        }
    }
    r
}

fn all_layers(cap: &[Captured]) -> BTreeSet<(u8, u8)> {
    cap.iter().map(|c| (c.spatial, c.temporal)).collect()
}

fn upto(cap: &[Captured], s: u8, t: u8) -> BTreeSet<(u8, u8)> {
    all_layers(cap)
        .into_iter()
        .filter(|&(a, b)| a <= s && b <= t)
        .collect()
}

/// The subscriber's Dependency Descriptor extension id, when it negotiated one.
const SUB_DD_ID: u8 = 12;

/// Each preference, set before the keyframe: exactly the layers at or
/// below it arrive, with continuous sequence numbers and markers.
fn filters_each_preference(name: &str, codec: Codec, dd: bool) {
    let cap = layered(name, codec, dd);
    assert!(cap[0].keyframe_start, "{name} starts with a keyframe");
    let spatial = cap.iter().map(|c| c.spatial).max().unwrap();
    let temporal = cap.iter().map(|c| c.temporal).max().unwrap();
    let dd_id = dd.then(|| dd_ext_id(name));
    for s in 0..=spatial {
        for t in 0..=temporal {
            let mut sim = Sim::new(codec, &cap[0].rtp, dd_id);
            sim.prefer(s, t);
            if dd {
                sim.send_dd(SUB_DD_ID);
            }
            let got = replay(&mut sim, &cap, |_, _| {});
            assert_eq!(
                got.layers(&cap),
                upto(&cap, s, t),
                "{name} prefer ({s}, {t})"
            );
            got.check_continuity();
            if dd {
                got.check_forwarded_dd(&cap, s, t);
            }
            let expected = cap
                .iter()
                .filter(|c| c.spatial <= s && c.temporal <= t)
                .count();
            assert_eq!(
                got.index.len(),
                expected,
                "{name} ({s}, {t}): every packet of those layers"
            );
            let changed = sim.events().into_iter().find_map(|e| match e {
                SessionEvent::LayersChanged {
                    spatial, temporal, ..
                } => Some((spatial, temporal)),
                _ => None,
            });
            assert_eq!(changed, Some((s, t)), "{name}: layers-changed event");
        }
    }
}

#[test]
fn vp9_l3t3_filtered_by_its_scalability_structure() {
    let cap = layered("vp9_l3t3", Codec::Vp9, false);
    assert_eq!(all_layers(&cap).len(), 9, "the capture has all of L3T3");
    filters_each_preference("vp9_l3t3", Codec::Vp9, false);
}

#[test]
fn vp9_l3t3_filtered_by_the_dependency_descriptor() {
    filters_each_preference("vp9_l3t3", Codec::Vp9, true);
}

#[test]
fn av1_l3t3_filtered_by_the_dependency_descriptor() {
    let cap = layered("av1_l3t3", Codec::Av1, true);
    assert_eq!(all_layers(&cap).len(), 9, "the capture has all of L3T3");
    filters_each_preference("av1_l3t3", Codec::Av1, true);
}

#[test]
fn vp8_l1t3_filtered_by_the_dependency_descriptor() {
    // Chromium sends no temporal ids in the VP8 descriptor once the
    // Dependency Descriptor is negotiated: only the descriptor tells.
    let cap = layered("vp8_l1t3", Codec::Vp8, true);
    assert_eq!(all_layers(&cap).len(), 3, "the capture has all of L1T3");
    filters_each_preference("vp8_l1t3", Codec::Vp8, true);
}

#[test]
fn without_structure_every_layer_is_forwarded() {
    // AV1 without the descriptor negotiated: the OBU headers give layer ids
    // but no structure, so the stream stays one layout-less stream and a
    // preference cannot cut spatial layers it cannot see announced.
    let cap = layered("av1_l3t3", Codec::Av1, true);
    let mut sim = Sim::new(Codec::Av1, &cap[0].rtp, None);
    let got = replay(&mut sim, &cap, |_, _| {});
    assert_eq!(got.index.len(), cap.len());
}

/// Mid-stream switches: down at the next picture start, temporal up at a
/// switching point, spatial up only at a keyframe (requested by PLI).
fn switches_mid_stream(name: &str, codec: Codec, dd: bool) {
    let cap = layered(name, codec, dd);
    let dd_id = dd.then(|| dd_ext_id(name));
    let half = cap.len() / 2;
    let mut sim = Sim::new(codec, &cap[0].rtp, dd_id);
    let got = replay(&mut sim, &cap, |sim, i| {
        if i == half {
            sim.prefer(0, 0);
        }
    });
    got.check_continuity();
    let before: BTreeSet<_> = got
        .index
        .iter()
        .filter(|&&i| i < half)
        .map(|&i| (cap[i].spatial, cap[i].temporal))
        .collect();
    assert_eq!(
        before,
        all_layers(&cap),
        "{name}: everything before the switch"
    );
    // The first picture start after the request ends the upper layers.
    let next_picture = (half..cap.len())
        .find(|&i| {
            let h = RtpHeader::parse(&cap[i].rtp).unwrap();
            let prev = RtpHeader::parse(&cap[i - 1].rtp).unwrap();
            h.timestamp() != prev.timestamp()
        })
        .unwrap();
    let after: BTreeSet<_> = got
        .index
        .iter()
        .filter(|&&i| i >= next_picture)
        .map(|&i| (cap[i].spatial, cap[i].temporal))
        .collect();
    assert_eq!(
        after,
        BTreeSet::from([(0, 0)]),
        "{name}: only S0T0 after the switch"
    );

    // Temporal up-switch without a keyframe: from (0, 0) to (0, 2).
    let mut sim = Sim::new(codec, &cap[0].rtp, dd_id);
    sim.prefer(0, 0);
    let got = replay(&mut sim, &cap, |sim, i| {
        if i == half {
            sim.prefer(0, 2);
        }
    });
    got.check_continuity();
    let after: BTreeSet<_> = got
        .index
        .iter()
        .filter(|&&i| i >= half)
        .map(|&i| (cap[i].spatial, cap[i].temporal))
        .collect();
    assert_eq!(
        after,
        upto(&cap, 0, 2),
        "{name}: temporal up at a switching point"
    );
}

#[test]
fn vp9_l3t3_switches_mid_stream() {
    switches_mid_stream("vp9_l3t3", Codec::Vp9, false);
}

#[test]
fn av1_l3t3_switches_mid_stream() {
    switches_mid_stream("av1_l3t3", Codec::Av1, true);
}

#[test]
fn vp9_l3t3_switches_mid_stream_by_the_dependency_descriptor() {
    switches_mid_stream("vp9_l3t3", Codec::Vp9, true);
}

#[test]
fn vp8_l1t3_switches_mid_stream() {
    switches_mid_stream("vp8_l1t3", Codec::Vp8, true);
}

/// A spatial up-switch waits for a keyframe and asks the publisher for one;
/// the capture has none after its first, so the upper layers stay off.
#[test]
fn spatial_up_switch_waits_for_a_requested_keyframe() {
    for (name, codec, dd) in [
        ("vp9_l3t3", Codec::Vp9, false),
        ("av1_l3t3", Codec::Av1, true),
    ] {
        let cap = layered(name, codec, dd);
        let dd_id = dd.then(|| dd_ext_id(name));
        let half = cap.len() / 2;
        let mut sim = Sim::new(codec, &cap[0].rtp, dd_id);
        sim.prefer(0, 2);
        let mut plis_before = 0;
        let got = replay(&mut sim, &cap, |sim, i| {
            if i == half {
                plis_before = sim.plis;
                sim.prefer(2, 2);
            }
        });
        got.check_continuity();
        assert!(
            got.layers(&cap).iter().all(|&(s, _)| s == 0),
            "{name}: no upper spatial layer without a keyframe"
        );
        assert!(
            sim.plis > plis_before,
            "{name}: a keyframe is requested for the up-switch"
        );
    }
}
