//! One Weir core between a simulated publisher and a simulated subscriber,
//! each behind its own pair of emulated links, on a virtual clock.
//!
//! The peers speak real SRTP with the core. The publisher keeps what it
//! sent and answers NACKs with plain retransmissions; the subscriber NACKs
//! its gaps with Weir's own [`NackGenerator`] (the policy a receiver needs
//! is the same on both hops). Every datagram's fate is recorded so a test
//! can tell, per hop, which first transmissions were lost and when each
//! sequence number first arrived.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_dataplane::core::Core;
use weir_dataplane::counters::CoreCounters;
use weir_dataplane::rtcp::nack::{nacked_seqs, write_nack, NackGenerator};
use weir_dataplane::rtcp::{self, RtcpItem};
use weir_dataplane::srtp::{SrtpProfile, SrtpSession};

use super::{Link, LinkConfig};
use crate::common::{
    add_session, forward_vp8, rtp_header, send_check, OUT_SSRC, PUB_PT, PUB_SSRC, VP8_DELTA,
    VP8_KEY,
};

/// Per hop: when each lost first transmission would have arrived, and
/// when each sequence number first did arrive.
#[derive(Default)]
pub struct HopLog {
    /// Sequence number → when its lost first transmission would have
    /// arrived.
    pub lost: HashMap<u16, Instant>,
    /// Sequence number → first arrival at the receiver.
    pub arrived: HashMap<u16, Instant>,
    /// Sequence numbers transmitted at least once.
    sent: HashMap<u16, u32>,
    /// Transmissions beyond the first of a sequence number.
    pub repeats: u64,
}

impl HopLog {
    fn on_send(&mut self, seq: u16, dropped: bool, arrival: Instant) {
        let n = self.sent.entry(seq).or_insert(0);
        *n += 1;
        if *n > 1 {
            self.repeats += 1;
        } else if dropped {
            self.lost.insert(seq, arrival);
        }
    }

    fn on_arrival(&mut self, seq: u16, now: Instant) {
        self.arrived.entry(seq).or_insert(now);
    }

    /// How late each loss sent before `until` was repaired (`None`: never).
    pub fn repair_delays(&self, until: Instant) -> Vec<Option<Duration>> {
        self.lost
            .iter()
            .filter(|(_, at)| **at < until)
            .map(|(seq, at)| {
                self.arrived
                    .get(seq)
                    .map(|got| got.saturating_duration_since(*at))
            })
            .collect()
    }
}

/// RTP and RTCP share the port (RFC 5761): RTCP packet types 192–223.
fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && (192..=223).contains(&data[1])
}

fn rtp_seq(data: &[u8]) -> u16 {
    u16::from_be_bytes([data[2], data[3]])
}

/// The links of one room: publisher → core, core → publisher,
/// core → subscriber, subscriber → core.
pub struct Links {
    pub up: LinkConfig,
    pub down: LinkConfig,
}

pub struct Room {
    pub core: Core,
    pub now: Instant,
    pub counters: Arc<CoreCounters>,
    pub pub_addr: SocketAddr,
    pub sub_addr: SocketAddr,
    pub_srtp: SrtpSession,
    sub_srtp: SrtpSession,
    pub pub_to_core: Link,
    pub core_to_pub: Link,
    pub core_to_sub: Link,
    pub sub_to_core: Link,
    /// Publisher side.
    next_seq: u16,
    history: HashMap<u16, Vec<u8>>,
    pub retransmissions: u64,
    /// Subscriber side.
    pub sub_nack: NackGenerator,
    next_sub_tick: Instant,
    /// Per-hop logs.
    pub hop_pub: HopLog,
    pub hop_sub: HopLog,
    /// Datagrams the subscriber could decrypt, by kind.
    pub sub_rtp: u64,
    pub sub_rtcp: u64,
}

/// How often the simulated subscriber looks at its NACK list between
/// packets (Chrome's NACK module runs every 20 ms).
const SUB_TICK: Duration = Duration::from_millis(20);

