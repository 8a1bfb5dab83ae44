//! SVC layer facts across the relay: an AV1 L3T3 capture from Chromium
//! (`codecs/tests/fixtures/av1_l3t3`) is fed into a track of server A with
//! the facts A's data plane derives for a local publisher (payload, the
//! Dependency Descriptor with its cached template structure, the
//! switch-up point, the announced layer structure); server B pulls the
//! track over a real QUIC relay connection on 127.0.0.1, and every packet
//! B's router hands to its subscribers must carry the very same facts,
//! the descriptor's position included, so B's layer selector decides as
//! A's would.
//!
//! Then the same capture through a real subscriber: a webrtc-rs peer on B
//! prefers spatial 1, temporal 1, and receives exactly the capture's
//! packets of those layers and below (A already leaves out the others,
//! told by B), the top wanted layer included.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::peers::{new_api, wait_connected, SubPeer};
use common::{free_base_port, run, within};
use weir::relay::{PulledTrack, RelayConfig, RelayEndpoint, RelayPeer};
use weir::{
    CodecParams, MediaKind, RemoteTrack, RemoteTrackSpec, Router, RouterConfig, TransportId,
    Worker, WorkerConfig,
};
use weir_codecs::{
    facts_with_descriptor, Codec, DependencyDescriptor, DependencyStructure, Extensions, RtpHeader,
};
use weir_dataplane::layers::StreamLayers;
use weir_dataplane::packet::{LayerFacts, MediaPacket};
use weir_dataplane::packet_pool::PacketRef;

const DD_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
const SECRET: &[u8] = b"relay svc test secret";
const TIMEOUT: Duration = Duration::from_secs(20);

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("codecs/tests/fixtures")
}

/// The packets of a capture (big-endian u16 length, then one RTP packet).
fn load_packets(name: &str) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(fixtures().join(format!("{name}.rtpdump")))?;
    let mut out = Vec::new();
    let mut rest = &data[..];
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        ensure!(rest.len() >= 2 + len, "truncated capture");
        out.push(rest[2..2 + len].to_vec());
        rest = &rest[2 + len..];
    }
    Ok(out)
}

fn dd_ext_id(name: &str) -> Result<u8> {
    let meta = std::fs::read_to_string(fixtures().join(format!("{name}.meta")))?;
    meta.lines()
        .find_map(|l| {
            let (id, uri) = l.strip_prefix("extmap ")?.split_once(' ')?;
            (uri == DD_URI).then(|| id.parse().ok())?
        })
        .context("the capture negotiated the Dependency Descriptor")
}

/// The packet as the publisher's core would share it: its facts derived
/// from the payload and the Dependency Descriptor (the same steps as the
/// data plane's `video_layer_facts`).
fn published(
    raw: &[u8],
    dd_id: u8,
    cache: &mut Option<DependencyStructure>,
) -> Result<MediaPacket> {
    let h = RtpHeader::parse(raw)?;
    let mut dd_at = None;
    let dd = Extensions::from_header(&h)
        .ok()
        .and_then(|e| e.get(dd_id))
        .and_then(|value| {
            let d = DependencyDescriptor::parse_with_cache(value, cache).ok()?;
            let offset = value.as_ptr() as usize - raw.as_ptr() as usize;
            dd_at = Some((u16::try_from(offset).ok()?, u8::try_from(value.len()).ok()?));
            Some(d)
        });
    let structure = match &dd {
        Some(d) if d.structure_attached => {
            cache.as_ref().map(StreamLayers::from_dependency_structure)
        }
        _ => None,
    };
    let f = facts_with_descriptor(Codec::Av1, h.payload(), dd.as_ref())?;
    let switch_up_to = match (&dd, cache.as_ref()) {
        (Some(d), Some(s)) if f.switching_point && f.frame_start => {
            s.switch_up_to(&d.frame.dtis).unwrap_or(0)
        }
        _ => 0,
    };
    Ok(MediaPacket {
        data: raw.to_vec(),
        payload_offset: h.header_len(),
        payload_len: h.payload().len(),
        seq: h.sequence_number(),
        timestamp: h.timestamp(),
        ssrc: h.ssrc(),
        marker: h.marker(),
        keyframe: f.keyframe && f.frame_start,
        layers: LayerFacts {
            encoding: 0,
            spatial: f.spatial_id.unwrap_or(0),
            temporal: f.temporal_id.unwrap_or(0),
            frame_start: f.frame_start,
            frame_end: f.frame_end || h.marker(),
            switching_point: f.switching_point,
            switch_up_to,
            structure,
            dd: dd_at,
        },
        sender_report: None,
    })
}

