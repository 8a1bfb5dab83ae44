//! RTX (RFC 4588) toward subscribers: a retransmission travels on its own
//! SSRC and payload type with its own sequence numbers, the original
//! sequence number (OSN) in the first two payload bytes. Receivers then
//! tell repairs from originals, and a repair does not disturb the media
//! stream's loss and jitter statistics.
//!
//! From publishers Weir takes RTX too: [`unwrap`] turns a repair back into
//! the original packet before anything else sees it.
use std::time::Instant;

use weir_codecs::{Extensions, RtpHeader};

use super::session::Session;
use crate::layers::Layers;
use crate::packet::MediaPacket;

/// The RTX stream paired with one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RtxStream {
    ssrc: u32,
    payload_type: u8,
    /// Next RTX sequence number (random start, RFC 3550 §5.1).
    seq: u16,
}

impl RtxStream {
    pub(super) fn new(ssrc: u32, payload_type: u8) -> Self {
        Self {
            ssrc,
            payload_type: payload_type & 0x7f,
            seq: rand::random(),
        }
    }

    /// Turns the plain RTP packet in `buf[..len]` (its payload starting at
    /// `header`) into an RTX packet in place. Returns the new length, or
    /// `None` when the two extra bytes do not fit in `buf`.
    pub(super) fn wrap(&mut self, buf: &mut [u8], header: usize, len: usize) -> Option<usize> {
        if header < 12 || header > len || len + 2 > buf.len() {
            return None;
        }
        let osn = [buf[2], buf[3]];
        buf.copy_within(header..len, header + 2);
        buf[header..header + 2].copy_from_slice(&osn);
        buf[1] = (buf[1] & 0x80) | self.payload_type;
        buf[2..4].copy_from_slice(&self.seq.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        Some(len + 2)
    }
}

impl RtxStream {
    /// Writes a padding-only packet of this RTX stream (a bandwidth probe)
    /// with the transport-wide sequence number `twcc`; see
    /// [`super::probe::write_padding`].
    pub(super) fn write_padding(
        &mut self,
        out: &mut [u8],
        timestamp: u32,
        ext_id: u8,
        twcc: u16,
    ) -> Option<usize> {
        let n = super::probe::write_padding(
            out,
            self.ssrc,
            self.payload_type,
            self.seq,
            timestamp,
            ext_id,
            twcc,
        )?;
        self.seq = self.seq.wrapping_add(1);
        Some(n)
    }
}

/// The rate retransmissions toward a subscriber may take: what its
/// bandwidth estimate leaves beside the media the allocator gave out, so
/// repairs do not push the link over the estimate, but at least
/// [`RETRANSMIT_FLOOR`] of the estimate (a few percent of random loss is
/// repaired even when the media fills the estimate).
pub(super) fn retransmit_rate_bps(estimate_bps: u64, allocated_bps: u64) -> u64 {
    estimate_bps
        .saturating_sub(allocated_bps)
        .max((estimate_bps as f64 * RETRANSMIT_FLOOR) as u64)
}

/// The least share of the estimate retransmissions may take.
const RETRANSMIT_FLOOR: f64 = 0.05;

/// Whether a NACKed packet belongs to a spatial layer (simulcast encoding
/// or SVC spatial layer) above the one the selector forwards now: the
/// subscriber no longer receives that layer, so repairing it only costs
/// bandwidth. (A layer still forwarded while a switch down waits for its
/// switching point is repaired: the decoder still shows it.)
pub(super) fn above_current(p: &MediaPacket, current: Option<Layers>) -> bool {
    current.is_some_and(|c| p.layers.encoding.max(p.layers.spatial) > c.spatial)
}

/// Caps retransmissions toward one subscriber at a rate (a token bucket,
/// see [`retransmit_rate_bps`]): on a congested link the receiver keeps asking for
/// packets stuck in the bottleneck queue, and answering every request
/// multiplies the overload.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetransmitBudget {
    tokens: f64,
    last: Option<Instant>,
}

/// The bucket holds this long at the estimate's rate.
const BUDGET_WINDOW: f64 = 0.25;
/// But never less than this many bytes, so a lone repair always fits.
const BUDGET_MIN_BYTES: f64 = 16_000.0;

impl RetransmitBudget {
    pub(super) fn new() -> Self {
        Self {
            tokens: BUDGET_MIN_BYTES,
            last: None,
        }
    }

