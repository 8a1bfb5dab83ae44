//! Synthetic media: RTP packets with VP8 (RFC 7741) or Opus (RFC 7587)
//! payloads that parse like a real encoder's, each ending with a trailer.
//!
//! The trailer is the last [`TRAILER_LEN`] bytes of every payload: a
//! big-endian u64 counter (per stream, before `--loss` drops) and the send
//! time as a u64 of microseconds since the process-wide epoch. Subscribers
//! in the same process read it to measure loss, reordering and latency.
//! The counter's top byte names the simulcast encoding (0 without
//! simulcast), so a subscriber tells a layer switch from loss.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir_codecs::vp8::PictureId;
use weir_codecs::Vp8Descriptor;

use crate::captured::Frame;

/// Length of the measurement trailer at the end of every payload.
pub(crate) const TRAILER_LEN: usize = 16;
/// Largest RTP payload we send, so packets stay under a 1280-byte path MTU
/// with SRTP and UDP/IP overhead.
pub(crate) const MAX_PAYLOAD: usize = 1200;
/// VP8 descriptor we write: X, I with a 15-bit picture id.
const VP8_DESCRIPTOR_LEN: usize = 4;
/// Frame bytes that fit in one packet.
const VP8_CHUNK: usize = MAX_PAYLOAD - VP8_DESCRIPTOR_LEN - TRAILER_LEN;
/// Video RTP clock ticks per frame at 30 fps.
pub(crate) const VIDEO_TICKS_PER_FRAME: u32 = 3000;
/// Opus RTP clock ticks per 20 ms packet.
pub(crate) const OPUS_TICKS_PER_PACKET: u32 = 960;
/// Width and height written in keyframe headers without simulcast.
const WIDTH: u16 = 640;
const HEIGHT: u16 = 480;
/// Bits of the trailer counter below the encoding index.
const LAYER_SHIFT: u32 = 56;

/// One simulcast encoding a publisher sends: its rid, picture size and
/// share of the video bitrate. Listed lowest first, as the reference
/// protocol's `a=simulcast` wants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SimulcastLayer {
    /// `a=rid` and rtp-stream-id value.
    pub(crate) rid: &'static str,
    /// Keyframe width.
    pub(crate) width: u16,
    /// Keyframe height.
    pub(crate) height: u16,
    /// Per mille of `--video-kbps`.
    pub(crate) share_permille: u32,
}

/// Chromium's three encodings of a 1280×720 capture (scaleResolutionDownBy
/// 4, 2, 1), with roughly its bitrate split.
pub(crate) const SIMULCAST_LAYERS: [SimulcastLayer; 3] = [
    SimulcastLayer {
        rid: "q",
        width: 320,
        height: 180,
        share_permille: 100,
    },
    SimulcastLayer {
        rid: "h",
        width: 640,
        height: 360,
        share_permille: 250,
    },
    SimulcastLayer {
        rid: "f",
        width: 1280,
        height: 720,
        share_permille: 650,
    },
];

/// Splits a trailer counter into (encoding index, packet counter).
pub(crate) fn split_counter(counter: u64) -> (u8, u64) {
    (
        (counter >> LAYER_SHIFT) as u8,
        counter & ((1 << LAYER_SHIFT) - 1),
    )
}

/// The one-byte-form (RFC 8285) header extension block naming a stream's
/// mid and rid, as Chromium sends on simulcast encodings: the server binds
/// the SSRC to the track's encoding by them.
pub(crate) fn mid_rid_extensions(mid_id: u8, mid: &str, rid_id: u8, rid: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + mid.len() + rid.len());
    for (id, value) in [(mid_id, mid), (rid_id, rid)] {
        // Values are short ASCII tokens (1..=16 bytes) chosen by us.
        let len = value.len().clamp(1, 16);
        body.push((id << 4) | (len as u8 - 1));
        body.extend_from_slice(&value.as_bytes()[..len]);
    }
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let mut block = vec![0xbe, 0xde];
    block.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
    block.extend_from_slice(&body);
    block
}

/// Appends the trailer.
pub(crate) fn write_trailer(out: &mut Vec<u8>, counter: u64, sent_us: u64) {
    out.extend_from_slice(&counter.to_be_bytes());
    out.extend_from_slice(&sent_us.to_be_bytes());
}

