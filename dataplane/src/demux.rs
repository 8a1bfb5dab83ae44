//! Demultiplexing of one UDP port by the first byte (RFC 7983, RFC 5761).

/// What a datagram on the media port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    /// STUN (first byte 0–3).
    Stun,
    /// DTLS (first byte 20–63).
    Dtls,
    /// RTP (first byte 128–191, second byte not an RTCP packet type).
    Rtp,
    /// RTCP (first byte 128–191, packet type 192–223).
    Rtcp,
    /// Anything else (TURN channels, ZRTP, garbage): dropped and counted.
    Unknown,
}

/// Classifies a datagram. Never panics; an empty datagram is `Unknown`.
pub fn classify(datagram: &[u8]) -> PacketClass {
    match datagram.first() {
        Some(0..=3) => PacketClass::Stun,
        Some(20..=63) => PacketClass::Dtls,
        Some(128..=191) => match datagram.get(1) {
            // RFC 5761 §4: RTCP packet types 192–223 sit where RTP payload
            // types 64–95 with the marker bit would; those are never used.
            Some(192..=223) => PacketClass::Rtcp,
            Some(_) => PacketClass::Rtp,
            None => PacketClass::Unknown,
        },
        _ => PacketClass::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify(&[0, 1]), PacketClass::Stun);
        assert_eq!(classify(&[22, 254]), PacketClass::Dtls);
        assert_eq!(classify(&[0x80, 96]), PacketClass::Rtp);
        assert_eq!(classify(&[0x80, 96 | 0x80]), PacketClass::Rtp);
        assert_eq!(classify(&[0x81, 201]), PacketClass::Rtcp);
        assert_eq!(classify(&[0x80]), PacketClass::Unknown);
        assert_eq!(classify(&[]), PacketClass::Unknown);
        assert_eq!(classify(&[64]), PacketClass::Unknown);
    }
}
