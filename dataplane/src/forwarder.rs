//! Per-subscriber rewriting: one continuous RTP stream out of whatever the
//! publisher sends (SSRC changes, dropped padding, late joins).
//!
//! A `Forwarder` is a plain struct: it is fed packets and writes the
//! rewritten plain-text RTP packet into a caller-owned buffer.
use crate::packet::MediaPacket;

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
    /// A padding-only packet: nothing for the decoder.
    Padding,
    /// The output buffer is too small.
    NoRoom,
}

/// Rewrites one track for one subscriber: SSRC, payload type, sequence
/// numbers and timestamps. Which packets to forward is decided before (by
/// [`crate::layers::LayerSelector`] for video); this struct keeps the
/// output continuous whatever is dropped or switched.
#[derive(Debug)]
pub struct Forwarder {
    out_ssrc: u32,
    out_pt: u8,
    /// Source SSRC the offsets below belong to.
    source: Option<u32>,
    /// The source's latest sender report (NTP, RTP), for aligning the next
    /// source's timestamps on a switch.
    source_report: Option<(u64, u32)>,
    clock_rate: u32,
    /// `out_seq = in_seq + seq_delta` (mod 2^16).
    seq_delta: u16,
    /// `out_ts = in_ts + ts_delta` (mod 2^32).
    ts_delta: u32,
    /// Highest input sequence number seen for `source`.
    last_in_seq: u16,
    last_out_seq: u16,
    last_out_ts: u32,
    started: bool,
    /// The mappings of the latest output sequence numbers, for answering
    /// NACKs: `seq_delta` changes with every filtered packet and every
    /// source change, so the current one alone would put a different packet
    /// under an older number.
    history: MappingHistory,
    /// Output sequence number of the latest keyframe's first packet: a
    /// decoder has no use for anything before it.
    keyframe_out: Option<u16>,
}

/// How many mapping changes [`Forwarder`] remembers. One per frame when a
/// temporal layer is filtered out: about a second at 30 frames/s, far more
/// than a NACK's round trip.
const MAPPINGS: usize = 32;

/// From this output sequence number on (until the next entry), packets
/// were written with this mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mapping {
    first_out: u16,
    seq_delta: u16,
    ts_delta: u32,
    source: u32,
}

/// A fixed ring of the latest [`Mapping`]s (no allocation per packet).
#[derive(Debug, Clone, Default)]
struct MappingHistory {
    entries: [Mapping; MAPPINGS],
    /// Index of the newest entry.
    newest: usize,
    len: usize,
}

impl MappingHistory {
    fn newest(&self) -> Option<&Mapping> {
        (self.len > 0).then(|| &self.entries[self.newest])
    }

    fn push(&mut self, m: Mapping) {
        self.newest = (self.newest + 1) % MAPPINGS;
        self.entries[self.newest] = m;
        self.len = (self.len + 1).min(MAPPINGS);
    }

    /// The mapping `out_seq` was written with, if still remembered;
    /// `last_out` is the newest output sequence number (none above it
    /// exists yet).
    fn find(&self, out_seq: u16, last_out: u16) -> Option<&Mapping> {
        if is_newer(out_seq, last_out) {
            return None;
        }
        // Newest first: the first entry starting at or before `out_seq`.
        (0..self.len)
            .map(|i| &self.entries[(self.newest + MAPPINGS - i) % MAPPINGS])
            .find(|m| !is_newer(m.first_out, out_seq))
            // The oldest entry may have started long before: only trust an
            // entry whose successor (or the newest number) is not too far.
            .filter(|m| last_out.wrapping_sub(m.first_out) < 0x8000)
    }
}

/// Where a NACKed output packet came from: the publisher's stream and
/// sequence number, to look the packet up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackedSource {
    /// The publisher SSRC the packet was forwarded from.
    pub ssrc: u32,
    /// Its sequence number as the publisher sent it.
    pub seq: u16,
}

/// Why a NACKed output packet is not worth a retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackRefusal {
    /// Never sent, or sent so long ago that its mapping is forgotten.
    Unknown,
    /// From before the latest keyframe sent: the decoder no longer needs it.
    BeforeKeyframe,
    /// From a source no longer forwarded (a simulcast encoding switched
    /// away from).
    OldSource,
}

