//! Unreliable datagrams of a relay connection.
//!
//! RTP, origin → downstream:
//! `0x00 | track (u32) | flags (u8) | encoding (u8) | spatial << 4 | temporal (u8)
//!  | [sender report: NTP (u64), RTP timestamp (u32)]
//!  | [SVC: switch up to (u8), spatial count (u8), temporal count (u8),
//!     DD offset (u16), DD length (u8)] | the RTP packet`.
//! Eight bytes of header, twenty when a new sender report rides along (the
//! sender only includes it when it changed), six more when the packet has
//! SVC facts beyond its layer ids: the switch-up point and the layer
//! structure the stream announces, and where the packet's Dependency
//! Descriptor is (an offset into the relayed RTP packet, which crosses
//! unchanged), so the downstream selector sees what a local one sees. The RTP packet is the one the
//! publisher sent, decrypted; the downstream server parses its header again
//! and so never trusts the relay header for anything but layer facts.
//!
//! Feedback, downstream → origin: `0x01 | track (u32) | kind (u8) | body`.
use super::{ProtoError, Reader, RelayTrackId};

/// Type byte of an RTP datagram.
const D_RTP: u8 = 0;
/// Type byte of a feedback datagram.
const D_FEEDBACK: u8 = 1;

const F_KEYFRAME: u8 = 1 << 0;
const F_FRAME_START: u8 = 1 << 1;
const F_FRAME_END: u8 = 1 << 2;
const F_SWITCHING_POINT: u8 = 1 << 3;
const F_SENDER_REPORT: u8 = 1 << 4;
const F_RETRANSMISSION: u8 = 1 << 5;
const F_SVC: u8 = 1 << 6;

/// Bytes of an RTP datagram header without a sender report or SVC facts.
pub const RTP_HEADER_LEN: usize = 8;
/// Bytes of the sender report part.
const SR_LEN: usize = 12;
/// Bytes of the SVC part.
const SVC_LEN: usize = 6;
/// Bytes of an RTP datagram header with a sender report and SVC facts.
pub const RTP_HEADER_MAX_LEN: usize = RTP_HEADER_LEN + SR_LEN + SVC_LEN;

/// SVC facts of a packet beyond its layer ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SvcFacts {
    /// At a switching point, the highest temporal layer reachable from
    /// here (Dependency Descriptor); 0 when unknown.
    pub switch_up_to: u8,
    /// The (spatial, temporal) layer counts the packet announces in-band
    /// (VP9 scalability structure, DD template structure), each ≥ 1.
    pub structure: Option<(u8, u8)>,
    /// Where the Dependency Descriptor's value is in the RTP packet
    /// (offset, length ≥ 1).
    pub dd: Option<(u16, u8)>,
}
/// Most sequence numbers in one NACK datagram.
pub const MAX_NACK_SEQS: usize = 64;

/// What the origin knows of an RTP packet's place in the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpFacts {
    /// Simulcast encoding index.
    pub encoding: u8,
    /// SVC spatial id (0..=15).
    pub spatial: u8,
    /// Temporal id (0..=15).
    pub temporal: u8,
    /// Starts a keyframe.
    pub keyframe: bool,
    /// First packet of a frame.
    pub frame_start: bool,
    /// Last packet of a frame.
    pub frame_end: bool,
    /// A decoder may switch up here.
    pub switching_point: bool,
    /// Sent again in answer to a NACK.
    pub retransmission: bool,
    /// The stream's latest sender report (NTP, RTP timestamp), when it
    /// changed since the last datagram of this track.
    pub sender_report: Option<(u64, u32)>,
    /// SVC facts, when the packet has any.
    pub svc: Option<SvcFacts>,
}

/// A parsed RTP datagram: facts and the RTP packet bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpDatagram<'a> {
    /// The relayed track.
    pub track: RelayTrackId,
    /// Layer facts.
    pub facts: RtpFacts,
    /// The RTP packet.
    pub rtp: &'a [u8],
}

