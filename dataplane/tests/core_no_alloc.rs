//! Proves that a data-plane core forwards without allocating once warm:
//! a publisher sends video and audio through one [`Core`] to several
//! subscribers, with real SRTP both ways (AEAD_AES_128_GCM and
//! AES128_CM_HMAC_SHA1_80 subscribers), transport-cc toward the publisher,
//! receiver and sender reports, NACKs answered from the retransmission
//! cache and keyframe requests. A counting global allocator watches every
//! call into the core after a warm-up; the datagrams it sends are handed
//! back with [`Core::recycle_transmit`], as the IO backends do.
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::counting::{counted, Counting};
use common::{add_session, inbound_spec, send_check, subscriber_spec};
use weir_codecs::extensions::TransportSequenceNumber;
use weir_codecs::{Extensions, RtpHeader};
use weir_dataplane::core::{Codec, Core};
use weir_dataplane::counters::CoreCounters;
use weir_dataplane::rtcp::twcc::TwccRecorder;
use weir_dataplane::rtcp::{self, nack, report};
use weir_dataplane::srtp::{SrtpProfile, SrtpSession};
use weir_dataplane::{CoreInput, InboundSpec, Kind};

// Counts the allocations of the thread inside `counted` only: the harness's
// other threads and the other test of this file are not counted.
#[global_allocator]
static GLOBAL: Counting = Counting;

const VIDEO: u64 = 1;
const AUDIO: u64 = 2;
const VIDEO_SSRC: u32 = 0x1111;
const AUDIO_SSRC: u32 = 0x2222;
const TWCC_EXT: u8 = 3;
/// The transport-wide sequence number extension id toward subscribers.
const SEND_TWCC_EXT: u8 = 5;
const SUBSCRIBERS: usize = 8;

struct Peer {
    id: u64,
    addr: SocketAddr,
    srtp: SrtpSession,
    rtcp_ssrc: u32,
    /// With bandwidth estimation on: the subscriber's transport-cc side.
    twcc: Option<TwccRecorder>,
}

struct Room {
    core: Core,
    now: Instant,
    counters: Arc<CoreCounters>,
    publisher: Peer,
    subscribers: Vec<Peer>,
    /// Datagrams delivered to each subscriber (and authenticated by it).
    received: Vec<u64>,
    /// Datagrams to the publisher (RTCP feedback) it could authenticate.
    feedback: u64,
    /// Per subscriber: a video packet the network lost on the way (its
    /// sequence number, read from the clear SRTP header), to NACK.
    lost: Vec<Option<u16>>,
    /// Video packets seen, to pick which one to lose.
    video_seen: u64,
    plain: Vec<u8>,
}

impl Room {
    fn add_peer(core: &mut Core, now: Instant, id: u64, profile: SrtpProfile) -> Peer {
        let (server, srtp) = add_session(core, now, id, id as u8 * 4, profile);
        let addr = SocketAddr::from(([127, 0, 0, 1], 5000 + id as u16));
        send_check(core, now, addr, &server);
        Peer {
            id,
            addr,
            srtp,
            rtcp_ssrc: 0x9000 + id as u32,
            twcc: None,
        }
    }

    /// `bwe`: subscribers negotiate transport-cc, so the core stamps their
    /// packets, reads their feedback and estimates bandwidth per subscriber.
    fn new(bwe: bool) -> Self {
        let now = Instant::now();
        let counters = Arc::new(CoreCounters::default());
        let mut core = Core::new(0, Duration::from_secs(30), counters.clone(), now);
        let publisher = Self::add_peer(&mut core, now, 1, SrtpProfile::AeadAes128Gcm);
        for (track, kind, codec, pt, ssrc) in [
            (VIDEO, Kind::Video, Codec::Vp8, 96, VIDEO_SSRC),
            (AUDIO, Kind::Audio, Codec::Opus, 111, AUDIO_SSRC),
        ] {
            core.handle_input(
                now,
                CoreInput::AddInbound {
                    id: 1,
                    spec: InboundSpec {
                        mid: track.to_string(),
                        ..inbound_spec(track, kind, codec, pt, vec![ssrc])
                    },
                },
            );
            core.handle_input(now, CoreInput::AddFanout { track, core: 0 });
        }
        core.handle_input(
            now,
            CoreInput::SetTransportCc {
                id: 1,
                ext_id: Some(TWCC_EXT),
            },
        );
        let mut subscribers = Vec::new();
        for i in 0..SUBSCRIBERS {
            let id = 10 + i as u64;
            let profile = if i % 2 == 0 {
                SrtpProfile::AeadAes128Gcm
            } else {
                SrtpProfile::Aes128CmHmacSha1_80
            };
            let mut peer = Self::add_peer(&mut core, now, id, profile);
            if bwe {
                core.handle_input(
                    now,
                    CoreInput::SetSendTransportCc {
                        id,
                        ext_id: Some(SEND_TWCC_EXT),
                    },
                );
                peer.twcc = Some(TwccRecorder::new(now));
            }
            for (track, kind, pt) in [(VIDEO, Kind::Video, 100), (AUDIO, Kind::Audio, 111)] {
                core.handle_input(
                    now,
                    CoreInput::AddSubscriber {
                        id,
                        spec: subscriber_spec(track, kind, out_ssrc(id, track), pt, 100),
                    },
                );
            }
            subscribers.push(peer);
        }
        while core.poll_event().is_some() {}
        let mut room = Room {
            core,
            now,
            counters,
            publisher,
            subscribers,
            received: vec![0; SUBSCRIBERS],
            feedback: 0,
            lost: vec![None; SUBSCRIBERS],
            video_seen: 0,
            plain: Vec::with_capacity(2048),
        };
        room.drain();
        room
    }

