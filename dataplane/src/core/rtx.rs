//! RTX (RFC 4588) toward subscribers: a retransmission travels on its own
//! SSRC and payload type with its own sequence numbers, the original
//! sequence number (OSN) in the first two payload bytes. Receivers then
//! tell repairs from originals, and a repair does not disturb the media
//! stream's loss and jitter statistics.

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
    fn refuses_what_does_not_fit_or_is_not_a_header() {
        let mut r = RtxStream::new(1, 97);
        let mut buf = [0u8; 14];
        assert_eq!(r.wrap(&mut buf, 12, 13), None);
        assert_eq!(r.wrap(&mut buf, 8, 12), None);
        assert_eq!(r.wrap(&mut buf, 13, 12), None);
        assert_eq!(r.wrap(&mut buf, 12, 12), Some(14));
    }
}
