//! The origin's retransmission ring for one relayed track: the last
//! packets sent, by sequence number, to answer a downstream server's NACKs
//! whatever the local subscribers of the track.
use weir_dataplane::packet_pool::PacketRef;

/// Packets kept per relayed track (about 1 s of 8 Mbit/s video).
pub(crate) const SLOTS: usize = 1024;

pub(crate) struct SentRing {
    slots: Vec<Option<PacketRef>>,
}

impl SentRing {
    pub(crate) fn new() -> Self {
        Self {
            slots: vec![None; SLOTS],
        }
    }

    pub(crate) fn put(&mut self, packet: &PacketRef) {
        self.slots[usize::from(packet.seq) % SLOTS] = Some(packet.clone());
    }

    /// The packet of `ssrc` numbered `seq`, if still held.
    pub(crate) fn get(&self, ssrc: u32, seq: u16) -> Option<&PacketRef> {
        self.slots[usize::from(seq) % SLOTS]
            .as_ref()
            .filter(|p| p.seq == seq && p.ssrc == ssrc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_dataplane::packet::{LayerFacts, MediaPacket};

    fn packet(ssrc: u32, seq: u16) -> PacketRef {
        PacketRef::from(MediaPacket {
            data: vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            payload_offset: 12,
            payload_len: 0,
            seq,
            timestamp: 0,
            ssrc,
            marker: false,
            keyframe: false,
            layers: LayerFacts::default(),
            sender_report: None,
        })
    }

    #[test]
    fn holds_the_last_slots_packets_across_a_wrap() {
        let mut ring = SentRing::new();
        let start = u16::MAX - 100;
        for i in 0..2000u16 {
            ring.put(&packet(7, start.wrapping_add(i)));
        }
        let last = start.wrapping_add(1999);
        assert!(ring.get(7, last).is_some());
        assert!(ring.get(7, last.wrapping_sub(SLOTS as u16 - 1)).is_some());
        assert!(ring.get(7, last.wrapping_sub(SLOTS as u16)).is_none());
        assert!(
            ring.get(8, last).is_none(),
            "another SSRC's packet is not a hit"
        );
    }
}