impl Forwarder {
    /// A forwarder that writes `out_ssrc` / `out_pt`, starting at
    /// `first_seq`, for a stream with this RTP clock rate.
    pub fn new(out_ssrc: u32, out_pt: u8, first_seq: u16, clock_rate: u32) -> Self {
        Self {
            out_ssrc,
            out_pt,
            source: None,
            source_report: None,
            clock_rate,
            seq_delta: 0,
            ts_delta: 0,
            last_in_seq: 0,
            last_out_seq: first_seq.wrapping_sub(1),
            last_out_ts: 0,
            started: false,
            history: MappingHistory::default(),
            keyframe_out: None,
        }
    }

    /// The SSRC this forwarder writes.
    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// The publisher SSRC currently forwarded.
    pub fn source(&self) -> Option<u32> {
        self.source
    }

    /// The publisher's packet behind a NACKed output sequence number, if
    /// retransmitting it can still help the subscriber's decoder.
    pub fn nacked(&self, out_seq: u16) -> Result<NackedSource, NackRefusal> {
        if !self.started {
            return Err(NackRefusal::Unknown);
        }
        if self
            .keyframe_out
            .is_some_and(|k| is_newer(k, out_seq) && self.last_out_seq.wrapping_sub(k) < 0x8000)
        {
            return Err(NackRefusal::BeforeKeyframe);
        }
        let m = self
            .history
            .find(out_seq, self.last_out_seq)
            .ok_or(NackRefusal::Unknown)?;
        if self.source != Some(m.source) {
            return Err(NackRefusal::OldSource);
        }
        Ok(NackedSource {
            ssrc: m.source,
            seq: out_seq.wrapping_sub(m.seq_delta),
        })
    }

    /// Rewrites an already forwarded packet again as `out_seq`, for a
    /// retransmission: the mapping it was first written with, no state
    /// change. `None` if that mapping is forgotten or is not `pkt`'s.
    pub fn rewrite_again(
        &self,
        pkt: &MediaPacket,
        out_seq: u16,
        out: &mut [u8],
        twcc: Option<TwccStamp>,
    ) -> Option<usize> {
        let m = self.history.find(out_seq, self.last_out_seq)?;
        if m.source != pkt.ssrc
            || pkt.seq.wrapping_add(m.seq_delta) != out_seq
            || pkt.payload_len == 0
        {
            return None;
        }
        write_rtp(
            self.out_ssrc,
            self.out_pt,
            (out_seq, pkt.timestamp.wrapping_add(m.ts_delta)),
            pkt,
            out,
            twcc,
            pkt.marker,
        )
        .ok()
    }

    /// The last output RTP timestamp, for sender reports.
    pub fn last_out_timestamp(&self) -> u32 {
        self.last_out_ts
    }

    /// Rewrites `pkt` into `out`: header (with `marker`), the optional
    /// transport-wide sequence number, payload. Returns the length; the
    /// payload starts at [`Forwarder::payload_offset`].
    pub fn forward(
        &mut self,
        pkt: &MediaPacket,
        out: &mut [u8],
        twcc: Option<TwccStamp>,
        marker: bool,
    ) -> Result<usize, Skip> {
        if self.source != Some(pkt.ssrc) {
            self.rebase(pkt);
        }
        if pkt.payload_len == 0 {
            self.skip(pkt);
            return Err(Skip::Padding);
        }
        let newer = is_newer(pkt.seq, self.last_in_seq);
        let len = self.write(pkt, out, twcc, marker)?;
        if pkt.sender_report.is_some() {
            self.source_report = pkt.sender_report;
        }
        if newer {
            self.last_in_seq = pkt.seq;
            self.last_out_seq = pkt.seq.wrapping_add(self.seq_delta);
            self.last_out_ts = pkt.timestamp.wrapping_add(self.ts_delta);
            let mapping = Mapping {
                first_out: self.last_out_seq,
                seq_delta: self.seq_delta,
                ts_delta: self.ts_delta,
                source: pkt.ssrc,
            };
            let same = self.history.newest().is_some_and(|m| {
                (m.seq_delta, m.ts_delta, m.source)
                    == (mapping.seq_delta, mapping.ts_delta, mapping.source)
            });
            if !same {
                self.history.push(mapping);
            }
            if pkt.keyframe {
                self.keyframe_out = Some(self.last_out_seq);
            }
        }
        Ok(len)
    }

    /// A packet of the current source that is not forwarded (filtered out
    /// by layer selection, or padding): the next packet takes its number,
    /// so the output has gaps only where real loss happened.
    pub fn skip(&mut self, pkt: &MediaPacket) {
        if self.source == Some(pkt.ssrc) && is_newer(pkt.seq, self.last_in_seq) {
            self.last_in_seq = pkt.seq;
            self.seq_delta = self.seq_delta.wrapping_sub(1);
        }
    }