    /// Hands every queued datagram to its peer (outside the counted
    /// calls), then back to the core.
    fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            if t.data.first().is_some_and(|b| *b < 4) {
                // A STUN answer (RFC 7983).
            } else if t.dest == self.publisher.addr {
                if self
                    .publisher
                    .srtp
                    .decrypt_rtcp(&t.data, &mut self.plain)
                    .is_ok()
                {
                    self.feedback += 1;
                }
            } else if let Some(i) = self.subscribers.iter().position(|p| p.addr == t.dest) {
                let peer = &mut self.subscribers[i];
                // RTP (payload type 100 or 111) or SRTCP (sender reports).
                let rtp = matches!(t.data.get(1).map(|b| b & 0x7f), Some(100) | Some(111));
                let video = rtp && t.data[1] & 0x7f == 100;
                if video {
                    self.video_seen += 1;
                }
                let ok = if video && self.video_seen % 97 == 0 && self.lost[i].is_none() {
                    self.lost[i] = Some(u16::from_be_bytes([t.data[2], t.data[3]]));
                    self.core.recycle_transmit(t);
                    continue;
                } else if rtp {
                    let ok = peer.srtp.decrypt_rtp(&t.data, &mut self.plain).is_ok();
                    if let (true, Some(rec)) = (ok, peer.twcc.as_mut()) {
                        let seq = RtpHeader::parse(&self.plain).ok().and_then(|h| {
                            let exts =
                                Extensions::parse(h.extension_profile()?, h.extension_block());
                            let v = exts.ok()?.get(SEND_TWCC_EXT)?;
                            TransportSequenceNumber::parse(v).ok()
                        });
                        if let Some(seq) = seq {
                            rec.on_packet(self.now, seq.0);
                        }
                    }
                    ok
                } else {
                    peer.srtp.decrypt_rtcp(&t.data, &mut self.plain).is_ok()
                };
                assert!(ok, "subscriber {i} authenticates what it gets");
                self.received[i] += 1;
            }
            // Outside any counted call, like the backends' reaping.
            self.core.recycle_transmit(t);
        }
    }
}

fn out_ssrc(id: u64, track: u64) -> u32 {
    0x5000 + (id as u32) * 4 + track as u32
}

/// The header fields of one published RTP packet.
struct Rtp {
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    /// Transport-wide sequence number.
    twcc: u16,
}

/// Encrypts one RTP packet of the publisher (a transport-wide sequence
/// number in a one-byte header extension).
fn publisher_rtp(peer: &mut Peer, h: Rtp, payload: &[u8], out: &mut Vec<u8>) {
    let mut p = Vec::with_capacity(1300);
    p.push(0x90);
    p.push(h.pt | if h.marker { 0x80 } else { 0 });
    p.extend_from_slice(&h.seq.to_be_bytes());
    p.extend_from_slice(&h.ts.to_be_bytes());
    p.extend_from_slice(&h.ssrc.to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01]);
    p.push((TWCC_EXT << 4) | 1);
    p.extend_from_slice(&h.twcc.to_be_bytes());
    p.push(0);
    p.extend_from_slice(payload);
    peer.srtp.encrypt_rtp(&p, out).unwrap();
}

/// A VP8 payload of `len` bytes: a keyframe start, or an interframe.
fn vp8(first: bool, key: bool, len: usize) -> Vec<u8> {
    let mut v = vec![if first { 0x10 } else { 0x00 }, 0x00];
    if first {
        // Payload header: P=0 for a keyframe, with the start code.
        v.extend_from_slice(&[if key { 0x50 } else { 0x51 }, 0x02, 0x00]);
        if key {
            v.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
        }
    }
    v.resize(len, 0xaa);
    v
}