/// Rewrites the send time of the trailer at the end of `packet` (a plain
/// RTP packet whose payload ends with one): a paced packet's latency starts
/// when it leaves, not when it was written.
pub(crate) fn restamp_trailer(packet: &mut [u8], sent_us: u64) {
    if let Some(start) = packet.len().checked_sub(8) {
        packet[start..].copy_from_slice(&sent_us.to_be_bytes());
    }
}

/// Reads the trailer at the end of a payload: (counter, send time µs).
pub(crate) fn read_trailer(payload: &[u8]) -> Option<(u64, u64)> {
    let t = payload
        .len()
        .checked_sub(TRAILER_LEN)
        .map(|s| &payload[s..])?;
    let counter = u64::from_be_bytes(t[..8].try_into().ok()?);
    let sent = u64::from_be_bytes(t[8..].try_into().ok()?);
    Some((counter, sent))
}

/// The RTP header state of one outgoing stream.
#[derive(Debug)]
pub(crate) struct RtpStream {
    ssrc: u32,
    pt: u8,
    seq: u16,
    /// Trailer counter of the next packet.
    pub(crate) counter: u64,
    /// Header extension block written on every packet (empty: none).
    extensions: Vec<u8>,
}

impl RtpStream {
    pub(crate) fn new(ssrc: u32, pt: u8, rng: &mut impl Rng) -> Self {
        Self {
            ssrc,
            pt,
            seq: rng.gen(),
            counter: 0,
            extensions: Vec::new(),
        }
    }

    /// Writes `block` (a whole RFC 8285 extension block) on every packet.
    pub(crate) fn set_extensions(&mut self, block: Vec<u8>) {
        self.extensions = block;
    }

    /// Clears `out` and writes the next packet's fixed header into it.
    pub(crate) fn header(&mut self, out: &mut Vec<u8>, timestamp: u32, marker: bool) {
        out.clear();
        out.push(if self.extensions.is_empty() {
            0x80
        } else {
            0x90
        });
        out.push((u8::from(marker) << 7) | (self.pt & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.extensions);
        self.seq = self.seq.wrapping_add(1);
        self.counter += 1;
    }
}

/// Filler bytes for frame and audio data (incompressible, like real media).
fn filler() -> &'static [u8] {
    static FILLER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILLER.get_or_init(|| {
        let mut rng = SmallRng::seed_from_u64(0x5745_4952);
        (0..MAX_PAYLOAD).map(|_| rng.gen()).collect()
    })
}

/// A VP8 "encoder": frame sizes around a target bitrate, a keyframe every
/// interval or on request, packetized per RFC 7741.
#[derive(Debug)]
pub(crate) struct Vp8Source {
    rtp: RtpStream,
    timestamp: u32,
    picture_id: u16,
    frames_per_keyframe: u64,
    frame_index: u64,
    /// Average bytes of a delta frame.
    delta_bytes: usize,
    /// Bytes of a keyframe.
    key_bytes: usize,
    /// Keyframe dimensions.
    size: (u16, u16),
    /// Simulcast encoding index, in the trailer's top byte.
    layer: u8,
    /// Real frames to replay instead of synthetic ones (then the trailer
    /// only ends a frame's last packet, where a decoder ignores it).
    captured: Option<&'static [Frame]>,
    /// Index of the next captured frame.
    replay: usize,
    rng: SmallRng,
}

/// One frame's packets are written by [`Vp8Source::frame`] through this.
pub(crate) struct Vp8Frame {
    /// Whether it is a keyframe.
    pub(crate) keyframe: bool,
    /// Its size in bytes (without descriptors and trailers).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) bytes: usize,
}

impl Vp8Source {
    /// `bitrate` in bit/s, `keyframe_every` in frames (≥ 1).
    pub(crate) fn new(ssrc: u32, pt: u8, bitrate: u32, keyframe_every: u64, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let frames = keyframe_every.max(1);
        // A keyframe weighs about ten delta frames; the budget of one
        // keyframe interval is shared accordingly.
        let budget = f64::from(bitrate) / 8.0 / 30.0 * frames as f64;
        let unit = budget / (frames as f64 - 1.0 + 10.0);
        Self {
            rtp: RtpStream::new(ssrc, pt, &mut rng),
            timestamp: rng.gen(),
            picture_id: rng.gen::<u16>() & 0x7fff,
            frames_per_keyframe: frames,
            frame_index: 0,
            delta_bytes: (unit as usize).max(40),
            key_bytes: ((unit * 10.0) as usize).max(400),
            size: (WIDTH, HEIGHT),
            layer: 0,
            captured: None,
            replay: 0,
            rng,
        }
    }

