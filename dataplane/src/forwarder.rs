//! Per-subscriber rewriting: one continuous RTP stream out of whatever the
//! publisher sends (SSRC changes, dropped padding, late joins).
//!
//! A `Forwarder` is a plain struct: it is fed packets and writes the
//! rewritten plain-text RTP packet into a caller-owned buffer.
use crate::packet::{Kind, MediaPacket};

/// The transport-wide sequence number to stamp on an outgoing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccStamp {
    /// The negotiated extension id (1–14).
    pub ext_id: u8,
    /// The transport-wide sequence number.
    pub seq: u16,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Video before the first keyframe.
    WaitingForKeyframe,
    /// A padding-only packet: nothing for the decoder.
    Padding,
    /// The output buffer is too small.
    NoRoom,
}

/// Rewrites one track for one subscriber.
#[derive(Debug)]
pub struct Forwarder {
    out_ssrc: u32,
    out_pt: u8,
    waiting_keyframe: bool,
    /// Source SSRC the offsets below belong to.
    source: Option<u32>,
    /// `out_seq = in_seq + seq_delta` (mod 2^16).
    seq_delta: u16,
    /// `out_ts = in_ts + ts_delta` (mod 2^32).
    ts_delta: u32,
    /// Highest input sequence number seen for `source`.
    last_in_seq: u16,
    last_out_seq: u16,
    last_out_ts: u32,
    started: bool,
}

impl Forwarder {
    /// A forwarder that writes `out_ssrc` / `out_pt`. Video waits for a keyframe.
    pub fn new(kind: Kind, out_ssrc: u32, out_pt: u8, first_seq: u16) -> Self {
        Self {
            out_ssrc,
            out_pt,
            waiting_keyframe: kind == Kind::Video,
            source: None,
            seq_delta: 0,
            ts_delta: 0,
            last_in_seq: 0,
            last_out_seq: first_seq.wrapping_sub(1),
            last_out_ts: 0,
            started: false,
        }
    }

    /// The SSRC this forwarder writes.
    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// Whether video is still waiting for its first keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_keyframe
    }

    /// The publisher SSRC currently forwarded.
    pub fn source(&self) -> Option<u32> {
        self.source
    }

    /// The publisher's sequence number behind an output sequence number, for
    /// answering a NACK, if it belongs to the current source.
    pub fn source_seq(&self, out_seq: u16) -> Option<u16> {
        self.source?;
        Some(out_seq.wrapping_sub(self.seq_delta))
    }

    /// Rewrites an already forwarded packet again, for a retransmission:
    /// same mapping, no state change. `None` if it is from another source.
    pub fn rewrite_again(&self, pkt: &MediaPacket, out: &mut [u8], twcc: Option<TwccStamp>) -> Option<usize> {
        if self.source != Some(pkt.ssrc) || pkt.payload_len == 0 {
            return None;
        }
        self.write(pkt, out, twcc).ok()
    }

    /// The last output RTP timestamp, for sender reports.
    pub fn last_out_timestamp(&self) -> u32 {
        self.last_out_ts
    }

    /// Rewrites `pkt` into `out` (plain RTP: header without extensions, then
    /// the payload). Returns the length written.
    pub fn forward(&mut self, pkt: &MediaPacket, out: &mut [u8], twcc: Option<TwccStamp>) -> Result<usize, Skip> {
        if self.waiting_keyframe {
            if !pkt.keyframe {
                return Err(Skip::WaitingForKeyframe);
            }
            self.waiting_keyframe = false;
        }
        if self.source != Some(pkt.ssrc) {
            self.rebase(pkt);
        }
        let newer = is_newer(pkt.seq, self.last_in_seq);
        if pkt.payload_len == 0 {
            // Drop padding-only packets but keep the output gap-free: the
            // next packet takes this one's number.
            if newer {
                self.last_in_seq = pkt.seq;
                self.seq_delta = self.seq_delta.wrapping_sub(1);
            }
            return Err(Skip::Padding);
        }
        let len = self.write(pkt, out, twcc)?;
        let seq = pkt.seq.wrapping_add(self.seq_delta);
        let ts = pkt.timestamp.wrapping_add(self.ts_delta);
        if newer {
            self.last_in_seq = pkt.seq;
            self.last_out_seq = seq;
            self.last_out_ts = ts;
        }
        Ok(len)
    }

    /// Writes the rewritten packet with the current mapping: the fixed
    /// header, the transport-wide sequence number extension when the
    /// subscriber negotiated it (the publisher's extensions are not
    /// forwarded: their ids belong to the publisher's negotiation), and the
    /// payload.
    fn write(&self, pkt: &MediaPacket, out: &mut [u8], twcc: Option<TwccStamp>) -> Result<usize, Skip> {
        let payload = pkt.payload();
        let ext_len = if twcc.is_some() { 8 } else { 0 };
        let len = 12 + ext_len + payload.len();
        let out = out.get_mut(..len).ok_or(Skip::NoRoom)?;
        out[0] = if twcc.is_some() { 0x90 } else { 0x80 };
        out[1] = (u8::from(pkt.marker) << 7) | (self.out_pt & 0x7f);
        out[2..4].copy_from_slice(&pkt.seq.wrapping_add(self.seq_delta).to_be_bytes());
        out[4..8].copy_from_slice(&pkt.timestamp.wrapping_add(self.ts_delta).to_be_bytes());
        out[8..12].copy_from_slice(&self.out_ssrc.to_be_bytes());
        if let Some(stamp) = twcc {
            // One-byte form (RFC 8285): one element of two bytes, padded.
            out[12..16].copy_from_slice(&[0xbe, 0xde, 0, 1]);
            out[16] = (stamp.ext_id << 4) | 1;
            out[17..19].copy_from_slice(&stamp.seq.to_be_bytes());
            out[19] = 0;
        }
        out[12 + ext_len..].copy_from_slice(payload);
        Ok(len)
    }

    /// Starts a new mapping so that `pkt` follows the last packet sent.
    fn rebase(&mut self, pkt: &MediaPacket) {
        let next_seq = self.last_out_seq.wrapping_add(1);
        self.seq_delta = next_seq.wrapping_sub(pkt.seq);
        // Without sender reports to align clocks, advance by one tick; the
        // simulcast work replaces this with an NTP-based offset.
        let next_ts = if self.started {
            self.last_out_ts.wrapping_add(1)
        } else {
            pkt.timestamp
        };
        self.ts_delta = next_ts.wrapping_sub(pkt.timestamp);
        self.last_in_seq = pkt.seq.wrapping_sub(1);
        self.source = Some(pkt.ssrc);
        self.started = true;
    }
}

