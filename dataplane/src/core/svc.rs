//! SVC in the core. On the publisher's core: the layer facts of a video
//! packet from the codec's payload descriptor, the Dependency Descriptor
//! when one is negotiated (its template structure cached per stream), and
//! the layer structure the stream announces. On a subscriber's core: the
//! descriptor added to forwarded packets, with narrowed active decode
//! targets.

use weir_codecs::av1::dependency_descriptor::rewrite_active_decode_targets;
use weir_codecs::{
    Codec, DependencyDescriptor, DependencyStructure, ExtForm, Extensions, ExtensionsWriter,
    RtpHeader,
};

use crate::forwarder::{Forwarder, TwccStamp};
use crate::layers::{Layers, StreamLayers};
use crate::packet::{LayerFacts, MediaPacket};

/// Whether the packet starts a keyframe, and its layer facts.
///
/// `dd_ext_id` is the Dependency Descriptor's extension id when negotiated;
/// `dd_cache` holds the stream's last template structure. A descriptor that
/// does not parse (lost structure, garbage) is ignored and the payload
/// descriptor alone speaks, so a stream keeps flowing while a keyframe
/// brings the structure back.
pub(super) fn video_layer_facts(
    codec: Codec,
    header: &RtpHeader<'_>,
    encoding: u8,
    dd_ext_id: Option<u8>,
    dd_cache: &mut Option<DependencyStructure>,
) -> (bool, LayerFacts) {
    let payload = header.payload();
    let mut dd_at = None;
    let dd = dd_ext_id.and_then(|id| {
        let value = Extensions::from_header(header).ok()?.get(id)?;
        let d = DependencyDescriptor::parse_with_cache(value, dd_cache).ok()?;
        // `value` borrows from the packet: its offset is a pointer difference.
        let offset = value.as_ptr() as usize - header.packet().as_ptr() as usize;
        dd_at = Some((u16::try_from(offset).ok()?, u8::try_from(value.len()).ok()?));
        Some(d)
    });
    let structure = match &dd {
        Some(d) if d.structure_attached => dd_cache
            .as_ref()
            .map(StreamLayers::from_dependency_structure),
        _ if codec == Codec::Vp9 => StreamLayers::from_vp9(payload),
        _ => None,
    };
    match weir_codecs::facts_with_descriptor(codec, payload, dd.as_ref()) {
        Ok(f) => {
            // Only frame starts are switch candidates; the structure walk
            // is per frame, not per packet.
            let switch_up_to = match (&dd, dd_cache.as_ref()) {
                (Some(d), Some(s)) if f.switching_point && f.frame_start => {
                    s.switch_up_to(&d.frame.dtis).unwrap_or(0)
                }
                _ => 0,
            };
            (
                f.keyframe && f.frame_start,
                LayerFacts {
                    encoding,
                    spatial: f.spatial_id.unwrap_or(0),
                    temporal: f.temporal_id.unwrap_or(0),
                    frame_start: f.frame_start,
                    frame_end: f.frame_end || header.marker(),
                    switching_point: f.switching_point,
                    switch_up_to,
                    structure,
                    dd: dd_at,
                },
            )
        }
        Err(_) => (
            false,
            LayerFacts {
                encoding,
                structure,
                dd: dd_at,
                ..LayerFacts::default()
            },
        ),
    }
}

/// The Dependency Descriptor toward one subscriber that negotiated it:
/// forwarded packets carry the publisher's descriptor, with the active
/// decode targets narrowed to the layers this subscriber receives, so its
/// decoder does not wait for frames of layers that will never come.
pub(super) struct DdOut {
    /// The subscriber's extension id.
    ext_id: u8,
    /// The stream's template structure as this subscription last saw it
    /// (the publisher's core has its own; the two may be on other cores).
    /// Boxed: it is kilobytes, allocated once per subscription.
    cache: Box<Option<DependencyStructure>>,
    /// The active decode targets for the layers they were computed for.
    mask: Option<(Layers, u32)>,
    /// A narrowed mask was sent since the last structure: the receiver
    /// keeps it until told otherwise, so "all" must then be written out.
    narrowed: bool,
}

