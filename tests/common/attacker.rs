//! A hostile sender on 127.0.0.1: its own UDP socket, datagrams that look
//! like STUN, DTLS, SRTP/SRTCP or nothing at all, and a record of whatever
//! comes back.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{Instant, MissedTickBehavior};
use weir_dataplane::ice::stun::{write_binding_request, IceRoleAttr, StunWriter};
use weir_dataplane::ice::{StunClass, StunMethod};

/// Datagrams sent before the sender waits for the next pacing tick. Sending
/// in small bursts keeps the media sockets' receive buffers from
/// overflowing, so the counters must account for every datagram sent.
const BURST: usize = 16;
const BURST_GAP: Duration = Duration::from_millis(2);

/// A small seeded PRNG (xorshift64*), so a failing run can be replayed.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }

    pub fn tid(&mut self) -> [u8; 12] {
        let mut t = [0u8; 12];
        t.copy_from_slice(&self.bytes(12));
        t
    }
}

/// What came back to the attacker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A STUN success response (class bits 0b10): an attack check passed.
    StunSuccess,
    /// A STUN error response.
    StunError,
    /// Any other STUN class.
    StunOther,
    /// Not STUN at all: first byte and length.
    Other { first: Option<u8>, len: usize },
}

impl Reply {
    /// Classified from the raw header (RFC 8489 §5/§6), independently of
    /// Weir's parser.
    pub fn classify(d: &[u8]) -> Reply {
        let stun = d.len() >= 20 && d[0] & 0xC0 == 0 && d[4..8] == [0x21, 0x12, 0xA4, 0x42];
        if !stun {
            return Reply::Other {
                first: d.first().copied(),
                len: d.len(),
            };
        }
        let t = u16::from_be_bytes([d[0], d[1]]);
        match ((t >> 4) & 1) | ((t >> 7) & 2) {
            0b10 => Reply::StunSuccess,
            0b11 => Reply::StunError,
            _ => Reply::StunOther,
        }
    }
}

/// One hostile UDP socket aimed at every media address of a worker.
pub struct Attacker {
    pub sock: UdpSocket,
    pub targets: Vec<SocketAddr>,
}

impl Attacker {
    pub async fn new(targets: Vec<SocketAddr>) -> Result<Self> {
        let sock = UdpSocket::bind(("127.0.0.1", 0))
            .await
            .context("binding the attacker's socket")?;
        Ok(Self { sock, targets })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr().expect("bound socket has an address")
    }

