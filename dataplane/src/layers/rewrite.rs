//! Per-subscriber VP8/VP9 picture-id and TL0PICIDX rewriting, so that a
//! subscriber sees one continuous picture sequence whatever the selector
//! dropped and whichever encoding it forwards.

use thiserror::Error;
use weir_codecs::vp8::{PictureId, Vp8Error};
use weir_codecs::vp9::Vp9Error;
use weir_codecs::{Codec, Vp8Descriptor, Vp8Patch, Vp9Descriptor, Vp9Patch};

/// Why a payload could not be rewritten.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RewriteError {
    /// The VP8 payload descriptor is malformed.
    #[error(transparent)]
    Vp8(#[from] Vp8Error),
    /// The VP9 payload descriptor is malformed.
    #[error(transparent)]
    Vp9(#[from] Vp9Error),
}

/// Recently forwarded pictures remembered for retransmissions and reordering.
const HISTORY: usize = 32;

/// The mapping of one encoding's picture ids onto the output.
#[derive(Debug, Clone, Copy)]
struct Epoch {
    encoding: u8,
    /// The picture-id width of this encoding.
    long: bool,
    /// `out = in - pid_offset`, modulo the width.
    pid_offset: u16,
    /// `out = in - tl0_offset`, modulo 256.
    tl0_offset: u8,
    /// Newest input picture id seen, forwarded or dropped.
    last_in: Option<u16>,
    /// Whether `last_in` was dropped (and counted in `pid_offset`).
    last_dropped: bool,
}

/// One forwarded picture: input and output picture id.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    valid: bool,
    input: u16,
    output: u16,
}

/// Keeps VP8 picture ids and TL0PICIDX, and VP9 picture ids and TL0PICIDX,
/// continuous for one subscriber.
///
/// Each simulcast encoding has its own picture-id space; at a switch (which
/// the [`LayerSelector`](super::LayerSelector) makes only at a keyframe) the
/// new encoding continues from the last output values. Within an encoding:
///
/// - VP8: pictures dropped by temporal filtering are removed from the
///   picture-id sequence, because libwebrtc's VP8 reference finder holds
///   back frames that follow a picture-id gap until the gap fills.
/// - VP9: picture ids are left as sent. Flexible mode names references as
///   picture-id differences (P_DIFF) and non-flexible mode derives the
///   picture-group index from them, so renumbering would break both; gaps
///   from dropped upper temporal layers are what VP9 receivers expect.
///
/// TL0PICIDX never needs renumbering within an encoding: temporal layer 0 is
/// never dropped by the selector.
///
/// # Calling order
///
/// For each packet of the track, in arrival order, after the selector's
/// decision: [`on_dropped`](Self::on_dropped) for a dropped packet, or
/// [`rewrite`](Self::rewrite) on the forwarder's copy of a forwarded payload.
/// A retransmission may be rewritten again with [`rewrite`](Self::rewrite);
/// it maps to the same values while its picture is among the last 32
/// forwarded. Other codecs pass through untouched.
#[derive(Debug, Clone)]
pub struct PictureIdRewriter {
    codec: Codec,
    epoch: Option<Epoch>,
    last_out_pid: Option<u16>,
    last_out_tl0: Option<u8>,
    history: [Seen; HISTORY],
}