/// Simulated media: 30 fps video of 5-packet frames (keyframe every 2 s),
/// 50 pps audio, and the peers' RTCP. Returns the allocations made inside
/// the core's calls over `duration`.
fn run(room: &mut Room, state: &mut Media, duration: Duration) -> Allocations {
    let end = room.now + duration;
    let mut allocations = Allocations::default();
    let mut datagram = Vec::with_capacity(2048);
    let mut rtcp_buf = [0u8; 256];
    let mut feedback_buf = [0u8; 1200];
    let step = Duration::from_millis(1);
    while room.now < end {
        room.now += step;
        state.ms += 1;
        let now = room.now;
        let from = room.publisher.addr;
        // Video: a frame every 33 ms.
        if state.ms % 33 == 0 {
            let key = state.frame % 60 == 0;
            for k in 0..5 {
                let payload = vp8(k == 0, key, 1100);
                publisher_rtp(
                    &mut room.publisher,
                    Rtp {
                        pt: 96,
                        ssrc: VIDEO_SSRC,
                        seq: state.video_seq,
                        ts: state.frame * 3000,
                        marker: k == 4,
                        twcc: state.twcc,
                    },
                    &payload,
                    &mut datagram,
                );
                state.video_seq = state.video_seq.wrapping_add(1);
                state.twcc = state.twcc.wrapping_add(1);
                let ((), n) = counted(|| room.core.handle_datagram(now, from, &datagram));
                allocations.video += n;
                room.drain();
            }
            state.frame += 1;
        }
        // Audio: a packet every 20 ms.
        if state.ms % 20 == 0 {
            publisher_rtp(
                &mut room.publisher,
                Rtp {
                    pt: 111,
                    ssrc: AUDIO_SSRC,
                    seq: state.audio_seq,
                    ts: state.ms * 48,
                    marker: false,
                    twcc: state.twcc,
                },
                &[0x55; 80],
                &mut datagram,
            );
            state.audio_seq = state.audio_seq.wrapping_add(1);
            state.twcc = state.twcc.wrapping_add(1);
            let ((), n) = counted(|| room.core.handle_datagram(now, from, &datagram));
            allocations.audio += n;
            room.drain();
        }
        // The publisher's sender reports, once a second.
        if state.ms % 1000 == 500 {
            let info = report::SenderInfo {
                ssrc: VIDEO_SSRC,
                ntp: 0x1234_5678_0000_0000 + u64::from(state.ms) * 4_294_967,
                rtp_timestamp: state.frame * 3000,
                packets: 1,
                octets: 1,
            };
            let n = report::write_sr(&mut rtcp_buf, &info).unwrap();
            room.publisher
                .srtp
                .encrypt_rtcp(&rtcp_buf[..n], &mut datagram)
                .unwrap();
            let ((), a) = counted(|| room.core.handle_datagram(now, from, &datagram));
            allocations.publisher_rtcp += a;
        }
        // Each subscriber: a receiver report a second, a NACK for its
        // lost video packet (checked every 250 ms), a PLI every 3 s.
        for i in 0..room.subscribers.len() {
            let phase = (state.ms + 37 * i as u32) % 3000;
            let peer = &mut room.subscribers[i];
            let video_out = out_ssrc(peer.id, VIDEO);
            let len = if phase % 1000 == 0 {
                receiver_report(&mut rtcp_buf, peer.rtcp_ssrc, video_out)
            } else if phase % 250 == 0 {
                let Some(seq) = room.lost[i].take() else {
                    continue;
                };
                let mut fci = [0u8; 4];
                fci[..2].copy_from_slice(&seq.to_be_bytes());
                nack::write_nack(&mut rtcp_buf, peer.rtcp_ssrc, video_out, &fci).unwrap()
            } else if phase == 1 {
                rtcp::write_pli(&mut rtcp_buf, peer.rtcp_ssrc, video_out).unwrap()
            } else {
                continue;
            };
            peer.srtp
                .encrypt_rtcp(&rtcp_buf[..len], &mut datagram)
                .unwrap();
            let addr = peer.addr;
            let ((), n) = counted(|| room.core.handle_datagram(now, addr, &datagram));
            allocations.subscriber_rtcp += n;
            room.drain();
        }
        // Subscribers' transport-cc feedback, when due (every 50 ms).
        for i in 0..room.subscribers.len() {
            let peer = &mut room.subscribers[i];
            let Some(rec) = peer.twcc.as_mut() else {
                continue;
            };
            let Some(len) = rec.poll_feedback(now, peer.rtcp_ssrc, 0, &mut feedback_buf) else {
                continue;
            };
            peer.srtp
                .encrypt_rtcp(&feedback_buf[..len], &mut datagram)
                .unwrap();
            let addr = peer.addr;
            let ((), n) = counted(|| room.core.handle_datagram(now, addr, &datagram));
            allocations.subscriber_twcc += n;
            allocations.subscriber_twcc_calls += 1;
            room.drain();
        }
        // Timers: NACKs, transport-cc feedback, reports, consent.
        if now >= room.core.poll_timeout() {
            let ((), n) = counted(|| room.core.handle_timeout(now));
            allocations.timers += n;
            room.drain();
        }
    }
    allocations
}