    /// Sends every datagram to every target, in paced bursts. Returns the
    /// number of datagrams sent (datagrams × targets).
    pub async fn send_all(&self, datagrams: &[Vec<u8>]) -> Result<u64> {
        let mut pace = tokio::time::interval(BURST_GAP);
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut sent = 0u64;
        for d in datagrams {
            for t in &self.targets {
                if sent as usize % BURST == 0 {
                    pace.tick().await;
                }
                let n = self
                    .sock
                    .send_to(d, t)
                    .await
                    .with_context(|| format!("attacker send of {} bytes to {t}", d.len()))?;
                anyhow::ensure!(n == d.len(), "short send: {n} of {}", d.len());
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Everything that arrives until nothing has come for `quiet`, at most
    /// `max` datagrams and at most `limit` in all.
    pub async fn collect_replies(
        &self,
        quiet: Duration,
        limit: Duration,
        max: usize,
    ) -> Vec<(SocketAddr, Reply)> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while out.len() < max {
            let wait = quiet.min(deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => out.push((from, Reply::classify(&buf[..n]))),
                // ICMP errors show up as receive errors; they are not replies.
                Ok(Err(_)) => {}
                Err(_) => break,
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        out
    }
}

/// A Binding request shaped like an ICE check (USERNAME, PRIORITY,
/// ICE-CONTROLLING, USE-CANDIDATE, FINGERPRINT) but with no MESSAGE-INTEGRITY.
pub fn stun_check_without_integrity(username: &str, tid: [u8; 12]) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let mut w = StunWriter::new(&mut buf, StunClass::Request, StunMethod::BINDING, tid)
        .expect("buffer holds a header");
    w.username(username)
        .and_then(|w| w.priority(0x6E00_1EFF))
        .and_then(|w| w.ice_role(IceRoleAttr::Controlling(0x1234_5678_9ABC_DEF0)))
        .and_then(|w| w.use_candidate())
        .and_then(|w| w.fingerprint())
        .expect("a short check fits in 1 KiB");
    let n = w.finish();
    buf[..n].to_vec()
}

/// A well-formed ICE check signed with `key`, nominating (USE-CANDIDATE).
pub fn stun_check_signed(username: &str, key: &[u8], tid: [u8; 12]) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let n = write_binding_request(
        &mut buf,
        tid,
        username,
        0x6E00_1EFF,
        true,
        IceRoleAttr::Controlling(0x0FED_CBA9_8765_4321),
        key,
    )
    .expect("a short check fits in 1 KiB");
    buf[..n].to_vec()
}

/// Prefixes of `msg` cut at a spread of lengths (never empty, never whole):
/// inside the header, at its end, inside and between attributes.
pub fn truncations(msg: &[u8]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = vec![1, 2, 3, 4, 8, 19, 20, 21, 24, 28, 32, 36];
    cuts.extend([
        msg.len() / 2,
        msg.len() - 28,
        msg.len() - 8,
        msg.len() - 4,
        msg.len() - 1,
    ]);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.into_iter()
        .filter(|c| *c > 0 && *c < msg.len())
        .map(|c| msg[..c].to_vec())
        .collect()
}

/// A DTLS 1.2 record (content type 22, handshake) carrying what looks like a
/// ClientHello: random, no session id, no cookie, one cipher suite
/// (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), the use_srtp extension.
pub fn dtls_client_hello(record_seq: u64, rng: &mut Prng) -> Vec<u8> {
    let mut body = vec![0xFE, 0xFD];
    body.extend(rng.bytes(32));
    body.push(0); // session id
    body.push(0); // cookie
    body.extend([0x00, 0x02, 0xC0, 0x2B]);
    body.extend([0x01, 0x00]); // compression: null
                               // use_srtp (14): profile SRTP_AES128_CM_HMAC_SHA1_80, no MKI.
    let ext = [0x00, 0x0E, 0x00, 0x05, 0x00, 0x02, 0x00, 0x01, 0x00];
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);

    let len = body.len() as u32;
    let mut hs = vec![1]; // client_hello
    hs.extend(&len.to_be_bytes()[1..]);
    hs.extend([0, 0]); // message_seq
    hs.extend([0, 0, 0]); // fragment_offset
    hs.extend(&len.to_be_bytes()[1..]); // fragment_length
    hs.extend(body);

    let mut rec = vec![22, 0xFE, 0xFD, 0, 0];
    rec.extend(&record_seq.to_be_bytes()[2..]);
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// Other records in DTLS's first-byte range: change_cipher_spec (20), alert
/// (21), application data (23), a bare record header, one byte of each.
pub fn dtls_other_records(rng: &mut Prng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ct in [20u8, 21, 23, 63] {
        let mut rec = vec![ct, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 7];
        let body = rng.bytes(48);
        rec.extend((body.len() as u16).to_be_bytes());
        rec.extend(body);
        out.push(rec);
    }
    out.push(vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]);
    out.extend([20u8, 22, 63].map(|b| vec![b]));
    out
}

/// An RTP packet with version 2 and random bytes where an SRTP payload and
/// 10-byte authentication tag would be.
pub fn srtp_like(
    ssrc: u32,
    seq: u16,
    pt: u8,
    marker: bool,
    body: usize,
    rng: &mut Prng,
) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend(seq.to_be_bytes());
    p.extend((rng.next_u64() as u32).to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend(rng.bytes(body + 10));
    p
}

/// SRTCP-shaped packets: a sender report and a PLI naming `media_ssrc`,
/// followed by an E-flag/index word and a random tag.
pub fn srtcp_like(sender_ssrc: u32, media_ssrc: u32, rng: &mut Prng) -> Vec<Vec<u8>> {
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend(sender_ssrc.to_be_bytes());
    sr.extend(rng.bytes(20));
    let mut pli = vec![0x81, 206, 0, 2];
    pli.extend(sender_ssrc.to_be_bytes());
    pli.extend(media_ssrc.to_be_bytes());
    let mut out = vec![sr, pli];
    for p in &mut out {
        p.extend([0x80, 0, 0, 1]);
        p.extend(rng.bytes(10));
    }
    out
}

/// Random datagrams, one per size in `sizes`. Every other non-empty one has
/// its first byte forced into a range RFC 7983 assigns to nothing Weir
/// speaks (64..=127 or 192..=255); returns them with how many are surely of
/// no known class (those plus the empty ones).
pub fn garbage(sizes: &[usize], rng: &mut Prng) -> (Vec<Vec<u8>>, u64) {
    let mut unknown = 0u64;
    let mut out = Vec::with_capacity(sizes.len());
    for (i, &n) in sizes.iter().enumerate() {
        let mut d = rng.bytes(n);
        if n == 0 {
            unknown += 1;
        } else if i % 2 == 0 {
            let r = (rng.next_u64() % 128) as u8;
            d[0] = if r < 64 { 64 + r } else { 128 + r };
            unknown += 1;
        }
        out.push(d);
    }
    (out, unknown)
}