    /// Where the payload starts in what [`Forwarder::forward`] writes.
    pub fn payload_offset(twcc: Option<TwccStamp>) -> usize {
        if twcc.is_some() {
            20
        } else {
            12
        }
    }

    /// Writes the rewritten packet with the current mapping (see
    /// [`write_rtp`]).
    fn write(
        &self,
        pkt: &MediaPacket,
        out: &mut [u8],
        twcc: Option<TwccStamp>,
        marker: bool,
    ) -> Result<usize, Skip> {
        let seq_ts = (
            pkt.seq.wrapping_add(self.seq_delta),
            pkt.timestamp.wrapping_add(self.ts_delta),
        );
        write_rtp(self.out_ssrc, self.out_pt, seq_ts, pkt, out, twcc, marker)
    }

    /// Starts a new mapping so that `pkt` follows the last packet sent.
    /// Timestamps: when both the old and the new source have sent a sender
    /// report, the new source is mapped onto the old one's timeline through
    /// their NTP/RTP pairs (simulcast encodings share a capture clock but
    /// not an RTP offset); otherwise it continues one tick after the last.
    fn rebase(&mut self, pkt: &MediaPacket) {
        let next_seq = self.last_out_seq.wrapping_add(1);
        self.seq_delta = next_seq.wrapping_sub(pkt.seq);
        let aligned = match (self.started, self.source_report, pkt.sender_report) {
            (true, Some((ntp_old, rtp_old)), Some((ntp_new, rtp_new))) => {
                // rtp_old(t) - rtp_new(t) at the same wall-clock instant t.
                let ntp_diff =
                    ((ntp_old as i128 - ntp_new as i128) * i128::from(self.clock_rate)) >> 32;
                let offset = (i128::from(rtp_old) - i128::from(rtp_new) - ntp_diff) as i64 as u32;
                let ts = pkt
                    .timestamp
                    .wrapping_add(offset)
                    .wrapping_add(self.ts_delta);
                // Only if it moves forward, as a decoder expects.
                is_newer_ts(ts, self.last_out_ts).then_some(ts)
            }
            _ => None,
        };
        let next_ts = match (self.started, aligned) {
            (false, _) => pkt.timestamp,
            (true, Some(ts)) => ts,
            (true, None) => self.last_out_ts.wrapping_add(1),
        };
        self.ts_delta = next_ts.wrapping_sub(pkt.timestamp);
        self.last_in_seq = pkt.seq.wrapping_sub(1);
        self.source = Some(pkt.ssrc);
        self.source_report = pkt.sender_report;
        self.started = true;
    }
}