    /// Whether `bytes` may be retransmitted now at `rate_bps`; takes them
    /// from the bucket if so.
    pub(super) fn take(&mut self, now: Instant, rate_bps: u64, bytes: usize) -> bool {
        let bytes_per_s = rate_bps as f64 / 8.0;
        let cap = (bytes_per_s * BUDGET_WINDOW).max(BUDGET_MIN_BYTES);
        let elapsed = self
            .last
            .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
        self.last = Some(now);
        self.tokens = (self.tokens + elapsed * bytes_per_s).min(cap);
        if self.tokens < bytes as f64 {
            return false;
        }
        self.tokens -= bytes as f64;
        true
    }
}

/// What an inbound RTX packet repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Repair {
    /// The media payload type.
    pub(super) apt: u8,
    /// The media SSRC.
    pub(super) media_ssrc: u32,
}

/// Whether `header` is an RTX packet of one of `s`'s published m-sections,
/// and which stream it repairs: by the SDP's FID pairs, else by the
/// repaired-rtp-stream-id extension (simulcast), else the m-section's only
/// stream. The answer is remembered per RTX SSRC.
pub(super) fn inbound_repair(
    s: &mut Session,
    header: &RtpHeader<'_>,
) -> Result<Option<Repair>, UnknownRepair> {
    let pt = header.payload_type();
    let Some(inbound) = s
        .inbound
        .iter()
        .find(|i| i.rtx.is_some_and(|r| r.payload_type == pt))
    else {
        return Ok(None);
    };
    let apt = inbound.spec.payload_type;
    let rtx_ssrc = header.ssrc();
    if let Some(&media_ssrc) = s.rtx_to_media.get(&rtx_ssrc) {
        return Ok(Some(Repair { apt, media_ssrc }));
    }
    let encoding = if inbound.rids.is_empty() {
        Some(0)
    } else {
        let rrid = inbound.rtx.and_then(|r| r.rrid_ext_id);
        header
            .extension_profile()
            .and_then(|p| Extensions::parse(p, header.extension_block()).ok())
            .zip(rrid)
            .and_then(|(e, id)| e.get(id))
            .and_then(|v| weir_codecs::extensions::parse_rtp_stream_id(v).ok())
            .and_then(|rid| inbound.rids.iter().position(|r| r == rid))
    };
    let media_ssrc = encoding
        .and_then(|e| inbound.encodings.get(e))
        .and_then(|e| e.ssrc)
        .ok_or(UnknownRepair)?;
    s.rtx_to_media.insert(rtx_ssrc, media_ssrc);
    Ok(Some(Repair { apt, media_ssrc }))
}

/// An RTX packet whose media stream is not known (yet): its media SSRC
/// arrives with the stream's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct UnknownRepair;