/// RFC 1982 serial-number comparison for 16-bit sequence numbers.
pub fn is_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(ssrc: u32, seq: u16, ts: u32, keyframe: bool, payload: &[u8]) -> MediaPacket {
        let mut data = vec![0x80, 96];
        data.extend_from_slice(&seq.to_be_bytes());
        data.extend_from_slice(&ts.to_be_bytes());
        data.extend_from_slice(&ssrc.to_be_bytes());
        data.extend_from_slice(payload);
        MediaPacket {
            payload_offset: 12,
            payload_len: payload.len(),
            data,
            seq,
            timestamp: ts,
            ssrc,
            marker: false,
            keyframe,
            layers: Default::default(),
            sender_report: None,
        }
    }

    fn out_seq_ts(buf: &[u8]) -> (u16, u32, u32, u8) {
        (
            u16::from_be_bytes([buf[2], buf[3]]),
            u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            buf[1] & 0x7f,
        )
    }

    #[test]
    fn video_waits_for_keyframe_then_is_continuous() {
        let mut f = Forwarder::new(Kind::Video, 77, 100, 1000);
        let mut out = [0u8; 1500];
        assert_eq!(f.forward(&pkt(5, 10, 900, false, b"x"), &mut out, None), Err(Skip::WaitingForKeyframe));
        let n = f.forward(&pkt(5, 11, 1800, true, b"key"), &mut out, None).unwrap();
        assert_eq!(&out[12..n], b"key");
        assert_eq!(out_seq_ts(&out), (1000, 1800, 77, 100));
        f.forward(&pkt(5, 12, 1800, false, b"b"), &mut out, None).unwrap();
        assert_eq!(out_seq_ts(&out).0, 1001);
    }

    #[test]
    fn padding_is_dropped_without_a_gap() {
        let mut f = Forwarder::new(Kind::Audio, 1, 111, 0);
        let mut out = [0u8; 100];
        f.forward(&pkt(5, 1, 0, false, b"a"), &mut out, None).unwrap();
        assert_eq!(f.forward(&pkt(5, 2, 0, false, b""), &mut out, None), Err(Skip::Padding));
        f.forward(&pkt(5, 3, 960, false, b"b"), &mut out, None).unwrap();
        assert_eq!(out_seq_ts(&out).0, 1);
    }

    #[test]
    fn source_change_continues_sequence_and_time() {
        let mut f = Forwarder::new(Kind::Audio, 1, 111, 500);
        let mut out = [0u8; 100];
        f.forward(&pkt(5, 40000, 10, false, b"a"), &mut out, None).unwrap();
        f.forward(&pkt(5, 40001, 970, false, b"a"), &mut out, None).unwrap();
        f.forward(&pkt(9, 7, 123_456, false, b"b"), &mut out, None).unwrap();
        let (seq, ts, ..) = out_seq_ts(&out);
        assert_eq!(seq, 502);
        assert_eq!(ts, 971);
        f.forward(&pkt(9, 8, 124_416, false, b"c"), &mut out, None).unwrap();
        assert_eq!(out_seq_ts(&out).1, 971 + 960);
    }

    #[test]
    fn sequence_wraps() {
        let mut f = Forwarder::new(Kind::Audio, 1, 111, 65535);
        let mut out = [0u8; 100];
        f.forward(&pkt(5, 3, 0, false, b"a"), &mut out, None).unwrap();
        assert_eq!(out_seq_ts(&out).0, 65535);
        f.forward(&pkt(5, 4, 0, false, b"a"), &mut out, None).unwrap();
        assert_eq!(out_seq_ts(&out).0, 0);
    }

    #[test]
    fn no_room_is_reported() {
        let mut f = Forwarder::new(Kind::Audio, 1, 111, 0);
        let mut out = [0u8; 12];
        assert_eq!(f.forward(&pkt(5, 1, 0, false, b"abc"), &mut out, None), Err(Skip::NoRoom));
    }
}
