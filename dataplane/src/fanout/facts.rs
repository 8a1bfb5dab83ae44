//! The facts of a published packet packed into the [`META_WORDS`] words a
//! [`FanoutRing`](super::FanoutRing) slot keeps beside its bytes, and read
//! back on a subscribing core.
//!
//! The core packs a packet's facts when it publishes it into a ring and
//! unpacks them on the subscribing core (see the module docs of
//! [`super`]). Everything a
//! subscriber's forwarding reads from a [`MediaPacket`] besides its bytes
//! fits, so the consuming core never re-parses a packet (re-parsing could
//! not work anyway: Dependency Descriptor parsing is stateful and that state
//! lives on the publisher's core).
//!
//! Layout (bit 0 is the least significant):
//!
//! | word | bits | field |
//! |---|---|---|
//! | 0 | 0..12 | payload offset |
//! | 0 | 12..24 | payload length |
//! | 0 | 24..40 | RTP sequence number |
//! | 0 | 40..48 | flags: marker, keyframe, frame start, frame end, switching point, has structure, has DD, has sender report |
//! | 0 | 48..56 | simulcast encoding |
//! | 0 | 56..60 | spatial id |
//! | 0 | 60..64 | temporal id |
//! | 1 | 0..32 | RTP timestamp |
//! | 1 | 32..64 | SSRC |
//! | 2 | 0..32 | sender report's RTP timestamp |
//! | 2 | 32..36 | switch-up-to temporal layer |
//! | 2 | 36..40 | structure: spatial layer count |
//! | 2 | 40..44 | structure: temporal layer count |
//! | 2 | 44..56 | Dependency Descriptor offset |
//! | 2 | 56..64 | Dependency Descriptor length |
//! | 3 | 0..64 | sender report's NTP time |
//!
//! Twelve bits of offset and length bound a ring packet to 4095 bytes,
//! above any datagram the data plane forwards (its MTU); a packet outside
//! these bounds is refused by [`pack`] and must take another path.

use super::META_WORDS;
use crate::layers::StreamLayers;
use crate::packet::{LayerFacts, MediaPacket};

/// Largest offset or length [`pack`] accepts (twelve bits).
pub const MAX_PACKED_LEN: usize = 0xfff;

const MARKER: u64 = 1 << 0;
const KEYFRAME: u64 = 1 << 1;
const FRAME_START: u64 = 1 << 2;
const FRAME_END: u64 = 1 << 3;
const SWITCHING_POINT: u64 = 1 << 4;
const HAS_STRUCTURE: u64 = 1 << 5;
const HAS_DD: u64 = 1 << 6;
const HAS_SR: u64 = 1 << 7;

/// Why facts could not be packed or unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FactsError {
    /// A field is too large for its bits (a packet larger than
    /// [`MAX_PACKED_LEN`], or a layer id or count above 15).
    #[error("packet facts do not fit the ring's meta words")]
    DoesNotFit,
    /// The words point outside the packet they came with (a corrupt or
    /// mismatched entry).
    #[error("packed facts point outside their {0}-byte packet")]
    OutOfBounds(usize),
}

fn nibble(v: u8) -> Result<u64, FactsError> {
    if v > 0xf {
        return Err(FactsError::DoesNotFit);
    }
    Ok(u64::from(v))
}

fn twelve(v: usize) -> Result<u64, FactsError> {
    if v > MAX_PACKED_LEN {
        return Err(FactsError::DoesNotFit);
    }
    Ok(v as u64)
}

/// Packs the facts of `p` (everything but its bytes) into ring meta words.
pub fn pack(p: &MediaPacket) -> Result<[u64; META_WORDS], FactsError> {
    let l = &p.layers;
    let mut flags = 0;
    for (set, bit) in [
        (p.marker, MARKER),
        (p.keyframe, KEYFRAME),
        (l.frame_start, FRAME_START),
        (l.frame_end, FRAME_END),
        (l.switching_point, SWITCHING_POINT),
        (l.structure.is_some(), HAS_STRUCTURE),
        (l.dd.is_some(), HAS_DD),
        (p.sender_report.is_some(), HAS_SR),
    ] {
        if set {
            flags |= bit;
        }
    }
    let w0 = twelve(p.payload_offset)?
        | twelve(p.payload_len)? << 12
        | u64::from(p.seq) << 24
        | flags << 40
        | u64::from(l.encoding) << 48
        | nibble(l.spatial)? << 56
        | nibble(l.temporal)? << 60;
    let w1 = u64::from(p.timestamp) | u64::from(p.ssrc) << 32;
    let (sr_ntp, sr_rtp) = p.sender_report.unwrap_or((0, 0));
    let (s_spatial, s_temporal) = l.structure.map_or((0, 0), |s| (s.spatial, s.temporal));
    let (dd_offset, dd_len) = l.dd.unwrap_or((0, 0));
    let w2 = u64::from(sr_rtp)
        | nibble(l.switch_up_to)? << 32
        | nibble(s_spatial)? << 36
        | nibble(s_temporal)? << 40
        | twelve(usize::from(dd_offset))? << 44
        | u64::from(dd_len) << 56;
    Ok([w0, w1, w2, sr_ntp])
}