/// Writes an RTP datagram header into `out`; returns its length. The RTP
/// packet goes right after it.
pub fn write_rtp_header(
    out: &mut [u8],
    track: RelayTrackId,
    facts: &RtpFacts,
) -> Result<usize, ProtoError> {
    if facts.spatial > 15 || facts.temporal > 15 {
        return Err(ProtoError::Invalid("layer id above 15"));
    }
    if let Some(svc) = &facts.svc {
        if matches!(svc.structure, Some((s, t)) if s == 0 || t == 0)
            || matches!(svc.dd, Some((_, 0)))
        {
            return Err(ProtoError::Invalid("svc facts"));
        }
    }
    let len = RTP_HEADER_LEN
        + if facts.sender_report.is_some() {
            SR_LEN
        } else {
            0
        }
        + if facts.svc.is_some() { SVC_LEN } else { 0 };
    let Some(out) = out.get_mut(..len) else {
        return Err(ProtoError::TooLarge("rtp datagram header"));
    };
    let mut flags = 0;
    for (set, bit) in [
        (facts.keyframe, F_KEYFRAME),
        (facts.frame_start, F_FRAME_START),
        (facts.frame_end, F_FRAME_END),
        (facts.switching_point, F_SWITCHING_POINT),
        (facts.sender_report.is_some(), F_SENDER_REPORT),
        (facts.retransmission, F_RETRANSMISSION),
        (facts.svc.is_some(), F_SVC),
    ] {
        if set {
            flags |= bit;
        }
    }
    out[0] = D_RTP;
    out[1..5].copy_from_slice(&track.to_be_bytes());
    out[5] = flags;
    out[6] = facts.encoding;
    out[7] = (facts.spatial << 4) | facts.temporal;
    let mut at = RTP_HEADER_LEN;
    if let Some((ntp, ts)) = facts.sender_report {
        out[at..at + 8].copy_from_slice(&ntp.to_be_bytes());
        out[at + 8..at + 12].copy_from_slice(&ts.to_be_bytes());
        at += SR_LEN;
    }
    if let Some(svc) = &facts.svc {
        let (spatial, temporal) = svc.structure.unwrap_or((0, 0));
        let (offset, dd_len) = svc.dd.unwrap_or((0, 0));
        out[at] = svc.switch_up_to;
        out[at + 1] = spatial;
        out[at + 2] = temporal;
        out[at + 3..at + 5].copy_from_slice(&offset.to_be_bytes());
        out[at + 5] = dd_len;
    }
    Ok(len)
}

/// RTCP feedback from a downstream server about one relayed track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// Sequence numbers of one SSRC that the downstream server misses.
    Nack {
        /// The publisher's SSRC.
        ssrc: u32,
        /// At most [`MAX_NACK_SEQS`] sequence numbers.
        seqs: Vec<u16>,
    },
    /// Picture loss: a keyframe, of one simulcast encoding or all.
    Pli {
        /// The encoding, or every one.
        encoding: Option<u8>,
    },
    /// Full intra request (same effect as a PLI at the origin).
    Fir {
        /// The encoding, or every one.
        encoding: Option<u8>,
    },
    /// A summary of the downstream subscribers' receiver reports.
    ReceiverReport {
        /// Worst fraction lost (RFC 3550, /256).
        fraction_lost: u8,
        /// Cumulative packets lost.
        cumulative_lost: u32,
        /// Interarrival jitter (RTP timestamp units).
        jitter: u32,
        /// Round-trip time downstream in ms, if known.
        rtt_ms: Option<u32>,
    },
    /// The bandwidth the downstream server can use for this track (bit/s),
    /// so the origin may stop sending layers nobody can receive.
    Bandwidth {
        /// Bits per second.
        bps: u64,
    },
}

const K_NACK: u8 = 0;
const K_PLI: u8 = 1;
const K_FIR: u8 = 2;
const K_RR: u8 = 3;
const K_BWE: u8 = 4;

/// Appends a feedback datagram to `out`.
pub fn write_feedback(
    out: &mut Vec<u8>,
    track: RelayTrackId,
    feedback: &Feedback,
) -> Result<(), ProtoError> {
    out.push(D_FEEDBACK);
    out.extend_from_slice(&track.to_be_bytes());
    match feedback {
        Feedback::Nack { ssrc, seqs } => {
            if seqs.is_empty() || seqs.len() > MAX_NACK_SEQS {
                return Err(ProtoError::Invalid("nack length"));
            }
            out.push(K_NACK);
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.push(seqs.len() as u8);
            for s in seqs {
                out.extend_from_slice(&s.to_be_bytes());
            }
        }
        Feedback::Pli { encoding } | Feedback::Fir { encoding } => {
            out.push(if matches!(feedback, Feedback::Pli { .. }) {
                K_PLI
            } else {
                K_FIR
            });
            out.push(encoding.map_or(0xff, |e| e.min(0xfe)));
        }
        Feedback::ReceiverReport {
            fraction_lost,
            cumulative_lost,
            jitter,
            rtt_ms,
        } => {
            out.push(K_RR);
            out.push(*fraction_lost);
            out.extend_from_slice(&cumulative_lost.to_be_bytes());
            out.extend_from_slice(&jitter.to_be_bytes());
            out.extend_from_slice(&rtt_ms.unwrap_or(u32::MAX).to_be_bytes());
        }
        Feedback::Bandwidth { bps } => {
            out.push(K_BWE);
            out.extend_from_slice(&bps.to_be_bytes());
        }
    }
    Ok(())
}

