//! The Data Channel Establishment Protocol (RFC 8832): DATA_CHANNEL_OPEN
//! and DATA_CHANNEL_ACK, with the message layouts of `webrtc-data`.
use bytes::{Bytes, BytesMut};
use webrtc_data::message::message_channel_ack::DataChannelAck;
use webrtc_data::message::message_channel_open::{ChannelType, DataChannelOpen};
use webrtc_data::message::Message;
use webrtc_sctp::stream::ReliabilityType;
use webrtc_util::marshal::{Marshal, MarshalSize, Unmarshal};

use super::{DataChannelParams, Reliability};

/// Why a DCEP message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DcepError {
    /// Not a DATA_CHANNEL_OPEN or DATA_CHANNEL_ACK the layout allows.
    #[error("malformed DCEP message: {0}")]
    Malformed(String),
    /// The label or protocol is not UTF-8 (RFC 8832 §5.1).
    #[error("DCEP {0} is not UTF-8")]
    NotUtf8(&'static str),
}

/// A parsed DCEP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dcep {
    /// DATA_CHANNEL_OPEN with its parameters.
    Open(DataChannelParams),
    /// DATA_CHANNEL_ACK.
    Ack,
}

/// Parses one DCEP message (an SCTP message with PPID 50).
pub(crate) fn parse(mut bytes: &[u8]) -> Result<Dcep, DcepError> {
    let msg = Message::unmarshal(&mut bytes).map_err(|e| DcepError::Malformed(e.to_string()))?;
    match msg {
        Message::DataChannelAck(_) => Ok(Dcep::Ack),
        Message::DataChannelOpen(open) => {
            let label = String::from_utf8(open.label).map_err(|_| DcepError::NotUtf8("label"))?;
            let protocol =
                String::from_utf8(open.protocol).map_err(|_| DcepError::NotUtf8("protocol"))?;
            let value = open.reliability_parameter;
            let (ordered, reliability) = match open.channel_type {
                ChannelType::Reliable => (true, Reliability::Reliable),
                ChannelType::ReliableUnordered => (false, Reliability::Reliable),
                ChannelType::PartialReliableRexmit => (true, Reliability::MaxRetransmits(value)),
                ChannelType::PartialReliableRexmitUnordered => {
                    (false, Reliability::MaxRetransmits(value))
                }
                ChannelType::PartialReliableTimed => (true, Reliability::MaxLifetime(value)),
                ChannelType::PartialReliableTimedUnordered => {
                    (false, Reliability::MaxLifetime(value))
                }
            };
            Ok(Dcep::Open(DataChannelParams {
                label,
                protocol,
                ordered,
                reliability,
                priority: open.priority,
            }))
        }
    }
}

/// The DATA_CHANNEL_OPEN for `params`.
pub(crate) fn open(params: &DataChannelParams) -> Bytes {
    let (channel_type, value) = match (params.ordered, params.reliability) {
        (true, Reliability::Reliable) => (ChannelType::Reliable, 0),
        (false, Reliability::Reliable) => (ChannelType::ReliableUnordered, 0),
        (true, Reliability::MaxRetransmits(n)) => (ChannelType::PartialReliableRexmit, n),
        (false, Reliability::MaxRetransmits(n)) => (ChannelType::PartialReliableRexmitUnordered, n),
        (true, Reliability::MaxLifetime(ms)) => (ChannelType::PartialReliableTimed, ms),
        (false, Reliability::MaxLifetime(ms)) => (ChannelType::PartialReliableTimedUnordered, ms),
    };
    marshal(Message::DataChannelOpen(DataChannelOpen {
        channel_type,
        priority: params.priority,
        reliability_parameter: value,
        label: params.label.as_bytes().to_vec(),
        protocol: params.protocol.as_bytes().to_vec(),
    }))
}

/// The DATA_CHANNEL_ACK.
pub(crate) fn ack() -> Bytes {
    marshal(Message::DataChannelAck(DataChannelAck {}))
}

fn marshal(msg: Message) -> Bytes {
    let mut buf = BytesMut::zeroed(msg.marshal_size());
    // The buffer has exactly the size the message asks for, and labels of
    // a parsed or SDK-built channel fit DCEP's 16-bit length fields.
    match msg.marshal_to(&mut buf) {
        Ok(n) => buf.truncate(n),
        Err(e) => {
            tracing::error!("DCEP marshal failed: {e}");
            buf.clear();
        }
    }
    buf.freeze()
}

/// How the SCTP stream sends for `params`: `(unordered, type, value)`.
pub(crate) fn stream_reliability(params: &DataChannelParams) -> (bool, ReliabilityType, u32) {
    let (kind, value) = match params.reliability {
        Reliability::Reliable => (ReliabilityType::Reliable, 0),
        Reliability::MaxRetransmits(n) => (ReliabilityType::Rexmit, n),
        Reliability::MaxLifetime(ms) => (ReliabilityType::Timed, ms),
    };
    (!params.ordered, kind, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(ordered: bool, reliability: Reliability) -> DataChannelParams {
        DataChannelParams {
            label: "chat ✓".into(),
            protocol: "json".into(),
            ordered,
            reliability,
            priority: 256,
        }
    }

    #[test]
    fn open_round_trips_every_channel_type() {
        for ordered in [true, false] {
            for r in [
                Reliability::Reliable,
                Reliability::MaxRetransmits(3),
                Reliability::MaxLifetime(1500),
            ] {
                let p = params(ordered, r);
                assert_eq!(parse(&open(&p)), Ok(Dcep::Open(p)));
            }
        }
        assert_eq!(parse(&ack()), Ok(Dcep::Ack));
    }

    #[test]
    fn bogus_messages_are_errors() {
        assert!(matches!(parse(&[]), Err(DcepError::Malformed(_))));
        assert!(matches!(parse(&[0x07]), Err(DcepError::Malformed(_))));
        // An OPEN whose label length runs past the message.
        let mut m = open(&params(true, Reliability::Reliable)).to_vec();
        m[8] = 0xff;
        assert!(matches!(parse(&m), Err(DcepError::Malformed(_))));
        // A label that is not UTF-8.
        let mut bad = open(&DataChannelParams {
            label: "ab".into(),
            ..params(true, Reliability::Reliable)
        })
        .to_vec();
        bad[12] = 0xff;
        assert_eq!(parse(&bad), Err(DcepError::NotUtf8("label")));
        for n in 0..m.len() {
            let _ = parse(&m[..n]);
        }
    }
}