    /// Replays `frames` (which start with a keyframe) instead of writing
    /// synthetic frames; the bitrate is then the capture's.
    pub(crate) fn replaying(mut self, frames: &'static [Frame]) -> Self {
        self.captured = Some(frames);
        self
    }

    /// Makes this source simulcast encoding `index` of `layer`'s size,
    /// naming itself with the mid and rid extensions.
    pub(crate) fn simulcast(
        mut self,
        index: u8,
        layer: &SimulcastLayer,
        extensions: Vec<u8>,
    ) -> Self {
        self.layer = index;
        self.size = (layer.width, layer.height);
        self.rtp.set_extensions(extensions);
        self
    }

    /// Writes the next frame (a keyframe when due or `force_key`) as
    /// packets into `out` one at a time, calling `send` for each.
    pub(crate) fn frame(
        &mut self,
        force_key: bool,
        out: &mut Vec<u8>,
        mut send: impl FnMut(&mut Vec<u8>),
    ) -> Vp8Frame {
        let due = force_key || self.frame_index % self.frames_per_keyframe == 0;
        let (keyframe, bytes, captured) = match self.captured {
            Some(frames) if !frames.is_empty() => {
                // A keyframe restarts the loop; so does its end, since the
                // first frame is the only keyframe the next ones build on.
                if due || self.replay >= frames.len() {
                    self.replay = 0;
                }
                let f = &frames[self.replay];
                self.replay += 1;
                (f.keyframe, f.data.len(), Some(f.data.as_slice()))
            }
            _ => {
                let bytes = if due {
                    self.key_bytes
                } else {
                    // ±25 % around the average, like a real rate controller.
                    let j = self.delta_bytes / 4;
                    self.rng
                        .gen_range(self.delta_bytes - j..=self.delta_bytes + j)
                };
                (due, bytes, None)
            }
        };
        if keyframe {
            // Periodic keyframes count from the last one, forced or not.
            self.frame_index = 0;
        }
        self.frame_index += 1;
        let header = frame_header(keyframe, bytes, self.size);
        let packets = bytes.div_ceil(VP8_CHUNK).max(1);
        let mut written = 0;
        for i in 0..packets {
            let chunk = (bytes - written).min(VP8_CHUNK);
            let last = i + 1 == packets;
            self.rtp.header(out, self.timestamp, last);
            let d = Vp8Descriptor {
                non_reference: false,
                start_of_partition: i == 0,
                partition_index: 0,
                picture_id: Some(PictureId {
                    value: self.picture_id,
                    long: true,
                }),
                tl0_pic_idx: None,
                tid: None,
                layer_sync: false,
                key_idx: None,
                header_len: 0,
                keyframe: false,
            };
            let mut desc = [0u8; VP8_DESCRIPTOR_LEN];
            // The descriptor has a fixed shape that fits its array.
            let n = d.write(&mut desc).unwrap_or(0);
            out.extend_from_slice(&desc[..n]);
            let fill = filler();
            if let Some(data) = captured {
                out.extend_from_slice(&data[written..written + chunk]);
            } else if i == 0 {
                let h = header.len().min(chunk);
                out.extend_from_slice(&header[..h]);
                out.extend_from_slice(&fill[..chunk - h]);
            } else {
                out.extend_from_slice(&fill[..chunk]);
            }
            // Replayed frames must stay decodable: the trailer goes after
            // the frame's last byte, where the decoder stops reading.
            if captured.is_none() || last {
                let counter = (u64::from(self.layer) << LAYER_SHIFT) | (self.rtp.counter - 1);
                write_trailer(out, counter, crate::stats::now_us());
            }
            written += chunk;
            send(out);
        }
        self.timestamp = self.timestamp.wrapping_add(VIDEO_TICKS_PER_FRAME);
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        Vp8Frame { keyframe, bytes }
    }
}