/// A parsed datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// RTP, toward the downstream server.
    Rtp(RtpDatagram<'a>),
    /// Feedback, toward the origin.
    Feedback {
        /// The relayed track.
        track: RelayTrackId,
        /// What the downstream server says.
        feedback: Feedback,
    },
}

impl<'a> Datagram<'a> {
    /// Parses one datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(buf);
        match r.u8("datagram type")? {
            D_RTP => {
                let track = r.u32("track")?;
                let flags = r.u8("flags")?;
                let encoding = r.u8("encoding")?;
                let layers = r.u8("layers")?;
                let sender_report = if flags & F_SENDER_REPORT != 0 {
                    Some((r.u64("sender report")?, r.u32("sender report")?))
                } else {
                    None
                };
                let svc = if flags & F_SVC != 0 {
                    let switch_up_to = r.u8("svc facts")?;
                    let structure = match (r.u8("svc facts")?, r.u8("svc facts")?) {
                        (0, 0) => None,
                        (0, _) | (_, 0) => return Err(ProtoError::Invalid("layer structure")),
                        counts => Some(counts),
                    };
                    let offset = r.u16("svc facts")?;
                    let dd = match r.u8("svc facts")? {
                        0 if offset == 0 => None,
                        0 => return Err(ProtoError::Invalid("dependency descriptor position")),
                        len => Some((offset, len)),
                    };
                    Some(SvcFacts {
                        switch_up_to,
                        structure,
                        dd,
                    })
                } else {
                    None
                };
                let rtp = r.rest();
                if rtp.is_empty() {
                    return Err(ProtoError::Truncated("rtp packet"));
                }
                // The descriptor must lie inside the packet it describes.
                if let Some(Some((offset, len))) = svc.map(|s| s.dd) {
                    if usize::from(offset) + usize::from(len) > rtp.len() {
                        return Err(ProtoError::Invalid("dependency descriptor position"));
                    }
                }
                Ok(Datagram::Rtp(RtpDatagram {
                    track,
                    facts: RtpFacts {
                        encoding,
                        spatial: layers >> 4,
                        temporal: layers & 0x0f,
                        keyframe: flags & F_KEYFRAME != 0,
                        frame_start: flags & F_FRAME_START != 0,
                        frame_end: flags & F_FRAME_END != 0,
                        switching_point: flags & F_SWITCHING_POINT != 0,
                        retransmission: flags & F_RETRANSMISSION != 0,
                        sender_report,
                        svc,
                    },
                    rtp,
                }))
            }
            D_FEEDBACK => {
                let track = r.u32("track")?;
                let feedback = match r.u8("feedback kind")? {
                    K_NACK => {
                        let ssrc = r.u32("nack ssrc")?;
                        let n = usize::from(r.u8("nack count")?);
                        if n == 0 || n > MAX_NACK_SEQS {
                            return Err(ProtoError::Invalid("nack length"));
                        }
                        let mut seqs = Vec::with_capacity(n);
                        for _ in 0..n {
                            seqs.push(r.u16("nack seq")?);
                        }
                        Feedback::Nack { ssrc, seqs }
                    }
                    k @ (K_PLI | K_FIR) => {
                        let encoding = match r.u8("encoding")? {
                            0xff => None,
                            e => Some(e),
                        };
                        if k == K_PLI {
                            Feedback::Pli { encoding }
                        } else {
                            Feedback::Fir { encoding }
                        }
                    }
                    K_RR => Feedback::ReceiverReport {
                        fraction_lost: r.u8("fraction lost")?,
                        cumulative_lost: r.u32("cumulative lost")?,
                        jitter: r.u32("jitter")?,
                        rtt_ms: match r.u32("rtt")? {
                            u32::MAX => None,
                            v => Some(v),
                        },
                    },
                    K_BWE => Feedback::Bandwidth {
                        bps: r.u64("bandwidth")?,
                    },
                    value => {
                        return Err(ProtoError::UnknownType {
                            what: "feedback",
                            value,
                        })
                    }
                };
                r.finish()?;
                Ok(Datagram::Feedback { track, feedback })
            }
            value => Err(ProtoError::UnknownType {
                what: "datagram",
                value,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts() -> impl Strategy<Value = RtpFacts> {
        (
            any::<u8>(),
            0u8..16,
            0u8..16,
            any::<[bool; 5]>(),
            proptest::option::of(any::<(u64, u32)>()),
            proptest::option::of((
                any::<u8>(),
                proptest::option::of((1u8.., 1u8..)),
                proptest::option::of((0u16..100, 1u8..50)),
            )),
        )
            .prop_map(
                |(encoding, spatial, temporal, b, sender_report, svc)| RtpFacts {
                    encoding,
                    spatial,
                    temporal,
                    keyframe: b[0],
                    frame_start: b[1],
                    frame_end: b[2],
                    switching_point: b[3],
                    retransmission: b[4],
                    sender_report,
                    svc: svc.map(|(switch_up_to, structure, dd)| SvcFacts {
                        switch_up_to,
                        structure,
                        dd,
                    }),
                },
            )
    }

    fn feedback() -> impl Strategy<Value = Feedback> {
        prop_oneof![
            (
                any::<u32>(),
                proptest::collection::vec(any::<u16>(), 1..=MAX_NACK_SEQS)
            )
                .prop_map(|(ssrc, seqs)| Feedback::Nack { ssrc, seqs }),
            proptest::option::of(0u8..0xff).prop_map(|encoding| Feedback::Pli { encoding }),
            proptest::option::of(0u8..0xff).prop_map(|encoding| Feedback::Fir { encoding }),
            (
                any::<u8>(),
                any::<u32>(),
                any::<u32>(),
                proptest::option::of(0u32..u32::MAX)
            )
                .prop_map(|(fraction_lost, cumulative_lost, jitter, rtt_ms)| {
                    Feedback::ReceiverReport {
                        fraction_lost,
                        cumulative_lost,
                        jitter,
                        rtt_ms,
                    }
                }),
            any::<u64>().prop_map(|bps| Feedback::Bandwidth { bps }),
        ]
    }

    proptest! {
        #[test]
        fn rtp_datagrams_round_trip(
            track in any::<u32>(),
            f in facts(),
            rtp in proptest::collection::vec(any::<u8>(), 150..1300),
        ) {
            let mut buf = vec![0u8; RTP_HEADER_MAX_LEN + rtp.len()];
            let n = write_rtp_header(&mut buf, track, &f).unwrap();
            prop_assert_eq!(
                n,
                RTP_HEADER_LEN
                    + if f.sender_report.is_some() { SR_LEN } else { 0 }
                    + if f.svc.is_some() { SVC_LEN } else { 0 }
            );
            buf.truncate(n);
            buf.extend_from_slice(&rtp);
            let parsed = Datagram::parse(&buf).unwrap();
            prop_assert_eq!(parsed, Datagram::Rtp(RtpDatagram { track, facts: f, rtp: &rtp }));
        }

        #[test]
        fn feedback_round_trips(track in any::<u32>(), fb in feedback()) {
            let mut buf = Vec::new();
            write_feedback(&mut buf, track, &fb).unwrap();
            prop_assert_eq!(Datagram::parse(&buf).unwrap(), Datagram::Feedback { track, feedback: fb.clone() });
            // Any cut short of the whole is an error, never a panic.
            for cut in 0..buf.len() {
                prop_assert!(Datagram::parse(&buf[..cut]).is_err());
            }
        }

        #[test]
        fn garbage_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Datagram::parse(&buf);
        }

        #[test]
        fn a_descriptor_outside_the_packet_is_refused(offset in 0u16..300, len in 1u8..100, rtp_len in 1usize..200) {
            let f = RtpFacts {
                svc: Some(SvcFacts { dd: Some((offset, len)), ..SvcFacts::default() }),
                ..RtpFacts::default()
            };
            let mut buf = vec![0u8; RTP_HEADER_MAX_LEN];
            let n = write_rtp_header(&mut buf, 1, &f).unwrap();
            buf.truncate(n);
            buf.extend(std::iter::repeat_n(0x80, rtp_len));
            let inside = usize::from(offset) + usize::from(len) <= rtp_len;
            prop_assert_eq!(Datagram::parse(&buf).is_ok(), inside);
        }
    }

    #[test]
    fn bad_values_are_refused_on_write() {
        let mut buf = [0u8; 32];
        let f = RtpFacts {
            spatial: 16,
            ..RtpFacts::default()
        };
        assert!(write_rtp_header(&mut buf, 1, &f).is_err());
        assert!(write_rtp_header(&mut buf[..4], 1, &RtpFacts::default()).is_err());
        let mut v = Vec::new();
        let nack = Feedback::Nack {
            ssrc: 1,
            seqs: vec![],
        };
        assert!(write_feedback(&mut v, 1, &nack).is_err());
    }
}
