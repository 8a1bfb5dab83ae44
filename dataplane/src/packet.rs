//! A published media packet, decrypted and parsed once on its publisher's
//! core, then shared read-only with every subscriber.

/// Media kind of a track as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Audio: forwarded from the first packet.
    Audio,
    /// Video: a new subscriber starts on a keyframe.
    Video,
}

/// A decrypted RTP packet with the facts forwarding needs.
#[derive(Debug, Clone)]
pub struct MediaPacket {
    /// The whole decrypted RTP packet.
    pub data: Vec<u8>,
    /// Offset of the payload in `data`.
    pub payload_offset: usize,
    /// Payload length (without padding).
    pub payload_len: usize,
    /// RTP sequence number as sent by the publisher.
    pub seq: u16,
    /// RTP timestamp as sent by the publisher.
    pub timestamp: u32,
    /// The publisher's SSRC.
    pub ssrc: u32,
    /// The marker bit (last packet of a video frame).
    pub marker: bool,
    /// The packet starts a keyframe (codec-specific, from `weir-codecs`).
    pub keyframe: bool,
    /// Layer facts for selection.
    pub layers: LayerFacts,
    /// The latest sender report of this packet's stream: (NTP, RTP
    /// timestamp), to align timestamps when switching simulcast encodings.
    pub sender_report: Option<(u64, u32)>,
}

/// Which layers a packet belongs to, codec-independent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerFacts {
    /// Simulcast encoding index (0 = lowest resolution; 0 without simulcast).
    pub encoding: u8,
    /// SVC spatial id (0 without SVC).
    pub spatial: u8,
    /// Temporal id (0 without temporal layers).
    pub temporal: u8,
    /// First packet of a frame.
    pub frame_start: bool,
    /// Last packet of a (layer) frame.
    pub frame_end: bool,
    /// A decoder may switch up to this temporal layer here.
    pub switching_point: bool,
    /// At a switching point: the highest temporal layer a decoder may
    /// switch up to here, when the stream says (Dependency Descriptor);
    /// 0 otherwise (the packet's own layer then).
    pub switch_up_to: u8,
    /// The layer counts this packet announces in-band (VP9 scalability
    /// structure or Dependency Descriptor template structure), if any.
    pub structure: Option<crate::layers::StreamLayers>,
    /// Where the Dependency Descriptor's value is in the packet (offset,
    /// length), when one was negotiated and sent: subscribers that
    /// negotiated it get it forwarded, with their active decode targets.
    pub dd: Option<(u16, u8)>,
}

impl MediaPacket {
    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        self.data
            .get(self.payload_offset..self.payload_offset + self.payload_len)
            .unwrap_or(&[])
    }
}
