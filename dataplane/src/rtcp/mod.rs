//! RTCP: a zero-copy walker over compound packets (RFC 3550 §6, RFC 4585),
//! writers for what the data plane sends, and the per-stream state machines
//! behind them.
//!
//! What forwarding needs is typed: sender and receiver reports, picture loss
//! indications, full intra requests and generic NACKs. Everything else is
//! reported as `Other` so counters can still see it.

pub mod nack;
pub mod receiver;
pub mod remb;
pub mod report;
pub mod twcc;

pub use receiver::ReportBlock;

/// Why an RTCP packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Fewer bytes than an RTCP header, or a length field past the end.
    #[error("RTCP packet truncated")]
    Truncated,
    /// The version bits are not 2.
    #[error("RTCP version is not 2")]
    BadVersion,
}

/// One packet of a compound RTCP packet, as far as the data plane cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpItem<'a> {
    /// Picture Loss Indication (PSFB, FMT 1) for `media_ssrc`.
    Pli {
        /// The SSRC of the stream the receiver wants a keyframe of.
        media_ssrc: u32,
    },
    /// Full Intra Request (PSFB, FMT 4): the FCI entries name the SSRCs.
    Fir {
        /// The raw FCI entries (8 bytes each: SSRC, seq nr, reserved).
        entries: &'a [u8],
    },
    /// Generic NACK (RTPFB, FMT 1) for `media_ssrc`.
    Nack {
        /// The SSRC the NACK is about.
        media_ssrc: u32,
        /// The FCI: 4 bytes per (PID, BLP) pair.
        fci: &'a [u8],
    },
    /// Transport-wide congestion control feedback (RTPFB, FMT 15).
    TransportCc {
        /// The FCI (see [`twcc::parse_feedback`]).
        fci: &'a [u8],
    },
    /// A sender report (PT 200).
    SenderReport {
        /// The sender's SSRC.
        ssrc: u32,
        /// Its NTP timestamp.
        ntp: u64,
        /// The RTP timestamp of the same instant.
        rtp_timestamp: u32,
        /// The report blocks (24 bytes each).
        blocks: &'a [u8],
    },
    /// A receiver report (PT 201).
    ReceiverReport {
        /// The reporter's SSRC.
        ssrc: u32,
        /// The report blocks (24 bytes each).
        blocks: &'a [u8],
    },
    /// Any other packet type (SDES, BYE, APP, XR, REMB, transport-cc, …).
    Other {
        /// The packet type.
        packet_type: u8,
        /// The count / FMT field.
        fmt: u8,
    },
}

/// Iterates the packets of a compound RTCP packet.
///
/// Yields `Err` once and then stops when a header is malformed, so one bad
/// packet cannot hide the items before it.
pub fn walk(buf: &[u8]) -> RtcpIter<'_> {
    RtcpIter { rest: buf }
}

/// Iterator returned by [`walk`].
#[derive(Debug)]
pub struct RtcpIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpItem<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = parse_one(self.rest);
        match item {
            Ok((item, len)) => {
                self.rest = &self.rest[len..];
                Some(Ok(item))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses one packet; returns it and its length in bytes.
fn parse_one(buf: &[u8]) -> Result<(RtcpItem<'_>, usize), RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::Truncated);
    }
    if buf[0] >> 6 != 2 {
        return Err(RtcpError::BadVersion);
    }
    let fmt = buf[0] & 0x1f;
    let packet_type = buf[1];
    let len = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
    let pkt = buf.get(..len).ok_or(RtcpError::Truncated)?;
    let item = match (packet_type, fmt) {
        (200, count) => {
            let ntp_hi = be32(pkt, 8).ok_or(RtcpError::Truncated)?;
            let ntp_lo = be32(pkt, 12).ok_or(RtcpError::Truncated)?;
            RtcpItem::SenderReport {
                ssrc: be32(pkt, 4).ok_or(RtcpError::Truncated)?,
                ntp: (u64::from(ntp_hi) << 32) | u64::from(ntp_lo),
                rtp_timestamp: be32(pkt, 16).ok_or(RtcpError::Truncated)?,
                blocks: blocks(pkt, 28, count)?,
            }
        }
        (201, count) => RtcpItem::ReceiverReport {
            ssrc: be32(pkt, 4).ok_or(RtcpError::Truncated)?,
            blocks: blocks(pkt, 8, count)?,
        },
        (206, 1) => RtcpItem::Pli {
            media_ssrc: be32(pkt, 8).ok_or(RtcpError::Truncated)?,
        },
        (206, 4) => RtcpItem::Fir {
            entries: pkt.get(12..).ok_or(RtcpError::Truncated)?,
        },
        (205, 15) => RtcpItem::TransportCc {
            fci: pkt.get(12..).ok_or(RtcpError::Truncated)?,
        },
        (205, 1) => RtcpItem::Nack {
            media_ssrc: be32(pkt, 8).ok_or(RtcpError::Truncated)?,
            fci: pkt.get(12..).ok_or(RtcpError::Truncated)?,
        },
        _ => RtcpItem::Other { packet_type, fmt },
    };
    Ok((item, len))
}

/// The `count` report blocks starting at `at`.
fn blocks(pkt: &[u8], at: usize, count: u8) -> Result<&[u8], RtcpError> {
    let end = at + usize::from(count) * ReportBlock::LEN;
    pkt.get(at..end).ok_or(RtcpError::Truncated)
}

/// Parses the report blocks of an SR or RR.
pub fn report_blocks(blocks: &[u8]) -> impl Iterator<Item = ReportBlock> + '_ {
    blocks.chunks_exact(ReportBlock::LEN).map(|b| {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let lost = word(4) & 0x00ff_ffff;
        // Sign-extend the 24-bit cumulative loss.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost,
            extended_highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }
    })
}

