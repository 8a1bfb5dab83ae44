//! Whole datagrams into a data-plane core with one publisher and one
//! subscriber: demux, STUN, DTLS hand-up, SRTP/SRTCP and the RTCP paths.
//! The first byte picks the source address, so both checked and unchecked
//! sources are exercised.
#![no_main]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use weir_dataplane::core::{Codec, Core};
use weir_dataplane::counters::{CoreCounters, TransportCounters};
use weir_dataplane::ice::IceCredentials;
use weir_dataplane::srtp::{SrtpKeys, SrtpProfile};
use weir_dataplane::{CoreInput, InboundSpec, Kind, SubscriberSpec};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let now = Instant::now();
    let mut core = Core::new(0, Duration::from_secs(30), Arc::new(CoreCounters::default()), now);
    for id in [1u64, 2] {
        let credentials = IceCredentials::new(format!("ufrag{id}"), "passwordpasswordpassword").unwrap();
        core.handle_input(now, CoreInput::AddSession { id, credentials, counters: Arc::new(TransportCounters::default()) });
        let keys = SrtpKeys {
            profile: SrtpProfile::Aes128CmHmacSha1_80,
            local_key: vec![1; 16],
            local_salt: vec![2; 14],
            remote_key: vec![3; 16],
            remote_salt: vec![4; 14],
        };
        core.handle_input(now, CoreInput::InstallSrtp { id, keys: Box::new(keys) });
    }
    let spec = InboundSpec {
        track: 7,
        mid: "0".into(),
        kind: Kind::Video,
        codec: Codec::Vp8,
        payload_type: 96,
        ssrcs: vec![],
        mid_ext_id: Some(4),
    };
    core.handle_input(now, CoreInput::AddInbound { id: 1, spec });
    let sub = SubscriberSpec { track: 7, owner_core: 0, kind: Kind::Video, out_ssrc: 9, out_pt: 96, first_seq: 0, layers: None };
    core.handle_input(now, CoreInput::AddSubscriber { id: 2, spec: sub });
    core.handle_input(now, CoreInput::AddFanout { track: 7, core: 0 });
    // RTX both ways, FIR and REMB: their paths see the same datagrams.
    core.handle_input(now, CoreInput::SetInboundRtx { id: 1, track: 7, payload_type: Some(97), ssrcs: vec![(5, 6)], rrid_ext_id: Some(11) });
    core.handle_input(now, CoreInput::SetSubscriberRtx { id: 2, track: 7, ssrc: Some(10), payload_type: 97 });
    core.handle_input(now, CoreInput::SetInboundFir { id: 1, track: 7, fir: true });
    core.handle_input(now, CoreInput::SetRemb { id: 1, enabled: true });
    let from = SocketAddr::from(([127, 0, 0, 1 + (pick % 3)], 5000));
    for chunk in rest.split(|b| *b == 0xff) {
        core.handle_datagram(now, from, chunk);
    }
    core.handle_timeout(now + Duration::from_secs(2));
    while core.poll_transmit().is_some() {}
    while core.poll_event().is_some() {}
});