/// Fills the facts of `p` from the words of a ring entry whose `len` bytes
/// are (or will be) its `data`; `data` itself is left alone. Checks that
/// the payload and Dependency Descriptor lie inside the packet, so that a
/// forwarder slicing by them never panics.
pub fn unpack(meta: &[u64; META_WORDS], len: usize, p: &mut MediaPacket) -> Result<(), FactsError> {
    let [w0, w1, w2, w3] = *meta;
    let field = |w: u64, shift: u32, bits: u32| (w >> shift) & ((1 << bits) - 1);
    let payload_offset = field(w0, 0, 12) as usize;
    let payload_len = field(w0, 12, 12) as usize;
    if payload_offset + payload_len > len {
        return Err(FactsError::OutOfBounds(len));
    }
    let flags = field(w0, 40, 8);
    let dd = if flags & HAS_DD != 0 {
        let (offset, dd_len) = (field(w2, 44, 12) as u16, field(w2, 56, 8) as u8);
        if usize::from(offset) + usize::from(dd_len) > len {
            return Err(FactsError::OutOfBounds(len));
        }
        Some((offset, dd_len))
    } else {
        None
    };
    p.payload_offset = payload_offset;
    p.payload_len = payload_len;
    p.seq = field(w0, 24, 16) as u16;
    p.timestamp = w1 as u32;
    p.ssrc = (w1 >> 32) as u32;
    p.marker = flags & MARKER != 0;
    p.keyframe = flags & KEYFRAME != 0;
    p.sender_report = (flags & HAS_SR != 0).then_some((w3, w2 as u32));
    p.layers = LayerFacts {
        encoding: field(w0, 48, 8) as u8,
        spatial: field(w0, 56, 4) as u8,
        temporal: field(w0, 60, 4) as u8,
        frame_start: flags & FRAME_START != 0,
        frame_end: flags & FRAME_END != 0,
        switching_point: flags & SWITCHING_POINT != 0,
        switch_up_to: field(w2, 32, 4) as u8,
        structure: (flags & HAS_STRUCTURE != 0).then_some(StreamLayers {
            spatial: field(w2, 36, 4) as u8,
            temporal: field(w2, 40, 4) as u8,
        }),
        dd,
    };
    Ok(())
}

#[cfg(all(test, not(weir_loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn empty() -> MediaPacket {
        MediaPacket {
            data: Vec::new(),
            payload_offset: 0,
            payload_len: 0,
            seq: 0,
            timestamp: 0,
            ssrc: 0,
            marker: false,
            keyframe: false,
            layers: LayerFacts::default(),
            sender_report: None,
        }
    }

    /// Facts of a packet of `len` bytes, every field within its bits.
    fn packet() -> impl Strategy<Value = MediaPacket> {
        (
            (0usize..=MAX_PACKED_LEN, 0usize..=MAX_PACKED_LEN),
            (any::<u16>(), any::<u32>(), any::<u32>(), any::<[bool; 5]>()),
            (any::<u8>(), 0u8..16, 0u8..16, 0u8..16),
            proptest::option::of((0u8..16, 0u8..16)),
            proptest::option::of((0u16..=0xfff, any::<u8>())),
            proptest::option::of((any::<u64>(), any::<u32>())),
        )
            .prop_map(
                |((off, len), (seq, ts, ssrc, b), (enc, sp, tp, up), st, dd, sr)| {
                    let mut p = empty();
                    p.payload_offset = off;
                    p.payload_len = len;
                    p.seq = seq;
                    p.timestamp = ts;
                    p.ssrc = ssrc;
                    p.marker = b[0];
                    p.keyframe = b[1];
                    p.sender_report = sr;
                    p.layers = LayerFacts {
                        encoding: enc,
                        spatial: sp,
                        temporal: tp,
                        frame_start: b[2],
                        frame_end: b[3],
                        switching_point: b[4],
                        switch_up_to: up,
                        structure: st.map(|(spatial, temporal)| StreamLayers { spatial, temporal }),
                        dd,
                    };
                    p
                },
            )
    }

    fn same_facts(a: &MediaPacket, b: &MediaPacket) -> bool {
        (a.payload_offset, a.payload_len, a.seq, a.timestamp, a.ssrc)
            == (b.payload_offset, b.payload_len, b.seq, b.timestamp, b.ssrc)
            && (a.marker, a.keyframe, a.sender_report) == (b.marker, b.keyframe, b.sender_report)
            && a.layers == b.layers
    }

    proptest! {
        #[test]
        fn facts_survive_the_ring_words(p in packet()) {
            let words = pack(&p).unwrap();
            let mut back = empty();
            // Long enough for any offset and length the strategy makes.
            unpack(&words, 2 * MAX_PACKED_LEN + 0xff, &mut back).unwrap();
            prop_assert!(same_facts(&p, &back), "{:?} != {:?}", p, back);
        }

        #[test]
        fn unpack_never_points_outside_the_packet(words in any::<[u64; META_WORDS]>(), len in 0usize..5000) {
            let mut p = empty();
            if unpack(&words, len, &mut p).is_ok() {
                prop_assert!(p.payload_offset + p.payload_len <= len);
                if let Some((o, l)) = p.layers.dd {
                    prop_assert!(usize::from(o) + usize::from(l) <= len);
                }
            }
        }
    }

    #[test]
    fn what_does_not_fit_is_refused() {
        let mut p = empty();
        p.payload_len = MAX_PACKED_LEN + 1;
        assert_eq!(pack(&p), Err(FactsError::DoesNotFit));
        let mut p = empty();
        p.layers.temporal = 16;
        assert_eq!(pack(&p), Err(FactsError::DoesNotFit));
    }

    #[test]
    fn a_payload_beyond_the_entry_is_refused() {
        let mut p = empty();
        p.payload_offset = 12;
        p.payload_len = 100;
        let words = pack(&p).unwrap();
        let mut back = empty();
        assert_eq!(
            unpack(&words, 111, &mut back),
            Err(FactsError::OutOfBounds(111))
        );
        assert_eq!(unpack(&words, 112, &mut back), Ok(()));
    }
}