/// Servers A and B (workers with router "room", relay endpoints, B
/// connected to A), the AV1 track "av1" added on A and pulled into B.
/// Everything is kept: dropping the peer or a router would end the relay.
struct Relayed {
    wa: Worker,
    wb: Worker,
    ra: Router,
    rb: Router,
    a: RelayEndpoint,
    b: RelayEndpoint,
    peer: RelayPeer,
    source: RemoteTrack,
    pulled: PulledTrack,
}

async fn relayed_av1(config: WorkerConfig) -> Result<Relayed> {
    let (wa, wb) = (
        Worker::new(config.clone()).await?,
        Worker::new(WorkerConfig {
            media_port: if config.media_port == 0 {
                0
            } else {
                free_base_port(4)
            },
            ..config
        })
        .await?,
    );
    let room = || RouterConfig {
        id: Some("room".into()),
    };
    let (ra, rb) = (wa.create_router(room()), wb.create_router(room()));
    let a = RelayEndpoint::bind(RelayConfig::new("a", SECRET.to_vec())).await?;
    let b = RelayEndpoint::bind(RelayConfig::new("b", SECRET.to_vec())).await?;
    a.serve_router(&ra);
    let peer = within(TIMEOUT, "connect", b.connect(a.local_addr()?)).await??;
    let source = ra.add_remote_track(RemoteTrackSpec {
        id: "av1".into(),
        kind: MediaKind::Video,
        codec: CodecParams {
            name: "AV1".into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: None,
            rtcp_fb: vec!["nack".into(), "nack pli".into()],
        },
        encodings: 1,
        origin: TransportId("capture".into()),
    })?;
    let pulled = within(TIMEOUT, "pull", peer.pull(ra.id(), &"av1".into(), &rb)).await??;
    Ok(Relayed {
        wa,
        wb,
        ra,
        rb,
        a,
        b,
        peer,
        source,
        pulled,
    })
}

