//! A structural check of inbound SCTP packets (RFC 9260 §3) before the
//! association sees them.
//!
//! webrtc-sctp logs and skips a packet it cannot parse. Over DTLS nothing
//! corrupts a packet on the way, so a bad checksum or a chunk that overruns
//! its packet means a broken or hostile peer: Weir ends that association
//! with the reason instead of guessing.

/// Why an SCTP packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum PacketError {
    /// Shorter than the common header plus one chunk header.
    #[error("SCTP packet of {0} bytes is shorter than a header and a chunk")]
    TooShort(usize),
    /// The CRC32c does not match.
    #[error("SCTP packet checksum {got:#010x} does not match {expected:#010x}")]
    Checksum {
        /// What the packet says.
        got: u32,
        /// What its bytes give.
        expected: u32,
    },
    /// A chunk's length field is below 4 or runs past the packet.
    #[error("SCTP chunk type {kind} at offset {offset} has length {len}, outside the packet of {packet} bytes")]
    ChunkLength {
        /// The chunk type.
        kind: u8,
        /// Where the chunk starts.
        offset: usize,
        /// Its length field.
        len: usize,
        /// The packet length.
        packet: usize,
    },
    /// A DATA chunk with no user data (RFC 9260 §6.2: "No User Data").
    #[error("SCTP DATA chunk at offset {0} carries no user data")]
    EmptyData(usize),
    /// An INIT, INIT ACK or SHUTDOWN COMPLETE bundled with other chunks.
    #[error("SCTP chunk type {0} must be alone in its packet")]
    NotAlone(u8),
}

const COMMON_HEADER: usize = 12;
const CHUNK_HEADER: usize = 4;
const DATA: u8 = 0;
const INIT: u8 = 1;
const INIT_ACK: u8 = 2;
const SHUTDOWN_COMPLETE: u8 = 14;
/// DATA chunk header: type, flags, length, TSN, stream id, SSN, PPID.
const DATA_HEADER: usize = 16;

/// Checks the checksum and the chunk layout of one SCTP packet.
pub(crate) fn check(packet: &[u8]) -> Result<(), PacketError> {
    if packet.len() < COMMON_HEADER + CHUNK_HEADER {
        return Err(PacketError::TooShort(packet.len()));
    }
    let got = u32::from_le_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let expected = checksum(packet);
    if got != expected {
        return Err(PacketError::Checksum { got, expected });
    }
    let mut offset = COMMON_HEADER;
    let mut chunks = 0usize;
    let mut lone = None;
    while offset < packet.len() {
        let rest = &packet[offset..];
        let kind = rest[0];
        let len = if rest.len() >= CHUNK_HEADER {
            usize::from(u16::from_be_bytes([rest[2], rest[3]]))
        } else {
            0
        };
        if len < CHUNK_HEADER || len > rest.len() {
            return Err(PacketError::ChunkLength {
                kind,
                offset,
                len,
                packet: packet.len(),
            });
        }
        if kind == DATA && len <= DATA_HEADER {
            return Err(PacketError::EmptyData(offset));
        }
        if matches!(kind, INIT | INIT_ACK | SHUTDOWN_COMPLETE) {
            lone = Some(kind);
        }
        chunks += 1;
        // Chunks are padded to 4 bytes; the last one may end the packet
        // without its padding.
        offset += len.next_multiple_of(4);
    }
    match lone {
        Some(kind) if chunks > 1 => Err(PacketError::NotAlone(kind)),
        _ => Ok(()),
    }
}

/// CRC32c (Castagnoli, reflected) of the packet with its checksum field
/// taken as zero (RFC 9260 Appendix A).
fn checksum(packet: &[u8]) -> u32 {
    let mut crc = !0u32;
    for (i, &b) in packet.iter().enumerate() {
        let b = if (8..12).contains(&i) { 0 } else { b };
        crc = CRC32C[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC32C: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82F6_3B78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet with the given chunks (each already padded) and a valid checksum.
    fn packet(chunks: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x13, 0x88, 0x13, 0x88, 1, 2, 3, 4, 0, 0, 0, 0];
        for c in chunks {
            p.extend_from_slice(c);
        }
        let sum = checksum(&p);
        p[8..12].copy_from_slice(&sum.to_le_bytes());
        p
    }

    fn data_chunk(user: &[u8]) -> Vec<u8> {
        let len = (DATA_HEADER + user.len()) as u16;
        let mut c = vec![DATA, 0x03];
        c.extend_from_slice(&len.to_be_bytes());
        c.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 53]);
        c.extend_from_slice(user);
        while c.len() % 4 != 0 {
            c.push(0);
        }
        c
    }

    #[test]
    fn crc32c_matches_the_rfc_3720_vector() {
        // RFC 3720 B.4: 32 bytes of zeros → 0x8a9136aa. Our function skips
        // bytes 8..12, which are zero here anyway.
        assert_eq!(checksum(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn accepts_well_formed_packets() {
        let sack = [3u8, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(check(&packet(&[&data_chunk(b"hi"), &sack])), Ok(()));
        // A last chunk without its padding.
        let mut p = packet(&[&data_chunk(b"abc")]);
        p.pop();
        let sum = checksum(&p);
        p[8..12].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(check(&p), Ok(()));
    }

    #[test]
    fn refuses_malformed_packets() {
        let good = packet(&[&data_chunk(b"hello")]);
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        assert!(matches!(check(&flipped), Err(PacketError::Checksum { .. })));
        assert_eq!(check(&good[..10]), Err(PacketError::TooShort(10)));

        let mut long = data_chunk(b"hello");
        long[3] = 200;
        assert!(matches!(
            check(&packet(&[&long])),
            Err(PacketError::ChunkLength { len: 200, .. })
        ));
        let zero = [9u8, 0, 0, 0];
        assert!(matches!(
            check(&packet(&[&zero])),
            Err(PacketError::ChunkLength { len: 0, .. })
        ));
        let empty = [DATA, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 53];
        assert_eq!(check(&packet(&[&empty])), Err(PacketError::EmptyData(12)));
        let init = [
            INIT, 0, 0, 20, 1, 2, 3, 4, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1,
        ];
        assert_eq!(
            check(&packet(&[&init, &data_chunk(b"x")])),
            Err(PacketError::NotAlone(INIT))
        );
    }

    #[test]
    fn never_panics_on_any_prefix_or_bit_flip() {
        let sack = [3u8, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0];
        let good = packet(&[&data_chunk(b"hello world"), &sack]);
        for n in 0..good.len() {
            let _ = check(&good[..n]);
        }
        for i in 0..good.len() * 8 {
            let mut p = good.clone();
            p[i / 8] ^= 1 << (i % 8);
            let sum = checksum(&p);
            p[8..12].copy_from_slice(&sum.to_le_bytes());
            let _ = check(&p);
        }
    }
}