/// SSRCs named by the FCI entries of a FIR.
pub fn fir_ssrcs(entries: &[u8]) -> impl Iterator<Item = u32> + '_ {
    entries
        .chunks_exact(8)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// Length of a PLI packet in bytes.
pub const PLI_LEN: usize = 12;

/// Writes a PLI from `sender_ssrc` about `media_ssrc` into `out`.
/// Returns the length written, or `None` if `out` is too small.
pub fn write_pli(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Option<usize> {
    let out = out.get_mut(..PLI_LEN)?;
    out[0] = 0x80 | 1;
    out[1] = 206;
    out[2..4].copy_from_slice(&2u16.to_be_bytes());
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    Some(PLI_LEN)
}

/// Length of a FIR packet with one FCI entry.
pub const FIR_LEN: usize = 20;

/// Writes a Full Intra Request (RFC 5104 §4.3.1) from `sender_ssrc` asking
/// `media_ssrc` for a keyframe, with command sequence number `seq` (the
/// receiver tells a new request from a repeated one by it). Returns the
/// length written, or `None` if `out` is too small.
pub fn write_fir(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32, seq: u8) -> Option<usize> {
    let out = out.get_mut(..FIR_LEN)?;
    out[0] = 0x80 | 4;
    out[1] = 206;
    out[2..4].copy_from_slice(&4u16.to_be_bytes());
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    // The media source field is unused: the FCI names the stream.
    out[8..12].fill(0);
    out[12..16].copy_from_slice(&media_ssrc.to_be_bytes());
    out[16] = seq;
    out[17..20].fill(0);
    Some(FIR_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fir_round_trip() {
        let mut b = [0u8; FIR_LEN];
        assert_eq!(write_fir(&mut b[..19], 1, 2, 3), None);
        let n = write_fir(&mut b, 1, 0xdead_beef, 7).unwrap();
        let Some(Ok(RtcpItem::Fir { entries })) = walk(&b[..n]).next() else {
            panic!("not a FIR");
        };
        assert_eq!(fir_ssrcs(entries).collect::<Vec<_>>(), vec![0xdead_beef]);
        assert_eq!(entries[4], 7);
    }

    #[test]
    fn pli_round_trip() {
        let mut b = [0u8; 32];
        let n = write_pli(&mut b, 1, 0xdead_beef).unwrap();
        let items: Vec<_> = walk(&b[..n]).collect();
        assert_eq!(
            items,
            vec![Ok(RtcpItem::Pli {
                media_ssrc: 0xdead_beef
            })]
        );
    }

    #[test]
    fn compound_rr_then_pli() {
        // RR with no report blocks (8 bytes) followed by a PLI.
        let mut b = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        let mut pli = [0u8; PLI_LEN];
        write_pli(&mut pli, 9, 42).unwrap();
        b.extend_from_slice(&pli);
        let items: Vec<_> = walk(&b).map(Result::unwrap).collect();
        assert_eq!(
            items,
            vec![
                RtcpItem::ReceiverReport {
                    ssrc: 9,
                    blocks: &[]
                },
                RtcpItem::Pli { media_ssrc: 42 }
            ]
        );
    }

    #[test]
    fn truncated_and_bad_version_are_errors() {
        assert_eq!(walk(&[0x80, 201]).next(), Some(Err(RtcpError::Truncated)));
        assert_eq!(
            walk(&[0x40, 201, 0, 0]).next(),
            Some(Err(RtcpError::BadVersion))
        );
        // Length field says 8 bytes, only 4 present.
        assert_eq!(
            walk(&[0x80, 201, 0, 1]).next(),
            Some(Err(RtcpError::Truncated))
        );
    }

    #[test]
    fn fir_lists_ssrcs() {
        let mut b = vec![0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0];
        b.extend_from_slice(&[0, 0, 0, 7, 1, 0, 0, 0]);
        let item = walk(&b).next().unwrap().unwrap();
        let RtcpItem::Fir { entries } = item else {
            panic!("not a FIR: {item:?}")
        };
        assert_eq!(fir_ssrcs(entries).collect::<Vec<_>>(), vec![7]);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            for item in walk(&data) {
                let _ = item;
            }
        }
    }
}