#[test]
fn av1_svc_facts_cross_the_relay_unchanged() {
    run("relay svc facts", Duration::from_secs(90), || async {
        let name = "av1_l3t3";
        let dd_id = dd_ext_id(name)?;
        let mut cache = None;
        let packets: Vec<MediaPacket> = load_packets(name)?
            .iter()
            .map(|raw| published(raw, dd_id, &mut cache))
            .collect::<Result<_>>()?;
        // The capture has what this test is about.
        ensure!(packets
            .iter()
            .any(|p| p.layers.spatial == 2 && p.layers.temporal == 2));
        ensure!(packets
            .iter()
            .any(|p| p.layers.switch_up_to > p.layers.temporal));
        ensure!(packets.iter().any(|p| p.layers.structure
            == Some(StreamLayers {
                spatial: 3,
                temporal: 3
            })));
        ensure!(packets.iter().all(|p| p.layers.dd.is_some()));

        let Relayed {
            wa,
            wb,
            ra: _ra,
            rb,
            a,
            b,
            peer: _peer,
            source,
            pulled,
        } = relayed_av1(WorkerConfig {
            media_port: 0,
            cores: 1,
            ..WorkerConfig::default()
        })
        .await?;
        let mut tap = rb.tap_track(&pulled.info().id, 4096)?;

        // Fed a few at a time: a burst of 400 datagrams at once could
        // overflow a loaded machine's socket buffer, which is not the
        // point here.
        for chunk in packets.chunks(20) {
            source.push_batch(chunk.iter().cloned().map(PacketRef::from).collect());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut got = Vec::new();
        within(TIMEOUT, "every packet on B", async {
            while got.len() < packets.len() {
                match tap.recv().await {
                    Some(p) => got.push(p),
                    None => break,
                }
            }
        })
        .await?;
        ensure!(
            got.len() == packets.len(),
            "B got {} of {} packets",
            got.len(),
            packets.len()
        );
        for (want, got) in packets.iter().zip(&got) {
            ensure!(
                got.seq == want.seq && got.data == want.data,
                "packet {} differs",
                want.seq
            );
            ensure!(
                got.layers == want.layers && got.keyframe == want.keyframe,
                "packet {}: facts on B {:?} (keyframe {}), on A {:?} (keyframe {})",
                want.seq,
                got.layers,
                got.keyframe,
                want.layers,
                want.keyframe
            );
        }
        drop((tap, pulled, source));
        a.close().await;
        b.close().await;
        wa.close().await;
        wb.close().await;
        Ok(())
    });
}

#[test]
fn a_subscriber_on_b_gets_exactly_its_preferred_svc_layers() {
    run("relay svc subscriber", Duration::from_secs(120), || async {
        let name = "av1_l3t3";
        let dd_id = dd_ext_id(name)?;
        let mut cache = None;
        let packets: Vec<MediaPacket> = load_packets(name)?
            .iter()
            .map(|raw| published(raw, dd_id, &mut cache))
            .collect::<Result<_>>()?;
        ensure!(packets[0].keyframe, "the capture starts with a keyframe");
        // Each payload (AV1 crosses unchanged) names its layers.
        let layers: HashMap<Vec<u8>, (u8, u8)> = packets
            .iter()
            .map(|p| {
                (
                    p.data[p.payload_offset..p.payload_offset + p.payload_len].to_vec(),
                    (p.layers.spatial, p.layers.temporal),
                )
            })
            .collect();
        ensure!(layers.len() == packets.len(), "payloads are unique");

        let Relayed {
            wa,
            wb,
            ra: _ra,
            rb,
            a,
            b,
            peer: _peer,
            source,
            pulled,
        } = relayed_av1(WorkerConfig {
            media_ip: IpAddr::from([127, 0, 0, 1]),
            media_port: free_base_port(4),
            cores: 2,
            ..WorkerConfig::default()
        })
        .await?;

        let api = new_api()?;
        let mut sub = SubPeer::new(&api, "svc-sub-on-b").await?;
        let transport = rb
            .create_subscribe_transport(Default::default())
            .await
            .context("create_subscribe_transport")?;
        let (vs, offer) = transport
            .subscribe(&pulled.info().id)
            .await
            .context("subscribe")?;
        vs.set_preferred_layers(1, 1);
        transport.set_answer(&sub.answer(&offer).await?).await?;
        wait_connected(&mut sub.state, "svc-sub-on-b").await?;
        // B has told A what its subscriber wants before any media flows.
        within(TIMEOUT, "A to hear B's wanted layers", async {
            while a.counters().get("layer_updates_received").unwrap_or(0) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await?;

        // At the capture's own pace (its RTP clock), a burst per frame.
        let t0 = tokio::time::Instant::now();
        let ts0 = packets[0].timestamp;
        let expected = packets
            .iter()
            .filter(|p| p.layers.spatial <= 1 && p.layers.temporal <= 1)
            .count();
        let feeder = {
            let packets = packets.clone();
            tokio::spawn(async move {
                for p in packets {
                    let due = Duration::from_micros(
                        u64::from(p.timestamp.wrapping_sub(ts0)) * 1_000 / 90,
                    );
                    tokio::time::sleep_until(t0 + due).await;
                    source.push(PacketRef::from(p));
                }
                source
            })
        };
        let video = sub.next_track(TIMEOUT).await?;
        let source = feeder.await?;
        // Everything fed has been relayed; what the subscriber will get has
        // arrived once the count stops growing.
        let mut last = usize::MAX;
        while video.len() != last {
            last = video.len();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let got: Vec<(u8, u8)> = video
            .snapshot()
            .iter()
            .map(|p| {
                layers
                    .get(&p.payload[..])
                    .copied()
                    .context("a received payload that is not in the capture")
            })
            .collect::<Result<_>>()?;
        let mut per_layer = std::collections::BTreeMap::new();
        for l in &got {
            *per_layer.entry(*l).or_insert(0) += 1;
        }
        eprintln!(
            "subscriber on B: {} packets of the capture's {expected} at (1, 1) and below; per (spatial, temporal): {per_layer:?}; A filtered {:?}",
            got.len(),
            a.counters().get("layers_filtered")
        );
        ensure!(!got.is_empty(), "the subscriber got nothing");
        let above: Vec<_> = got.iter().filter(|(s, t)| *s > 1 || *t > 1).collect();
        ensure!(
            above.is_empty(),
            "layers above (1, 1) reached the subscriber: {above:?}"
        );
        ensure!(
            got.contains(&(1, 1)),
            "the subscriber never reached its preferred layers (1, 1)"
        );
        ensure!(
            got.len() <= expected && got.len() * 10 >= expected * 9,
            "the subscriber got {} packets of the capture's {expected} at (1, 1) and below",
            got.len()
        );
        // A knew before the first packet: every packet above (1, 1) stayed
        // there.
        ensure!(
            a.counters().get("layers_filtered").unwrap_or(0) >= (packets.len() - expected) as u64,
            "A relayed layers nobody on B wants"
        );
        sub.close().await;
        drop((transport, pulled, source));
        a.close().await;
        b.close().await;
        wa.close().await;
        wb.close().await;
        Ok(())
    });
}
