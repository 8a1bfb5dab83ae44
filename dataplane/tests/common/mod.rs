//! Setup shared by the data-plane tests that drive a [`Core`] by hand on
//! simulated time: SRTP keys, sessions that passed their ICE check, the
//! specs of a forwarded track, RTP packet builders, and an allocation
//! counter. Each test binary uses a part of it.
#![allow(dead_code)]

pub mod counting;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use weir_dataplane::core::{Codec, Core};
use weir_dataplane::counters::TransportCounters;
use weir_dataplane::ice::stun::{write_binding_request, IceRoleAttr};
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::layers::Layout;
use weir_dataplane::srtp::{SrtpKeys, SrtpProfile, SrtpSession};
use weir_dataplane::{CoreInput, InboundSpec, Kind, SubscriberSpec};

/// The video track most scenarios forward from session 1 to session 2.
pub const TRACK: u64 = 100;
/// The publisher's SSRC and payload type for [`TRACK`].
pub const PUB_SSRC: u32 = 1111;
pub const PUB_PT: u8 = 96;
/// What the subscriber of [`TRACK`] gets: its SSRC, payload type and first
/// sequence number.
pub const OUT_SSRC: u32 = 5555;
pub const OUT_PT: u8 = 100;
pub const FIRST_OUT_SEQ: u16 = 7;

/// A VP8 keyframe's first packet: descriptor S=1 PID=0, payload header P=0
/// with the keyframe start code.
pub const VP8_KEY: &[u8] = &[
    0x10, 0x50, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 0xaa,
];
/// A VP8 interframe's first packet (P=1).
pub const VP8_DELTA: &[u8] = &[0x10, 0x51, 0x02, 0x00, 0xbb, 0xcc];

/// The server's and the client's side of one session's SRTP keys: the
/// bytes `seed..seed + 4` as key and salt material, crossed over, so each
/// side decrypts what the other encrypts.
pub fn srtp_keys(seed: u8, profile: SrtpProfile) -> (SrtpKeys, SrtpKeys) {
    let k = |b: u8| vec![b; profile.key_len()];
    let s = |b: u8| vec![b; profile.salt_len()];
    let server = SrtpKeys {
        profile,
        local_key: k(seed),
        local_salt: s(seed + 1),
        remote_key: k(seed + 2),
        remote_salt: s(seed + 3),
    };
    let client = SrtpKeys {
        profile,
        local_key: k(seed + 2),
        local_salt: s(seed + 3),
        remote_key: k(seed),
        remote_salt: s(seed + 1),
    };
    (server, client)
}

/// Adds session `id` to `core` with fresh ICE credentials and installs the
/// server side of `srtp_keys(seed, profile)`, as the control plane does
/// once DTLS is done. Returns the credentials (the client's checks must be
/// signed with them) and the client's SRTP session.
pub fn add_session(
    core: &mut Core,
    now: Instant,
    id: u64,
    seed: u8,
    profile: SrtpProfile,
) -> (IceCredentials, SrtpSession) {
    let counters = Arc::new(TransportCounters::default());
    add_session_with_counters(core, now, id, counters, seed, profile)
}

/// [`add_session`] with the session's counters given, for a test that
/// reads them.
pub fn add_session_with_counters(
    core: &mut Core,
    now: Instant,
    id: u64,
    counters: Arc<TransportCounters>,
    seed: u8,
    profile: SrtpProfile,
) -> (IceCredentials, SrtpSession) {
    let server = IceCredentials::generate();
    core.handle_input(
        now,
        CoreInput::AddSession {
            id,
            credentials: server.clone(),
            counters,
        },
    );
    let (server_keys, client_keys) = srtp_keys(seed, profile);
    core.handle_input(
        now,
        CoreInput::InstallSrtp {
            id,
            keys: Box::new(server_keys),
        },
    );
    let client = SrtpSession::new(&client_keys).expect("valid keys");
    (server, client)
}

/// A client's ICE check for the session of `server` (controlling, with
/// USE-CANDIDATE), its integrity computed with `key` (the session's
/// password, unless a test wants a wrong one).
pub fn binding_request(server: &IceCredentials, key: &[u8]) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let username = format!("{}:client", server.ufrag());
    let n = write_binding_request(
        &mut buf,
        [7; 12],
        &username,
        1,
        true,
        IceRoleAttr::Controlling(42),
        key,
    )
    .expect("room for a binding request");
    buf[..n].to_vec()
}

/// The client at `addr` sends a valid check for the session of `server`:
/// the core answers it and takes `addr` as the session's address. The
/// answer stays queued for the caller to drain or check.
pub fn send_check(core: &mut Core, now: Instant, addr: SocketAddr, server: &IceCredentials) {
    let request = binding_request(server, server.pwd().as_bytes());
    core.handle_datagram(now, addr, &request);
}