impl DdOut {
    pub(super) fn new(ext_id: u8) -> Self {
        Self {
            ext_id,
            cache: Box::new(None),
            mask: None,
            narrowed: false,
        }
    }

    /// Sees every packet of the track, forwarded or not, to keep the
    /// template structure.
    pub(super) fn observe(&mut self, packet: &MediaPacket) {
        let Some(value) = dd_value(packet) else {
            return;
        };
        // Byte 3's top bit is template_dependency_structure_present_flag;
        // only those descriptors change the cache, so only they are parsed.
        if value.len() > 3
            && value[3] & 0x80 != 0
            && DependencyDescriptor::parse_with_cache(value, &mut self.cache).is_ok()
        {
            self.mask = None;
        }
    }

    /// Adds `packet`'s descriptor to the packet the forwarder wrote into
    /// `out[..n]` (fixed header, the transport-wide sequence number
    /// extension when `twcc`, payload) and returns the new length; `None`
    /// leaves the packet without it (no descriptor, no structure yet, no
    /// room).
    pub(super) fn write(
        &mut self,
        packet: &MediaPacket,
        current: Option<Layers>,
        out: &mut [u8],
        n: usize,
        twcc: Option<TwccStamp>,
    ) -> Option<usize> {
        let value = dd_value(packet)?;
        let structure = self.cache.as_ref().as_ref()?;
        let all = structure.all_decode_targets();
        let mask = match (current, self.mask) {
            (None, _) => all,
            (Some(c), Some((l, m))) if l == c => m,
            (Some(c), _) => {
                let m = active_decode_targets(structure, c);
                self.mask = Some((c, m));
                m
            }
        };
        let mut rewritten = [0u8; 255];
        let attached = value.len() > 3 && value[3] & 0x80 != 0;
        let dd = if mask == all && (!self.narrowed || attached) {
            // A structure resets the receiver's mask to all targets.
            self.narrowed = false;
            value
        } else {
            let len =
                rewrite_active_decode_targets(value, Some(structure), mask, &mut rewritten).ok()?;
            self.narrowed = mask != all;
            &rewritten[..len]
        };
        add_extension_block(out, n, twcc, self.ext_id, dd)
    }
}

/// The Dependency Descriptor value of a published packet, if it has one.
fn dd_value(packet: &MediaPacket) -> Option<&[u8]> {
    let (offset, len) = packet.layers.dd?;
    let start = usize::from(offset);
    packet.data.get(start..start + usize::from(len))
}

/// The decode targets a subscriber receiving up to `layers` can decode.
fn active_decode_targets(structure: &DependencyStructure, layers: Layers) -> u32 {
    (0..usize::from(structure.decode_target_count()))
        .filter(|&dt| {
            structure
                .decode_target_layers(dt)
                .is_some_and(|(s, t)| s <= layers.spatial && t <= layers.temporal)
        })
        .fold(0, |mask, dt| mask | (1 << dt))
}