/// The VP8 frame header (RFC 6386 §9.1): the 3-byte frame tag and, for a
/// keyframe, the start code and dimensions.
fn frame_header(keyframe: bool, bytes: usize, (width, height): (u16, u16)) -> Vec<u8> {
    let header_len = if keyframe { 10 } else { 3 };
    // The first partition is a fraction of the frame, as with libvpx.
    let first_part = ((bytes.saturating_sub(header_len)) / 4).min((1 << 19) - 1) as u32;
    let tag = u32::from(!keyframe) // P: 0 for a keyframe
        | (1 << 4) // show_frame
        | (first_part << 5);
    let mut h = vec![tag as u8, (tag >> 8) as u8, (tag >> 16) as u8];
    if keyframe {
        h.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        h.extend_from_slice(&width.to_le_bytes());
        h.extend_from_slice(&height.to_le_bytes());
    }
    h
}

/// An Opus "encoder": one 20 ms packet (about 32 kbit/s) per call.
#[derive(Debug)]
pub(crate) struct OpusSource {
    rtp: RtpStream,
    timestamp: u32,
    rng: SmallRng,
}

impl OpusSource {
    pub(crate) fn new(ssrc: u32, pt: u8, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        Self {
            rtp: RtpStream::new(ssrc, pt, &mut rng),
            timestamp: rng.gen(),
            rng,
        }
    }

    /// Writes the next packet into `out`.
    pub(crate) fn packet(&mut self, out: &mut Vec<u8>) {
        self.rtp.header(out, self.timestamp, false);
        // TOC: config 15 (hybrid, fullband, 20 ms), mono, one frame.
        out.push(15 << 3);
        let n = self.rng.gen_range(60..=100);
        out.extend_from_slice(&filler()[..n]);
        write_trailer(out, self.rtp.counter - 1, crate::stats::now_us());
        self.timestamp = self.timestamp.wrapping_add(OPUS_TICKS_PER_PACKET);
    }
}