/// Turns the RTX packet in `plain` (its payload at `header`) back into
/// the original: payload type `apt`, the original sequence number from the
/// first two payload bytes, SSRC `media_ssrc`. `false` for an RTX packet
/// without an OSN (padding sent to probe bandwidth), which carries nothing.
pub(super) fn unwrap(plain: &mut Vec<u8>, header: usize, apt: u8, media_ssrc: u32) -> bool {
    // With the P bit, the padding sits at the end and stays there.
    let padding = if plain.first().is_some_and(|b| b & 0x20 != 0) {
        plain.last().map_or(0, |p| usize::from(*p))
    } else {
        0
    };
    if header < 12 || header + 2 + padding > plain.len() {
        return false;
    }
    let osn = [plain[header], plain[header + 1]];
    plain[1] = (plain[1] & 0x80) | (apt & 0x7f);
    plain[2..4].copy_from_slice(&osn);
    plain[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    // Shifts the payload down in place: no allocation.
    plain.drain(header..header + 2);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_in_place_with_the_original_sequence_number_first() {
        let mut r = RtxStream::new(0xabcd, 97);
        r.seq = 500;
        let mut buf = [0u8; 32];
        let pkt = [
            0x80,
            0x80 | 96,
            0x12,
            0x34,
            0,
            0,
            0,
            9,
            0,
            0,
            0,
            1,
            0xaa,
            0xbb,
            0xcc,
        ];
        buf[..pkt.len()].copy_from_slice(&pkt);
        let n = r.wrap(&mut buf, 12, pkt.len()).unwrap();
        assert_eq!(n, pkt.len() + 2);
        assert_eq!(buf[1], 0x80 | 97, "marker kept, payload type replaced");
        assert_eq!(&buf[2..4], &500u16.to_be_bytes());
        assert_eq!(&buf[4..8], &pkt[4..8], "timestamp kept");
        assert_eq!(&buf[8..12], &0xabcdu32.to_be_bytes());
        assert_eq!(&buf[12..n], &[0x12, 0x34, 0xaa, 0xbb, 0xcc]);
        let n = r.wrap(&mut buf, 12, n).unwrap();
        assert_eq!(&buf[2..4], &501u16.to_be_bytes(), "own sequence");
        assert_eq!(n, pkt.len() + 4);
    }

    #[test]
    fn budget_refills_at_the_rate_and_caps_bursts() {
        let t0 = Instant::now();
        let mut b = RetransmitBudget::new();
        // 1 Mbit/s: 125 kB/s, a bucket of 31.25 kB, starting at 16 kB.
        let taken = (0..100).filter(|_| b.take(t0, 1_000_000, 1000)).count();
        assert_eq!(taken, 16);
        let later = t0 + std::time::Duration::from_millis(100);
        let taken = (0..100).filter(|_| b.take(later, 1_000_000, 1000)).count();
        assert_eq!(taken, 12, "12.5 kB in 100 ms");
        let much_later = t0 + std::time::Duration::from_secs(10);
        let taken = (0..100)
            .filter(|_| b.take(much_later, 1_000_000, 1000))
            .count();
        assert_eq!(taken, 31, "capped at a quarter second");
    }

    #[test]
    fn unwrap_undoes_wrap() {
        let pkt = [
            0x80,
            0x80 | 96,
            0x12,
            0x34,
            0,
            0,
            0,
            9,
            0,
            0,
            0,
            1,
            0xaa,
            0xbb,
            0xcc,
        ];
        let mut r = RtxStream::new(0xabcd, 97);
        let mut buf = [0u8; 32];
        buf[..pkt.len()].copy_from_slice(&pkt);
        let n = r.wrap(&mut buf, 12, pkt.len()).unwrap();
        let mut v = buf[..n].to_vec();
        assert!(unwrap(&mut v, 12, 96, 1));
        assert_eq!(v, pkt);
        // Padding-only probes and garbage carry nothing.
        let mut probe = vec![0xa0, 97, 0, 1, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 4];
        assert!(!unwrap(&mut probe, 12, 96, 1));
        assert!(!unwrap(&mut vec![0x80, 97, 0, 1], 12, 96, 1));
        assert!(!unwrap(&mut vec![0xa0; 14], 12, 96, 1));
    }

    #[test]
    fn refuses_what_does_not_fit_or_is_not_a_header() {
        let mut r = RtxStream::new(1, 97);
        let mut buf = [0u8; 14];
        assert_eq!(r.wrap(&mut buf, 12, 13), None);
        assert_eq!(r.wrap(&mut buf, 8, 12), None);
        assert_eq!(r.wrap(&mut buf, 13, 12), None);
        assert_eq!(r.wrap(&mut buf, 12, 12), Some(14));
    }

    proptest::proptest! {
        /// Any bytes at any offset: no panic, and a successful unwrap
        /// leaves a packet two bytes shorter.
        #[test]
        fn unwrap_never_panics(
            mut data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            header in 0usize..70,
        ) {
            let len = data.len();
            if unwrap(&mut data, header, 96, 1) {
                proptest::prop_assert_eq!(data.len(), len - 2);
            } else {
                proptest::prop_assert_eq!(data.len(), len);
            }
        }

        /// Wrapping then unwrapping gives the original packet back.
        #[test]
        fn wrap_then_unwrap_is_identity(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
            seq in proptest::prelude::any::<u16>(),
            marker in proptest::prelude::any::<bool>(),
        ) {
            let mut pkt = vec![0x80, (u8::from(marker) << 7) | 96];
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]);
            pkt.extend_from_slice(&payload);
            let mut buf = vec![0u8; pkt.len() + 2];
            buf[..pkt.len()].copy_from_slice(&pkt);
            let mut r = RtxStream::new(77, 97);
            let n = r.wrap(&mut buf, 12, pkt.len()).unwrap();
            buf.truncate(n);
            proptest::prop_assert!(unwrap(&mut buf, 12, 96, 1));
            proptest::prop_assert_eq!(buf, pkt);
        }
    }
}