/// Rewrites the extension block of a forwarded packet in `out[..n]` to hold
/// the transport-wide sequence number (if any) and `(dd_id, dd)`, moving
/// the payload; returns the new length. The one-byte form when everything
/// fits it, else the two-byte form (RFC 8285 §4.3).
fn add_extension_block(
    out: &mut [u8],
    n: usize,
    twcc: Option<TwccStamp>,
    dd_id: u8,
    dd: &[u8],
) -> Option<usize> {
    let one_byte = dd.len() <= 16
        && (1..=14).contains(&dd_id)
        && twcc.is_none_or(|t| (1..=14).contains(&t.ext_id));
    let form = if one_byte {
        ExtForm::OneByte
    } else {
        ExtForm::TwoByte { appbits: 0 }
    };
    let mut block = [0u8; 4 + 4 + 2 + 255 + 3];
    let mut w = ExtensionsWriter::new(form, &mut block);
    if let Some(t) = twcc {
        w.push(t.ext_id, &t.seq.to_be_bytes()).ok()?;
    }
    w.push(dd_id, dd).ok()?;
    let written = w.finish().ok()?;
    let old_start = Forwarder::payload_offset(twcc);
    let new_start = 16 + written.len;
    let payload_len = n.checked_sub(old_start)?;
    let new_n = new_start + payload_len;
    if new_n > out.len() {
        return None;
    }
    out.copy_within(old_start..n, new_start);
    out[0] |= 0x10;
    out[12..14].copy_from_slice(&written.profile.to_be_bytes());
    out[14..16].copy_from_slice(&written.length_words().to_be_bytes());
    out[16..new_start].copy_from_slice(&block[..written.len]);
    Some(new_n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Forwarder::forward` writes with a transport-wide sequence number.
    fn forwarded(payload: &[u8]) -> (Vec<u8>, usize) {
        let mut out = vec![0u8; 1500];
        out[..12].copy_from_slice(&[0x90, 0xe4, 0, 7, 0, 0, 0, 9, 0, 0, 0x15, 0xb3]);
        out[12..20].copy_from_slice(&[0xbe, 0xde, 0, 1, 0x31, 0x12, 0x34, 0]);
        out[20..20 + payload.len()].copy_from_slice(payload);
        (out, 20 + payload.len())
    }

    #[test]
    fn extension_block_in_both_forms() {
        let payload: Vec<u8> = (0..200).map(|i| i as u8).collect();
        let twcc = Some(TwccStamp {
            ext_id: 3,
            seq: 0x1234,
        });
        for dd_len in [3usize, 16, 17, 80, 255] {
            let dd: Vec<u8> = (0..dd_len).map(|i| 0x80 | i as u8).collect();
            let (mut out, n) = forwarded(&payload);
            let n = add_extension_block(&mut out, n, twcc, 12, &dd).unwrap();
            let h = RtpHeader::parse(&out[..n]).unwrap();
            let e = Extensions::from_header(&h).unwrap();
            let one_byte = dd_len <= 16;
            assert_eq!(e.form() == ExtForm::OneByte, one_byte, "{dd_len}");
            assert_eq!(e.get(3), Some(&[0x12, 0x34][..]));
            assert_eq!(e.get(12), Some(&dd[..]));
            assert_eq!(h.payload(), &payload[..]);
            assert_eq!(
                (h.sequence_number(), h.ssrc(), h.marker()),
                (7, 0x15b3, true)
            );
        }
        // Without transport-cc, and without room.
        let (mut out, _) = forwarded(&payload);
        out[0] = 0x80;
        out.copy_within(20..220, 12);
        let n = add_extension_block(&mut out, 212, None, 12, &[1, 2, 3]).unwrap();
        let h = RtpHeader::parse(&out[..n]).unwrap();
        assert_eq!(h.payload(), &payload[..]);
        let mut small = vec![0u8; 220];
        small[..20].copy_from_slice(&forwarded(&payload).0[..20]);
        assert_eq!(
            add_extension_block(&mut small, 220, twcc, 12, &[0; 40]),
            None
        );
    }
}

#[cfg(test)]
mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the lengths, the block is added with the payload intact
        /// or refused; never a panic.
        #[test]
        fn extension_block_fits_or_refuses(
            payload_len in 0usize..1500,
            dd_len in 1usize..256,
            twcc in any::<bool>(),
            // Negotiated ids are distinct: never the transport-cc id (3) below.
            id in (1u8..=255).prop_filter("not the transport-cc id", |i| *i != 3),
        ) {
            let mut out = vec![0u8; 1500];
            let start = if twcc { 20 } else { 12 };
            let n = (start + payload_len).min(1500);
            out[0] = if twcc { 0x90 } else { 0x80 };
            if twcc {
                out[12..20].copy_from_slice(&[0xbe, 0xde, 0, 1, 0x31, 0, 1, 0]);
            }
            for (i, b) in out[start..n].iter_mut().enumerate() {
                *b = i as u8;
            }
            let payload = out[start..n].to_vec();
            let stamp = twcc.then_some(TwccStamp { ext_id: 3, seq: 1 });
            let dd = vec![0x5a; dd_len];
            if let Some(m) = add_extension_block(&mut out, n, stamp, id, &dd) {
                let h = RtpHeader::parse(&out[..m]).unwrap();
                prop_assert_eq!(h.payload(), &payload[..]);
                prop_assert_eq!(Extensions::from_header(&h).unwrap().get(id), Some(&dd[..]));
            }
        }
    }
}