/// An inbound track on mid "0" without the mid header extension.
pub fn inbound_spec(
    track: u64,
    kind: Kind,
    codec: Codec,
    payload_type: u8,
    ssrcs: Vec<u32>,
) -> InboundSpec {
    InboundSpec {
        track,
        mid: "0".into(),
        kind,
        codec,
        payload_type,
        ssrcs,
        mid_ext_id: None,
    }
}

/// A subscription to `track` of core 0, without layer selection.
pub fn subscriber_spec(
    track: u64,
    kind: Kind,
    out_ssrc: u32,
    out_pt: u8,
    first_seq: u16,
) -> SubscriberSpec {
    SubscriberSpec {
        track,
        owner_core: 0,
        kind,
        out_ssrc,
        out_pt,
        first_seq,
        layers: None,
    }
}

/// Session 1 publishes VP8 [`TRACK`] (from [`PUB_SSRC`]) and session 2
/// subscribes to it, both on `core` (core 0).
pub fn forward_vp8(core: &mut Core, now: Instant) {
    core.handle_input(
        now,
        CoreInput::AddInbound {
            id: 1,
            spec: inbound_spec(TRACK, Kind::Video, Codec::Vp8, PUB_PT, vec![PUB_SSRC]),
        },
    );
    core.handle_input(
        now,
        CoreInput::AddSubscriber {
            id: 2,
            spec: subscriber_spec(TRACK, Kind::Video, OUT_SSRC, OUT_PT, FIRST_OUT_SEQ),
        },
    );
    core.handle_input(
        now,
        CoreInput::AddFanout {
            track: TRACK,
            core: 0,
        },
    );
}

/// What probing session 2 needs: an RTX stream for its subscription to
/// [`TRACK`] (SSRC 7777, payload type 101) to carry the padding, and
/// transport-cc toward it under extension `ext_id`.
pub fn probing_inputs(ext_id: u8) -> [CoreInput; 2] {
    [
        CoreInput::SetSubscriberRtx {
            id: 2,
            track: TRACK,
            ssrc: Some(7777),
            payload_type: 101,
        },
        CoreInput::SetSendTransportCc {
            id: 2,
            ext_id: Some(ext_id),
        },
    ]
}

/// Session 1 publishes [`TRACK`] as VP8 simulcast (rids q, h, f, named by
/// the mid extension, id 4, and the rtp-stream-id extension, id 10; SSRCs
/// learnt from them) and session 2 subscribes with simulcast layer
/// selection. The fan-out is left to the caller, after any further
/// configuration of the subscription.
pub fn simulcast_inputs() -> [CoreInput; 4] {
    [
        CoreInput::AddInbound {
            id: 1,
            spec: InboundSpec {
                mid_ext_id: Some(4),
                ..inbound_spec(TRACK, Kind::Video, Codec::Vp8, PUB_PT, vec![])
            },
        },
        CoreInput::SetSimulcast {
            id: 1,
            track: TRACK,
            rids: vec!["q".into(), "h".into(), "f".into()],
            rid_ext_id: Some(10),
        },
        CoreInput::AddSubscriber {
            id: 2,
            spec: subscriber_spec(TRACK, Kind::Video, OUT_SSRC, OUT_PT, FIRST_OUT_SEQ),
        },
        CoreInput::ConfigureLayers {
            id: 2,
            track: TRACK,
            layout: Layout::Simulcast {
                encodings: 3,
                temporal: 1,
            },
            codec: Codec::Vp8,
        },
    ]
}

/// A plain RTP header (version 2, no marker, no extension) with payload
/// type `pt`; the caller appends the payload.
pub fn rtp_header(pt: u8, seq: u16, timestamp: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

/// The start of a packet of simulcast encoding `enc` (0..3, SSRC 11 +
/// `enc`) as [`simulcast_inputs`] expects it: the header with the mid and
/// rid extensions, then a VP8 keyframe or interframe start. The caller
/// appends the rest of the payload.
pub fn simulcast_rtp(enc: u8, seq: u16, keyframe: bool) -> Vec<u8> {
    let rid = [b'q', b'h', b'f'][usize::from(enc)];
    let mut p = vec![0x90, PUB_PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&(11 + u32::from(enc)).to_be_bytes());
    // One-byte extensions: mid "0" (id 4), rid (id 10), padded to 8 bytes.
    p.extend_from_slice(&[0xbe, 0xde, 0, 2, 0x40, b'0', 0xa0, rid, 0, 0, 0, 0]);
    p.extend_from_slice(if keyframe { VP8_KEY } else { VP8_DELTA });
    p
}