/// Whether a decrypted RTCP compound packet asks for a keyframe (PLI or FIR).
pub(crate) fn wants_keyframe(rtcp: &[u8]) -> bool {
    let mut rest = rtcp;
    while rest.len() >= 4 {
        let fmt = rest[0] & 0x1f;
        let pt = rest[1];
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if pt == 206 && (fmt == 1 || fmt == 4) {
            return true;
        }
        rest = rest.get(len..).unwrap_or(&[]);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_codecs::{OpusToc, RtpHeader};

    /// RTP fixed header length (no CSRCs, no extension).
    const RTP_HEADER_LEN: usize = 12;

    #[test]
    fn vp8_frames_parse_as_vp8() {
        let mut src = Vp8Source::new(1, 96, 1_000_000, 60, 7);
        let mut out = Vec::new();
        let mut packets = Vec::new();
        let f = src.frame(false, &mut out, |p| packets.push(p.clone()));
        assert!(f.keyframe, "the first frame is a keyframe");
        assert!(packets.len() > 1, "a keyframe spans packets");
        let mut first_pid = None;
        for (i, p) in packets.iter().enumerate() {
            assert!(p.len() <= RTP_HEADER_LEN + MAX_PAYLOAD);
            let h = RtpHeader::parse(p).unwrap();
            assert_eq!(h.marker(), i + 1 == packets.len());
            let d = Vp8Descriptor::parse(h.payload()).unwrap();
            assert_eq!(d.start_of_partition, i == 0);
            assert_eq!(d.keyframe, i == 0);
            first_pid.get_or_insert(d.picture_id.unwrap());
            assert_eq!(Some(d.picture_id.unwrap()), first_pid);
            if i == 0 {
                let vp8 = &h.payload()[d.header_len..];
                assert_eq!(&vp8[3..6], &[0x9d, 0x01, 0x2a]);
                assert_eq!(u16::from_le_bytes([vp8[6], vp8[7]]), WIDTH);
            }
            let (counter, _) = read_trailer(h.payload()).unwrap();
            assert_eq!(counter, i as u64);
        }
        packets.clear();
        let f = src.frame(false, &mut out, |p| packets.push(p.clone()));
        assert!(!f.keyframe);
        let h = RtpHeader::parse(&packets[0]).unwrap();
        let d = Vp8Descriptor::parse(h.payload()).unwrap();
        assert!(!d.keyframe);
        assert_eq!(
            d.picture_id.unwrap().value,
            (first_pid.unwrap().value + 1) & 0x7fff
        );
        packets.clear();
        assert!(
            src.frame(true, &mut out, |p| packets.push(p.clone()))
                .keyframe
        );
    }

    #[test]
    fn vp8_bitrate_is_near_the_target() {
        let mut src = Vp8Source::new(1, 96, 1_000_000, 60, 7);
        let mut out = Vec::new();
        let total: usize = (0..300)
            .map(|_| src.frame(false, &mut out, |_| {}).bytes)
            .sum();
        let bps = total as f64 * 8.0 / 10.0;
        assert!((bps / 1e6 - 1.0).abs() < 0.1, "{bps}");
    }

    #[test]
    fn opus_packets_have_a_toc() {
        let mut src = OpusSource::new(2, 111, 1);
        let mut out = Vec::new();
        src.packet(&mut out);
        let h = RtpHeader::parse(&out).unwrap();
        assert!(OpusToc::parse(h.payload()).is_ok());
        assert_eq!(read_trailer(h.payload()).unwrap().0, 0);
    }

    #[test]
    fn simulcast_encodings_carry_mid_rid_and_layer() {
        let layer = &SIMULCAST_LAYERS[2];
        let ext = mid_rid_extensions(9, "1", 10, layer.rid);
        assert_eq!(ext.len() % 4, 0);
        let mut src = Vp8Source::new(5, 96, 650_000, 60, 3).simulcast(2, layer, ext);
        let mut out = Vec::new();
        let mut packets = Vec::new();
        src.frame(false, &mut out, |p| packets.push(p.clone()));
        let h = RtpHeader::parse(&packets[0]).unwrap();
        let exts =
            weir_codecs::Extensions::parse(h.extension_profile().unwrap(), h.extension_block())
                .unwrap();
        assert_eq!(
            weir_codecs::extensions::parse_mid(exts.get(9).unwrap()).unwrap(),
            "1"
        );
        assert_eq!(
            weir_codecs::extensions::parse_rtp_stream_id(exts.get(10).unwrap()).unwrap(),
            "f"
        );
        let d = Vp8Descriptor::parse(h.payload()).unwrap();
        let vp8 = &h.payload()[d.header_len..];
        assert_eq!(u16::from_le_bytes([vp8[6], vp8[7]]), 1280);
        let (c, _) = read_trailer(h.payload()).unwrap();
        assert_eq!(split_counter(c), (2, 0));
    }

    #[test]
    fn replayed_frames_are_the_capture_with_a_trailer_at_the_end() {
        let frames = crate::captured::frames(None).unwrap();
        let mut src = Vp8Source::new(1, 96, 1_000_000, 1000, 7).replaying(frames);
        let mut out = Vec::new();
        for (n, want) in frames.iter().chain(&frames[..3]).enumerate() {
            let mut packets = Vec::new();
            let f = src.frame(false, &mut out, |p| packets.push(p.clone()));
            // The loop restarts at the keyframe.
            assert_eq!(f.keyframe, n % frames.len() == 0, "frame {n}");
            let mut data = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                let h = RtpHeader::parse(p).unwrap();
                let d = Vp8Descriptor::parse(h.payload()).unwrap();
                let body = &h.payload()[d.header_len..];
                if i + 1 == packets.len() {
                    assert!(h.marker());
                    let (c, _) = read_trailer(body).unwrap();
                    assert_eq!(split_counter(c).0, 0);
                    data.extend_from_slice(&body[..body.len() - TRAILER_LEN]);
                } else {
                    data.extend_from_slice(body);
                }
            }
            assert_eq!(data, want.data, "frame {n} is replayed byte for byte");
        }
        // A keyframe request restarts the loop too.
        let f = src.frame(true, &mut out, |_| {});
        assert!(f.keyframe);
    }

    #[test]
    fn keyframe_requests() {
        // RR (empty) then PLI.
        let mut p = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        assert!(!wants_keyframe(&p));
        p.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert!(wants_keyframe(&p));
        assert!(!wants_keyframe(&[0x81, 206]));
    }
}