/// Writes `pkt` as `ssrc` / `pt` with the output (sequence number,
/// timestamp) `seq_ts`: the fixed header, the transport-wide sequence
/// number extension when the subscriber negotiated it (the publisher's
/// extensions are not forwarded: their ids belong to the publisher's
/// negotiation), and the payload.
fn write_rtp(
    ssrc: u32,
    pt: u8,
    (seq, ts): (u16, u32),
    pkt: &MediaPacket,
    out: &mut [u8],
    twcc: Option<TwccStamp>,
    marker: bool,
) -> Result<usize, Skip> {
    let payload = pkt.payload();
    let ext_len = if twcc.is_some() { 8 } else { 0 };
    let len = 12 + ext_len + payload.len();
    let out = out.get_mut(..len).ok_or(Skip::NoRoom)?;
    out[0] = if twcc.is_some() { 0x90 } else { 0x80 };
    out[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    out[2..4].copy_from_slice(&seq.to_be_bytes());
    out[4..8].copy_from_slice(&ts.to_be_bytes());
    out[8..12].copy_from_slice(&ssrc.to_be_bytes());
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

/// Serial-number comparison for 32-bit RTP timestamps.
fn is_newer_ts(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
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
    fn rewrites_and_stays_continuous() {
        let mut f = Forwarder::new(77, 100, 1000, 90000);
        let mut out = [0u8; 1500];
        let n = f
            .forward(&pkt(5, 11, 1800, true, b"key"), &mut out, None, true)
            .unwrap();
        assert_eq!(&out[12..n], b"key");
        assert_eq!(out_seq_ts(&out), (1000, 1800, 77, 100));
        assert_eq!(out[1] & 0x80, 0x80, "marker as asked");
        f.forward(&pkt(5, 12, 1800, false, b"b"), &mut out, None, false)
            .unwrap();
        assert_eq!(out_seq_ts(&out).0, 1001);
        // A filtered packet leaves no gap.
        f.skip(&pkt(5, 13, 4800, false, b"t2"));
        f.forward(&pkt(5, 14, 4800, false, b"c"), &mut out, None, false)
            .unwrap();
        assert_eq!(out_seq_ts(&out).0, 1002);
    }

    #[test]
    fn switch_aligns_timestamps_with_sender_reports() {
        let mut f = Forwarder::new(1, 96, 0, 90000);
        let mut out = [0u8; 100];
        let ntp = 1u64 << 40;
        let mut a = pkt(5, 100, 10_000, true, b"a");
        a.sender_report = Some((ntp, 10_000));
        f.forward(&a, &mut out, None, false).unwrap();
        // Encoding B's clock is 500_000 ticks apart, and its report is
        // 1/4 s later on the wall clock.
        let mut b = pkt(6, 7, 500_000 + 22_500 + 9000, true, b"b");
        b.sender_report = Some((ntp + (1u64 << 30), 500_000 + 22_500));
        f.forward(&b, &mut out, None, false).unwrap();
        let (seq, ts, ..) = out_seq_ts(&out);
        assert_eq!(seq, 1);
        // B's packet is 0.1 s after B's report, so 0.35 s after A's report.
        assert_eq!(ts, 10_000 + 31_500);
    }

    #[test]
    fn padding_is_dropped_without_a_gap() {
        let mut f = Forwarder::new(1, 111, 0, 48000);
        let mut out = [0u8; 100];
        f.forward(&pkt(5, 1, 0, false, b"a"), &mut out, None, false)
            .unwrap();
        assert_eq!(
            f.forward(&pkt(5, 2, 0, false, b""), &mut out, None, false),
            Err(Skip::Padding)
        );
        f.forward(&pkt(5, 3, 960, false, b"b"), &mut out, None, false)
            .unwrap();
        assert_eq!(out_seq_ts(&out).0, 1);
    }

    #[test]
    fn source_change_continues_sequence_and_time() {
        let mut f = Forwarder::new(1, 111, 500, 48000);
        let mut out = [0u8; 100];
        f.forward(&pkt(5, 40000, 10, false, b"a"), &mut out, None, false)
            .unwrap();
        f.forward(&pkt(5, 40001, 970, false, b"a"), &mut out, None, false)
            .unwrap();
        f.forward(&pkt(9, 7, 123_456, false, b"b"), &mut out, None, false)
            .unwrap();
        let (seq, ts, ..) = out_seq_ts(&out);
        assert_eq!(seq, 502);
        assert_eq!(ts, 971);
        f.forward(&pkt(9, 8, 124_416, false, b"c"), &mut out, None, false)
            .unwrap();
        assert_eq!(out_seq_ts(&out).1, 971 + 960);
    }

    #[test]
    fn sequence_wraps() {
        let mut f = Forwarder::new(1, 111, 65535, 48000);
        let mut out = [0u8; 100];
        f.forward(&pkt(5, 3, 0, false, b"a"), &mut out, None, false)
            .unwrap();
        assert_eq!(out_seq_ts(&out).0, 65535);
        f.forward(&pkt(5, 4, 0, false, b"a"), &mut out, None, false)
            .unwrap();
        assert_eq!(out_seq_ts(&out).0, 0);
    }

    #[test]
    fn nacks_map_back_through_filtered_packets() {
        let mut f = Forwarder::new(7, 96, 100, 90000);
        let mut out = [0u8; 100];
        f.forward(&pkt(5, 10, 0, true, b"k"), &mut out, None, false)
            .unwrap();
        f.forward(&pkt(5, 11, 0, false, b"a"), &mut out, None, false)
            .unwrap();
        // 12 and 13 are filtered out: 14 goes out as 102.
        f.skip(&pkt(5, 12, 3000, false, b"x"));
        f.skip(&pkt(5, 13, 3000, false, b"x"));
        f.forward(&pkt(5, 14, 6000, false, b"b"), &mut out, None, false)
            .unwrap();
        let at = |seq| NackedSource { ssrc: 5, seq };
        assert_eq!(f.nacked(101), Ok(at(11)), "the mapping before the skips");
        assert_eq!(f.nacked(102), Ok(at(14)));
        assert_eq!(f.nacked(103), Err(NackRefusal::Unknown), "not sent yet");
        // Written again exactly as the first time.
        let n = f
            .rewrite_again(&pkt(5, 11, 0, false, b"a"), 101, &mut out, None)
            .unwrap();
        assert_eq!((out_seq_ts(&out).0, &out[12..n]), (101, &b"a"[..]));
        assert_eq!(
            f.rewrite_again(&pkt(5, 12, 3000, false, b"x"), 101, &mut out, None),
            None,
            "a packet that was never sent as 101"
        );
    }

    #[test]
    fn nothing_before_the_latest_keyframe_or_from_an_old_source() {
        let mut f = Forwarder::new(7, 96, 0, 90000);
        let mut out = [0u8; 100];
        f.forward(&pkt(5, 10, 0, true, b"k"), &mut out, None, false)
            .unwrap();
        f.forward(&pkt(5, 11, 0, false, b"a"), &mut out, None, false)
            .unwrap();
        // Switched to another encoding at its keyframe.
        f.forward(&pkt(6, 500, 0, true, b"K"), &mut out, None, false)
            .unwrap();
        f.forward(&pkt(6, 501, 0, false, b"b"), &mut out, None, false)
            .unwrap();
        assert_eq!(f.nacked(1), Err(NackRefusal::BeforeKeyframe));
        assert_eq!(f.nacked(2), Ok(NackedSource { ssrc: 6, seq: 500 }));
        assert_eq!(f.nacked(3), Ok(NackedSource { ssrc: 6, seq: 501 }));
        // Without a keyframe on the new source, the old one's packets are
        // still refused: the subscriber no longer receives that encoding.
        let mut g = Forwarder::new(7, 96, 0, 90000);
        g.forward(&pkt(5, 10, 0, false, b"a"), &mut out, None, false)
            .unwrap();
        g.forward(&pkt(6, 90, 0, false, b"b"), &mut out, None, false)
            .unwrap();
        assert_eq!(g.nacked(0), Err(NackRefusal::OldSource));
        assert_eq!(g.nacked(1), Ok(NackedSource { ssrc: 6, seq: 90 }));
    }

    #[test]
    fn old_mappings_are_forgotten() {
        let mut f = Forwarder::new(7, 96, 0, 90000);
        let mut out = [0u8; 100];
        // Every other packet filtered: a new mapping per forwarded packet.
        for i in 0..(MAPPINGS as u16 + 5) {
            f.forward(&pkt(5, 2 * i, 0, false, b"a"), &mut out, None, false)
                .unwrap();
            f.skip(&pkt(5, 2 * i + 1, 0, false, b"x"));
        }
        let last = MAPPINGS as u16 + 4;
        assert_eq!(
            f.nacked(last),
            Ok(NackedSource {
                ssrc: 5,
                seq: 2 * last
            })
        );
        assert_eq!(f.nacked(0), Err(NackRefusal::Unknown));
    }

    proptest::proptest! {
        /// Whatever is forwarded, filtered or switched, a NACK is never
        /// answered with a packet other than the one first sent under
        /// that number.
        #[test]
        fn nacks_never_map_to_another_packet(
            steps in proptest::collection::vec((0u8..4, proptest::bool::ANY), 1..300),
            nacks in proptest::collection::vec(0u16..400, 1..40),
        ) {
            let mut f = Forwarder::new(9, 96, 0, 90000);
            let mut out = [0u8; 100];
            let mut sent = std::collections::HashMap::new();
            let mut ssrc = 1u32;
            let mut seq = 0u16;
            for (action, keyframe) in steps {
                seq = seq.wrapping_add(1);
                match action {
                    0 => f.skip(&pkt(ssrc, seq, 0, false, b"x")),
                    1 => {
                        ssrc += 1;
                        seq = seq.wrapping_add(1000);
                        let n = f.forward(&pkt(ssrc, seq, 0, keyframe, b"y"), &mut out, None, false).unwrap();
                        sent.insert(out_seq_ts(&out[..n]).0, (ssrc, seq));
                    }
                    _ => {
                        let n = f.forward(&pkt(ssrc, seq, 0, keyframe, b"z"), &mut out, None, false).unwrap();
                        sent.insert(out_seq_ts(&out[..n]).0, (ssrc, seq));
                    }
                }
            }
            for out_seq in nacks {
                if let Ok(src) = f.nacked(out_seq) {
                    proptest::prop_assert_eq!(sent.get(&out_seq), Some(&(src.ssrc, src.seq)));
                }
            }
        }
    }

    #[test]
    fn no_room_is_reported() {
        let mut f = Forwarder::new(1, 111, 0, 48000);
        let mut out = [0u8; 12];
        assert_eq!(
            f.forward(&pkt(5, 1, 0, false, b"abc"), &mut out, None, false),
            Err(Skip::NoRoom)
        );
    }
}
