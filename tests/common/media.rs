//! Synthetic VP8 and Opus RTP payloads that carry a counter, and the checks
//! a subscriber runs on what it received.
//!
//! Every payload ends with a big-endian u32 counter unique within its track,
//! so a received payload can be looked up in the sender's log and compared
//! byte for byte.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

/// Packets of one keyframe (the first starts the partition, the others continue it).
pub const VP8_KEYFRAME_PACKETS: usize = 3;
/// RTP clock ticks per video frame (90 kHz, 30 fps).
pub const VIDEO_TS_STEP: u32 = 3000;
/// RTP clock ticks per audio packet (48 kHz, 20 ms).
pub const AUDIO_TS_STEP: u32 = 960;
/// Opus TOC byte: config 31 (CELT FB 20 ms), mono, one frame.
pub const OPUS_TOC: u8 = 0xF8;

/// One RTP payload the publisher wrote.
#[derive(Debug, Clone)]
pub struct SentPacket {
    pub counter: u32,
    pub payload: Bytes,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    /// First packet of a VP8 keyframe.
    pub keyframe_start: bool,
    pub sent_at: Instant,
}

/// One RTP packet a subscriber received.
#[derive(Debug, Clone)]
pub struct Received {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_type: u8,
    pub marker: bool,
    pub payload: Bytes,
    pub at: Instant,
}

fn filler(counter: u32, len: usize, buf: &mut BytesMut) {
    for i in 0..len {
        buf.put_u8((counter.wrapping_mul(31).wrapping_add(i as u32 * 7) & 0xff) as u8);
    }
}

/// The payloads of one VP8 frame: `(payload, frame_start, keyframe_start)`.
/// `counter` is advanced by one per packet.
pub fn vp8_frame(keyframe: bool, counter: &mut u32) -> Vec<(Bytes, bool, bool)> {
    let packets = if keyframe { VP8_KEYFRAME_PACKETS } else { 1 };
    let mut out = Vec::with_capacity(packets);
    for i in 0..packets {
        let c = *counter;
        *counter = counter.wrapping_add(1);
        let mut b = BytesMut::with_capacity(1024);
        if i == 0 {
            // Payload descriptor: X=0, N=0, S=1, PID=0.
            b.put_u8(0x10);
            // Frame tag (RFC 6386 9.1): P (0 = keyframe), version 0,
            // show_frame 1, first_part_size.
            let first_part_size: u32 = if keyframe { 700 } else { 150 };
            let p_bit = if keyframe { 0 } else { 1 };
            let tag = p_bit | (1 << 4) | (first_part_size << 5);
            b.put_u8((tag & 0xff) as u8);
            b.put_u8(((tag >> 8) & 0xff) as u8);
            b.put_u8(((tag >> 16) & 0xff) as u8);
            if keyframe {
                // Start code, then 640x480 with no scaling.
                b.put_slice(&[0x9d, 0x01, 0x2a]);
                b.put_u16_le(640);
                b.put_u16_le(480);
            }
        } else {
            // Continuation of the partition: S=0, PID=0.
            b.put_u8(0x00);
        }
        let body = if keyframe {
            900
        } else {
            200 + (c % 50) as usize
        };
        filler(c, body, &mut b);
        b.put_u32(c);
        out.push((b.freeze(), i == 0, keyframe && i == 0));
    }
    out
}

/// One Opus payload: TOC byte, filler, counter.
pub fn opus_packet(counter: &mut u32) -> Bytes {
    let c = *counter;
    *counter = counter.wrapping_add(1);
    let mut b = BytesMut::with_capacity(128);
    b.put_u8(OPUS_TOC);
    filler(c, 60 + (c % 20) as usize, &mut b);
    b.put_u32(c);
    b.freeze()
}

/// The counter a payload carries (its last four bytes).
pub fn counter_of(payload: &[u8]) -> Option<u32> {
    let n = payload.len();
    (n >= 5).then(|| {
        u32::from_be_bytes([
            payload[n - 4],
            payload[n - 3],
            payload[n - 2],
            payload[n - 1],
        ])
    })
}

/// Whether a VP8 RTP payload starts a keyframe (S=1, PID=0, P=0 in the frame tag).
pub fn vp8_is_keyframe_start(payload: &[u8]) -> bool {
    let Some(&d0) = payload.first() else {
        return false;
    };
    let mut off = 1;
    if d0 & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        off += 1;
        if x & 0x80 != 0 {
            // Picture id, 7 or 15 bits.
            let Some(&pid) = payload.get(off) else {
                return false;
            };
            off += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            off += 1;
        }
        if x & 0x30 != 0 {
            off += 1;
        }
    }
    let s = d0 & 0x10 != 0;
    let pid = d0 & 0x07;
    s && pid == 0 && payload.get(off).is_some_and(|tag| tag & 0x01 == 0)
}