impl Room {
    /// A connected publisher (session 1) and video subscriber (session 2)
    /// of one VP8 track, the publisher's links built from `publisher` and
    /// the subscriber's from `subscriber`, each direction with its own seed.
    pub fn new(publisher: LinkConfig, subscriber: LinkConfig, seed: u64) -> Self {
        let now = Instant::now();
        let counters = Arc::new(CoreCounters::default());
        let mut core = Core::new(0, Duration::from_secs(30), counters.clone(), now);
        let mut srtps = Vec::new();
        let addrs = [
            SocketAddr::from(([127, 0, 0, 1], 5000)),
            SocketAddr::from(([127, 0, 0, 1], 6000)),
        ];
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let seed = 10 * (i as u8 + 1);
            let (server, srtp) = add_session(&mut core, now, id, seed, SrtpProfile::AeadAes128Gcm);
            srtps.push(srtp);
            send_check(&mut core, now, *addr, &server);
        }
        while core.poll_transmit().is_some() {}
        forward_vp8(&mut core, now);
        while core.poll_event().is_some() {}
        let sub_srtp = srtps.pop().expect("two peers");
        let pub_srtp = srtps.pop().expect("two peers");
        let mut sub_nack = NackGenerator::default();
        sub_nack.set_rtt(2 * subscriber.mean_delay());
        Self {
            core,
            now,
            counters,
            pub_addr: addrs[0],
            sub_addr: addrs[1],
            pub_srtp,
            sub_srtp,
            pub_to_core: Link::new(publisher, seed),
            core_to_pub: Link::new(publisher, seed.wrapping_add(1)),
            core_to_sub: Link::new(subscriber, seed.wrapping_add(2)),
            sub_to_core: Link::new(subscriber, seed.wrapping_add(3)),
            next_seq: 1000,
            history: HashMap::new(),
            retransmissions: 0,
            sub_nack,
            next_sub_tick: now + SUB_TICK,
            hop_pub: HopLog::default(),
            hop_sub: HopLog::default(),
            sub_rtp: 0,
            sub_rtcp: 0,
        }
    }

    /// The publisher sends its next packet of `payload_len` bytes (a
    /// keyframe start if `keyframe`).
    pub fn publish(&mut self, keyframe: bool, payload_len: usize) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let mut p = rtp_header(PUB_PT, seq, u32::from(seq) * 3000, PUB_SSRC);
        let start = if keyframe { VP8_KEY } else { VP8_DELTA };
        p.extend_from_slice(start);
        p.resize(12 + payload_len.max(start.len()), 0x55);
        self.history.insert(seq, p.clone());
        self.history.remove(&seq.wrapping_sub(2000));
        self.publisher_send(seq, &p);
    }

    fn publisher_send(&mut self, seq: u16, plain: &[u8]) {
        let mut sealed = Vec::new();
        self.pub_srtp
            .encrypt_rtp(plain, &mut sealed)
            .expect("publisher can encrypt");
        let sent = self.pub_to_core.send(self.now, sealed);
        self.hop_pub.on_send(seq, sent.dropped, sent.arrival);
    }

    /// When something next happens inside the room.
    fn next_event(&self) -> Instant {
        [
            Some(self.core.poll_timeout()),
            Some(self.next_sub_tick),
            self.pub_to_core.next_arrival(),
            self.core_to_pub.next_arrival(),
            self.core_to_sub.next_arrival(),
            self.sub_to_core.next_arrival(),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("timers always exist")
    }

    /// Runs everything due up to `until`, event by event.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next = self.next_event().max(self.now);
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            self.step();
        }
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(d) = self.pub_to_core.poll(now) {
            if !is_rtcp(&d) {
                self.hop_pub.on_arrival(rtp_seq(&d), now);
            }
            self.core.handle_datagram(now, self.pub_addr, &d);
        }
        while let Some(d) = self.sub_to_core.poll(now) {
            self.core.handle_datagram(now, self.sub_addr, &d);
        }
        self.core.handle_timeout(now);
        self.flush_core();
        while let Some(d) = self.core_to_pub.poll(now) {
            self.publisher_receive(&d);
        }
        while let Some(d) = self.core_to_sub.poll(now) {
            self.subscriber_receive(&d);
        }
        if now >= self.next_sub_tick {
            self.next_sub_tick = now + SUB_TICK;
            self.subscriber_nack();
        }
    }

    /// Hands what the core wants to send to the links.
    fn flush_core(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            if t.dest == self.pub_addr {
                self.core_to_pub.send(self.now, t.data);
            } else if t.dest == self.sub_addr {
                let rtp = !is_rtcp(&t.data);
                let seq = rtp.then(|| rtp_seq(&t.data));
                let sent = self.core_to_sub.send(self.now, t.data);
                if let Some(seq) = seq {
                    self.hop_sub.on_send(seq, sent.dropped, sent.arrival);
                }
            }
        }
    }

    fn publisher_receive(&mut self, data: &[u8]) {
        let mut plain = Vec::new();
        if self.pub_srtp.decrypt_rtcp(data, &mut plain).is_err() {
            return;
        }
        let mut wanted = Vec::new();
        for item in rtcp::walk(&plain).flatten() {
            if let RtcpItem::Nack { media_ssrc, fci } = item {
                if media_ssrc == PUB_SSRC {
                    wanted.extend(nacked_seqs(fci));
                }
            }
        }
        for seq in wanted {
            if let Some(p) = self.history.get(&seq).cloned() {
                self.retransmissions += 1;
                self.publisher_send(seq, &p);
            }
        }
    }

    fn subscriber_receive(&mut self, data: &[u8]) {
        let mut plain = Vec::new();
        if is_rtcp(data) {
            if self.sub_srtp.decrypt_rtcp(data, &mut plain).is_ok() {
                self.sub_rtcp += 1;
            }
            return;
        }
        // A duplicate fails SRTP replay protection, as it would in a browser.
        if self.sub_srtp.decrypt_rtp(data, &mut plain).is_err() {
            return;
        }
        self.sub_rtp += 1;
        let seq = rtp_seq(&plain);
        self.hop_sub.on_arrival(seq, self.now);
        // The run is far shorter than a wrap of the output numbers.
        self.sub_nack.on_packet(self.now, u64::from(seq));
        if self.sub_nack.has_missing() {
            self.subscriber_nack();
        }
    }

    fn subscriber_nack(&mut self) {
        let mut fci = [0u8; 64];
        let n = self.sub_nack.poll(self.now, &mut fci);
        if n == 0 {
            return;
        }
        let mut pkt = [0u8; 80];
        let len = write_nack(&mut pkt, 9, OUT_SSRC, &fci[..n]).expect("room for the NACK");
        let mut sealed = Vec::new();
        self.sub_srtp
            .encrypt_rtcp(&pkt[..len], &mut sealed)
            .expect("subscriber can encrypt");
        self.sub_to_core.send(self.now, sealed);
    }
}
