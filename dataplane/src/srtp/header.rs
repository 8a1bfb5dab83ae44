//! The few header fields SRTP needs, read without trusting the packet.

use super::SrtpError;

/// Fixed part of an RTP header (RFC 3550 §5.1).
const RTP_FIXED: usize = 12;
/// RTCP header and sender SSRC, the part SRTCP leaves in the clear.
pub(crate) const RTCP_CLEAR: usize = 8;

/// What SRTP reads from an RTP header: where the payload starts and the
/// fields that build the packet index and IV.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RtpHeader {
    /// Header length including CSRCs and the extension; the payload starts here.
    pub(crate) len: usize,
    pub(crate) ssrc: u32,
    pub(crate) seq: u16,
}

impl RtpHeader {
    /// Parses the header of `packet`, of which the last `trailer` bytes are
    /// not RTP (the SRTP tag).
    pub(crate) fn parse(packet: &[u8], trailer: usize) -> Result<Self, SrtpError> {
        let body = packet
            .len()
            .checked_sub(trailer)
            .ok_or(SrtpError::TooShort)?;
        if body < RTP_FIXED {
            return Err(SrtpError::TooShort);
        }
        let b0 = packet[0];
        if b0 >> 6 != 2 {
            return Err(SrtpError::Malformed("RTP version is not 2"));
        }
        let mut len = RTP_FIXED + 4 * usize::from(b0 & 0x0f);
        if b0 & 0x10 != 0 {
            // RFC 3550 §5.3.1: 16-bit profile, 16-bit length in words.
            if len + 4 > body {
                return Err(SrtpError::Malformed("RTP header extension past the end"));
            }
            let words = u16::from_be_bytes([packet[len + 2], packet[len + 3]]);
            len += 4 + 4 * usize::from(words);
        }
        if len > body {
            return Err(SrtpError::Malformed("RTP header past the end"));
        }
        Ok(Self {
            len,
            seq: u16::from_be_bytes([packet[2], packet[3]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        })
    }
}

/// Checks the RTCP version and returns the sender SSRC of the first packet
/// of a compound, which keys the SRTCP context (RFC 3711 §3.4). The caller
/// has already checked `packet.len() >= RTCP_CLEAR`.
pub(crate) fn rtcp_sender_ssrc(packet: &[u8]) -> Result<u32, SrtpError> {
    if packet.len() < RTCP_CLEAR {
        return Err(SrtpError::TooShort);
    }
    if packet[0] >> 6 != 2 {
        return Err(SrtpError::Malformed("RTCP version is not 2"));
    }
    Ok(u32::from_be_bytes([
        packet[4], packet[5], packet[6], packet[7],
    ]))
}