/// What [`verify_stream`] found.
#[derive(Debug, Default)]
pub struct StreamSummary {
    pub packets: usize,
    pub first_counter: Option<u32>,
    pub last_counter: Option<u32>,
    pub first_is_keyframe: bool,
    pub problems: Vec<String>,
}

impl StreamSummary {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a received stream against the sender's log: every payload is
/// byte-identical to a sent one, counters strictly increase, sequence
/// numbers are continuous, SSRC is `expected_ssrc`, marker bits and RTP
/// timestamp deltas match what was sent.
pub fn verify_stream(
    label: &str,
    received: &[Received],
    sent: &BTreeMap<u32, SentPacket>,
    expected_ssrc: u32,
    is_video: bool,
) -> StreamSummary {
    let mut s = StreamSummary {
        packets: received.len(),
        ..Default::default()
    };
    let mut prev: Option<(&Received, &SentPacket)> = None;
    let mut more = 0usize;
    let mut problem = |s: &mut StreamSummary, msg: String| {
        if s.problems.len() < 25 {
            s.problems.push(format!("{label}: {msg}"));
        } else {
            more += 1;
        }
    };
    for (i, r) in received.iter().enumerate() {
        if r.ssrc != expected_ssrc {
            problem(
                &mut s,
                format!(
                    "pkt #{i} seq {} has SSRC {} but the offer announced {}",
                    r.seq, r.ssrc, expected_ssrc
                ),
            );
        }
        let Some(c) = counter_of(&r.payload) else {
            problem(
                &mut s,
                format!(
                    "pkt #{i} seq {} payload too short ({} bytes)",
                    r.seq,
                    r.payload.len()
                ),
            );
            prev = None;
            continue;
        };
        let Some(orig) = sent.get(&c) else {
            problem(&mut s, format!("pkt #{i} seq {} carries counter {c} that was never sent (payload {} bytes, head {:02x?})", r.seq, r.payload.len(), &r.payload[..r.payload.len().min(12)]));
            prev = None;
            continue;
        };
        if i == 0 {
            s.first_counter = Some(c);
            s.first_is_keyframe = is_video && vp8_is_keyframe_start(&r.payload);
        }
        s.last_counter = Some(c);
        if r.payload != orig.payload {
            let first_diff = r
                .payload
                .iter()
                .zip(orig.payload.iter())
                .position(|(a, b)| a != b);
            problem(
                &mut s,
                format!(
                    "pkt #{i} counter {c}: payload differs from what was sent (got {} bytes, sent {}; first differing byte {:?}; got head {:02x?}, sent head {:02x?})",
                    r.payload.len(),
                    orig.payload.len(),
                    first_diff,
                    &r.payload[..r.payload.len().min(12)],
                    &orig.payload[..orig.payload.len().min(12)]
                ),
            );
        }
        if r.marker != orig.marker {
            problem(
                &mut s,
                format!(
                    "pkt #{i} counter {c}: marker {} but sent {}",
                    r.marker, orig.marker
                ),
            );
        }
        if let Some((p, po)) = prev {
            let pc = counter_of(&p.payload).unwrap_or_default();
            if c <= pc {
                problem(&mut s, format!("pkt #{i}: counter {c} after {pc} (out of order or duplicate; seq {} after {})", r.seq, p.seq));
            }
            let expect_seq = p.seq.wrapping_add(1);
            if r.seq != expect_seq {
                problem(
                    &mut s,
                    format!(
                        "pkt #{i}: seq {} after {} (expected {expect_seq}); counters {pc} -> {c} (sent seqs {} -> {})",
                        r.seq, p.seq, po.seq, orig.seq
                    ),
                );
            }
            let got_dts = r.timestamp.wrapping_sub(p.timestamp);
            let sent_dts = orig.timestamp.wrapping_sub(po.timestamp);
            if got_dts != sent_dts {
                problem(
                    &mut s,
                    format!("pkt #{i} counter {c}: RTP timestamp advanced by {got_dts} but the sender's advanced by {sent_dts}"),
                );
            }
        }
        prev = Some((r, orig));
    }
    if more > 0 {
        s.problems
            .push(format!("{label}: ... and {more} more problems"));
    }
    s
}

/// A short dump of the first packets of a stream, for failure messages.
pub fn dump_head(received: &[Received], n: usize) -> String {
    let mut out = String::new();
    let t0 = received.first().map(|r| r.at);
    for r in received.iter().take(n) {
        let _ = writeln!(
            out,
            "  +{:>5}ms seq {:>5} ts {:>10} ssrc {:>10} pt {:>3} m {} len {:>4} ctr {:?} head {:02x?}",
            t0.map(|t| r.at.duration_since(t).as_millis()).unwrap_or(0),
            r.seq,
            r.timestamp,
            r.ssrc,
            r.payload_type,
            r.marker as u8,
            r.payload.len(),
            counter_of(&r.payload),
            &r.payload[..r.payload.len().min(6)]
        );
    }
    out
}