/// A receiver report with one block about `media_ssrc`.
fn receiver_report(out: &mut [u8], sender: u32, media_ssrc: u32) -> usize {
    out[0] = 0x81;
    out[1] = 201;
    out[2..4].copy_from_slice(&7u16.to_be_bytes());
    out[4..8].copy_from_slice(&sender.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    out[12..32].fill(0);
    32
}

/// Allocations inside the core's calls, by what the call handled.
#[derive(Debug, Default, PartialEq, Eq)]
struct Allocations {
    video: usize,
    audio: usize,
    publisher_rtcp: usize,
    subscriber_rtcp: usize,
    timers: usize,
    /// Subscribers' transport-cc feedback (bandwidth estimation on).
    subscriber_twcc: usize,
    subscriber_twcc_calls: usize,
}

struct Media {
    ms: u32,
    frame: u32,
    video_seq: u16,
    audio_seq: u16,
    twcc: u16,
}

#[test]
fn steady_state_forwarding_allocates_nothing() {
    let mut room = Room::new(false);
    let mut media = Media {
        ms: 0,
        frame: 0,
        video_seq: 1000,
        audio_seq: 2000,
        twcc: 0,
    };
    // Warm-up: the packet pool, transmit buffers, retransmission caches,
    // replay windows and per-track tables reach their working size.
    run(&mut room, &mut media, Duration::from_secs(10));
    let received_before: u64 = room.received.iter().sum();
    let allocations = run(&mut room, &mut media, Duration::from_secs(10));
    let received: u64 = room.received.iter().sum::<u64>() - received_before;

    // The run did real work: every subscriber got video and audio, the
    // publisher got feedback, NACKs were answered and PLIs went upstream.
    let per_subscriber_min = (10 * (30 * 5 + 50)) as u64 * 9 / 10;
    for (i, r) in room.received.iter().enumerate() {
        assert!(*r >= per_subscriber_min, "subscriber {i} got only {r}");
    }
    assert!(room.feedback > 0, "the publisher got RTCP feedback");
    assert!(room.counters.retransmits_sent.get() > 0, "NACKs answered");
    assert!(room.counters.pli_sent.get() > 0, "PLIs sent upstream");
    assert!(room.counters.twcc_feedback_sent.get() > 0);
    assert!(room.counters.sr_sent.get() > 0 && room.counters.rr_sent.get() > 0);
    assert_eq!(room.counters.drop_srtp.get(), 0);
    assert_eq!(room.counters.packet_pool_misses.get(), 0);

    assert_eq!(
        allocations,
        Allocations::default(),
        "allocations while forwarding {received} datagrams in steady state"
    );
}

/// With bandwidth estimation toward every subscriber: forwarding itself
/// (media in, RTCP) still allocates nothing; only handling a subscriber's
/// transport-cc feedback and the once-a-second reallocation do, in the
/// per-subscriber
/// bandwidth allocation (`bwe::Allocator` builds its demand and result
/// lists), a bounded number of times per feedback packet, never per
/// forwarded packet.
#[test]
fn with_bandwidth_estimation_only_feedback_handling_allocates() {
    let mut room = Room::new(true);
    let mut media = Media {
        ms: 0,
        frame: 0,
        video_seq: 1000,
        audio_seq: 2000,
        twcc: 0,
    };
    run(&mut room, &mut media, Duration::from_secs(10));
    let a = run(&mut room, &mut media, Duration::from_secs(10));
    assert!(room.counters.twcc_feedback_received.get() > 0);
    assert!(a.subscriber_twcc_calls > 0, "subscribers sent feedback");
    assert_eq!(
        (a.video, a.audio, a.publisher_rtcp, a.subscriber_rtcp),
        (0, 0, 0, 0),
        "{a:?}"
    );
    // Timers re-run the same allocation once a second per subscriber (a
    // paused track brings no feedback to trigger it): bounded per run of
    // the allocator, never per packet.
    let reallocations = (SUBSCRIBERS * 10) as f64;
    assert!(
        a.timers as f64 / reallocations <= 16.0,
        "{} allocations per timed reallocation: {a:?}",
        a.timers as f64 / reallocations
    );
    let per_feedback = a.subscriber_twcc as f64 / a.subscriber_twcc_calls as f64;
    assert!(
        per_feedback <= 16.0,
        "{per_feedback} allocations per feedback: {a:?}"
    );
    eprintln!(
        "bandwidth allocation: {per_feedback:.1} allocations per transport-cc feedback ({a:?})"
    );
}