impl PictureIdRewriter {
    /// A rewriter for a track of `codec`.
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            epoch: None,
            last_out_pid: None,
            last_out_tl0: None,
            history: [Seen::default(); HISTORY],
        }
    }

    /// Notes a packet the subscriber does not get. Only pictures of the
    /// encoding being forwarded matter; the rest is ignored.
    pub fn on_dropped(&mut self, encoding: u8, payload: &[u8]) {
        if self.codec != Codec::Vp8 {
            return;
        }
        let Some(epoch) = self.epoch.as_mut().filter(|e| e.encoding == encoding) else {
            return;
        };
        let Ok(d) = Vp8Descriptor::parse(payload) else {
            return;
        };
        let Some(pid) = d.picture_id.filter(|p| p.long == epoch.long) else {
            return;
        };
        let mask = mask(epoch.long);
        if epoch
            .last_in
            .is_none_or(|last| is_newer(pid.value, last, mask))
        {
            epoch.last_in = Some(pid.value);
            epoch.last_dropped = true;
            epoch.pid_offset = epoch.pid_offset.wrapping_add(1) & mask;
        }
    }

    /// Rewrites the payload descriptor of a forwarded packet in place:
    /// `payload` is the forwarder's copy of the RTP payload from `encoding`.
    pub fn rewrite(&mut self, encoding: u8, payload: &mut [u8]) -> Result<(), RewriteError> {
        match self.codec {
            Codec::Vp8 => {
                let d = Vp8Descriptor::parse(payload)?;
                let (picture_id, tl0_pic_idx) =
                    self.map(encoding, d.picture_id, d.tl0_pic_idx, true);
                Vp8Patch {
                    picture_id,
                    tl0_pic_idx,
                }
                .apply(payload)?;
            }
            Codec::Vp9 => {
                let d = Vp9Descriptor::parse(payload)?;
                let tl0 = d.layers.and_then(|l| l.tl0_pic_idx);
                let (picture_id, tl0_pic_idx) = self.map(encoding, d.picture_id, tl0, false);
                Vp9Patch {
                    picture_id,
                    tl0_pic_idx,
                }
                .apply(payload)?;
            }
            Codec::Opus | Codec::H264 | Codec::Av1 => {}
        }
        Ok(())
    }

    /// Output values for a forwarded packet's picture id and TL0PICIDX.
    fn map(
        &mut self,
        encoding: u8,
        pid: Option<PictureId>,
        tl0: Option<u8>,
        renumber: bool,
    ) -> (Option<u16>, Option<u8>) {
        let long = pid.is_some_and(|p| p.long);
        let mut epoch = match self.epoch {
            Some(e) if e.encoding == encoding && (pid.is_none() || e.long == long) => e,
            _ => self.start_epoch(encoding, pid, tl0),
        };
        let out_tl0 = tl0.map(|t| t.wrapping_sub(epoch.tl0_offset));
        if let Some(t) = out_tl0 {
            if self
                .last_out_tl0
                .is_none_or(|last| is_newer(u16::from(t), u16::from(last), 0xff))
            {
                self.last_out_tl0 = Some(t);
            }
        }
        let Some(pid) = pid else {
            self.epoch = Some(epoch);
            return (None, out_tl0);
        };
        let mask = mask(long);
        let v = pid.value & mask;
        let slot = usize::from(v) % HISTORY;
        let newest = epoch.last_in.is_none_or(|last| is_newer(v, last, mask));
        let out = if newest {
            epoch.last_in = Some(v);
            epoch.last_dropped = false;
            v.wrapping_sub(epoch.pid_offset) & mask
        } else if epoch.last_in == Some(v) && epoch.last_dropped && renumber {
            // Part of a picture counted as dropped is forwarded after all
            // (its first packet was lost): it keeps its place.
            epoch.last_dropped = false;
            epoch.pid_offset = epoch.pid_offset.wrapping_sub(1) & mask;
            v.wrapping_sub(epoch.pid_offset) & mask
        } else {
            match self.history[slot] {
                s if s.valid && s.input == v => s.output,
                // Older than the history: best effort with today's offset.
                _ => v.wrapping_sub(epoch.pid_offset) & mask,
            }
        };
        self.history[slot] = Seen {
            valid: true,
            input: v,
            output: out,
        };
        if epoch.last_in == Some(v) {
            self.last_out_pid = Some(out);
        }
        self.epoch = Some(epoch);
        (Some(out), out_tl0)
    }

    /// Maps `encoding` so that its next picture follows the last output.
    fn start_epoch(&mut self, encoding: u8, pid: Option<PictureId>, tl0: Option<u8>) -> Epoch {
        self.history = [Seen::default(); HISTORY];
        let long = pid.is_some_and(|p| p.long);
        let mask = mask(long);
        let pid_offset = match (pid, self.last_out_pid) {
            (Some(p), Some(last)) => (p.value.wrapping_sub(last.wrapping_add(1))) & mask,
            _ => 0,
        };
        let tl0_offset = match (tl0, self.last_out_tl0) {
            (Some(t), Some(last)) => t.wrapping_sub(last.wrapping_add(1)),
            _ => 0,
        };
        Epoch {
            encoding,
            long,
            pid_offset,
            tl0_offset,
            last_in: None,
            last_dropped: false,
        }
    }
}

fn mask(long: bool) -> u16 {
    if long {
        0x7fff
    } else {
        0x7f
    }
}

/// Serial-number comparison in the space `0..=mask` (mask + 1 a power of two).
fn is_newer(a: u16, b: u16, mask: u16) -> bool {
    let d = a.wrapping_sub(b) & mask;
    d != 0 && d <= mask / 2
}
