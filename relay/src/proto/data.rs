//! A relayed data channel's own QUIC stream.
//!
//! Each data channel pulled across the relay gets one bidirectional stream
//! on the connection, so a reliable ordered channel stays reliable and
//! ordered (QUIC streams are) and one channel's backlog does not hold up
//! another's. The pulling server opens the stream and sends
//! [`DataFrame::Subscribe`]; the origin answers [`DataFrame::Accept`] (the
//! channel's parameters) or [`DataFrame::Refuse`], then sends the channel's
//! messages as [`DataFrame::Message`] and, when the channel ends,
//! [`DataFrame::Close`] before finishing the stream. The pulling server
//! unsubscribes by dropping its side of the stream.
//!
//! A frame is `type (u8) | length (u32, big-endian) | body`: a message may
//! be larger than a control frame's 64 KiB. [`DataFrameReader`] cuts frames
//! out of the stream's bytes whatever their chunking, refuses a frame
//! larger than its limit before buffering it, and hands message bodies out
//! as slices of its buffer (no copy).
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{put_str, ProtoError, Reader};

const T_SUBSCRIBE: u8 = 1;
const T_ACCEPT: u8 = 2;
const T_REFUSE: u8 = 3;
const T_TEXT: u8 = 4;
const T_BINARY: u8 = 5;
const T_CLOSE: u8 = 6;

/// Bytes of a frame header.
pub const DATA_FRAME_HEADER_LEN: usize = 5;

/// How far a channel goes to deliver a message (RFC 8832 §5.1), as the
/// relay carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataReliability {
    /// Every message arrives.
    Reliable,
    /// Retransmitted at most this many times.
    MaxRetransmits(u32),
    /// Given up after this many milliseconds.
    MaxLifetime(u32),
}

/// A data channel's parameters from its DATA_CHANNEL_OPEN, so the
/// downstream server opens its subscribers' channels the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChannelInfo {
    /// The label the client gave it.
    pub label: String,
    /// Its sub-protocol (often empty).
    pub protocol: String,
    /// Whether messages arrive in the order they were sent.
    pub ordered: bool,
    /// Reliable or partially reliable.
    pub reliability: DataReliability,
    /// The DCEP priority.
    pub priority: u16,
}

impl DataChannelInfo {
    /// Appends the fields (also used by the catalog's `DataState`).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        put_str(out, &self.label, "label")?;
        put_str(out, &self.protocol, "protocol")?;
        out.push(u8::from(self.ordered));
        let (kind, value) = match self.reliability {
            DataReliability::Reliable => (0u8, 0u32),
            DataReliability::MaxRetransmits(n) => (1, n),
            DataReliability::MaxLifetime(ms) => (2, ms),
        };
        out.push(kind);
        out.extend_from_slice(&value.to_be_bytes());
        out.extend_from_slice(&self.priority.to_be_bytes());
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, ProtoError> {
        let label = r.str("label")?;
        let protocol = r.str("protocol")?;
        let ordered = match r.u8("ordered")? {
            0 => false,
            1 => true,
            _ => return Err(ProtoError::Invalid("ordered flag")),
        };
        let kind = r.u8("reliability")?;
        let value = r.u32("reliability value")?;
        let reliability = match kind {
            0 if value == 0 => DataReliability::Reliable,
            1 => DataReliability::MaxRetransmits(value),
            2 => DataReliability::MaxLifetime(value),
            _ => return Err(ProtoError::Invalid("reliability")),
        };
        let priority = r.u16("priority")?;
        Ok(Self {
            label,
            protocol,
            ordered,
            reliability,
            priority,
        })
    }
}

/// One frame of a relayed data channel's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFrame {
    /// First frame of the pulling server: which channel it wants.
    Subscribe {
        /// The router (room) at the origin.
        router: String,
        /// The data publisher's id at the origin.
        data: String,
    },
    /// The origin's answer: the channel exists; its messages follow.
    Accept(DataChannelInfo),
    /// The origin's answer: no such channel (the stream ends).
    Refuse {
        /// Why, for logs and the pull's error.
        message: String,
    },
    /// One message of the channel, in the order the client sent them.
    Message {
        /// Text (UTF-8 string) or binary, as the client sent it.
        is_text: bool,
        /// Its bytes.
        data: Bytes,
    },
    /// The channel ended at the origin (the stream finishes after it).
    Close {
        /// Why.
        reason: String,
    },
}

impl DataFrame {
    /// Appends this frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        let start = out.len();
        out.extend_from_slice(&[0; DATA_FRAME_HEADER_LEN]);
        let ty = match self.encode_body(out) {
            Ok(ty) => ty,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        let Ok(len) = u32::try_from(out.len() - start - DATA_FRAME_HEADER_LEN) else {
            out.truncate(start);
            return Err(ProtoError::TooLarge("data frame"));
        };
        out[start] = ty;
        out[start + 1..start + DATA_FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn encode_body(&self, out: &mut Vec<u8>) -> Result<u8, ProtoError> {
        Ok(match self {
            DataFrame::Subscribe { router, data } => {
                put_str(out, router, "router")?;
                put_str(out, data, "data channel id")?;
                T_SUBSCRIBE
            }
            DataFrame::Accept(info) => {
                info.encode(out)?;
                T_ACCEPT
            }
            DataFrame::Refuse { message } => {
                put_str(out, message, "message")?;
                T_REFUSE
            }
            DataFrame::Message { is_text, data } => {
                out.extend_from_slice(data);
                if *is_text {
                    T_TEXT
                } else {
                    T_BINARY
                }
            }
            DataFrame::Close { reason } => {
                put_str(out, reason, "reason")?;
                T_CLOSE
            }
        })
    }

    /// The header of a message frame of `len` bytes, written apart from
    /// the message so the sender can hand both to the stream without
    /// copying the message.
    pub fn message_header(is_text: bool, len: usize) -> Result<[u8; 5], ProtoError> {
        let len = u32::try_from(len).map_err(|_| ProtoError::TooLarge("data message"))?;
        let mut h = [0u8; DATA_FRAME_HEADER_LEN];
        h[0] = if is_text { T_TEXT } else { T_BINARY };
        h[1..].copy_from_slice(&len.to_be_bytes());
        Ok(h)
    }

    /// Parses one frame body of type `ty`.
    pub fn decode(ty: u8, body: Bytes) -> Result<Self, ProtoError> {
        if ty == T_TEXT || ty == T_BINARY {
            return Ok(DataFrame::Message {
                is_text: ty == T_TEXT,
                data: body,
            });
        }
        let mut r = Reader::new(&body);
        let frame = match ty {
            T_SUBSCRIBE => DataFrame::Subscribe {
                router: r.str("router")?,
                data: r.str("data channel id")?,
            },
            T_ACCEPT => DataFrame::Accept(DataChannelInfo::decode(&mut r)?),
            T_REFUSE => DataFrame::Refuse {
                message: r.str("message")?,
            },
            T_CLOSE => DataFrame::Close {
                reason: r.str("reason")?,
            },
            value => {
                return Err(ProtoError::UnknownType {
                    what: "data frame",
                    value,
                })
            }
        };
        r.finish()?;
        Ok(frame)
    }
}

/// Cuts [`DataFrame`]s out of a stream's bytes.
#[derive(Debug)]
pub struct DataFrameReader {
    buf: BytesMut,
    max_body: usize,
}

impl DataFrameReader {
    /// A reader that refuses frames whose body exceeds `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_body,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
    }

    /// The next complete frame, `None` until one is complete. A frame
    /// over the limit is an error as soon as its header is read (the
    /// stream is then unusable: the caller ends it).
    #[must_use]
    pub fn poll(&mut self) -> Option<Result<DataFrame, ProtoError>> {
        if self.buf.len() < DATA_FRAME_HEADER_LEN {
            return None;
        }
        let ty = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.max_body {
            self.buf.clear();
            return Some(Err(ProtoError::TooLarge("data frame")));
        }
        if self.buf.len() < DATA_FRAME_HEADER_LEN + len {
            // Room for the rest at once rather than growing step by step.
            self.buf
                .reserve(DATA_FRAME_HEADER_LEN + len - self.buf.len());
            return None;
        }
        self.buf.advance(DATA_FRAME_HEADER_LEN);
        let body = self.buf.split_to(len).freeze();
        Some(DataFrame::decode(ty, body))
    }

    /// Bytes held that do not make a whole frame yet.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 é=;/-]{0,40}"
    }

    fn info() -> impl Strategy<Value = DataChannelInfo> {
        let reliability = prop_oneof![
            Just(DataReliability::Reliable),
            any::<u32>().prop_map(DataReliability::MaxRetransmits),
            any::<u32>().prop_map(DataReliability::MaxLifetime),
        ];
        (s(), s(), any::<bool>(), reliability, any::<u16>()).prop_map(
            |(label, protocol, ordered, reliability, priority)| DataChannelInfo {
                label,
                protocol,
                ordered,
                reliability,
                priority,
            },
        )
    }

    fn frame() -> impl Strategy<Value = DataFrame> {
        prop_oneof![
            (s(), s()).prop_map(|(router, data)| DataFrame::Subscribe { router, data }),
            info().prop_map(DataFrame::Accept),
            s().prop_map(|message| DataFrame::Refuse { message }),
            (
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..3000)
            )
                .prop_map(|(is_text, data)| DataFrame::Message {
                    is_text,
                    data: Bytes::from(data)
                }),
            s().prop_map(|reason| DataFrame::Close { reason }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip_whatever_the_chunking(
            frames in proptest::collection::vec(frame(), 1..8),
            chunk in 1usize..700,
        ) {
            let mut wire = Vec::new();
            for f in &frames {
                f.encode(&mut wire).unwrap();
            }
            let mut reader = DataFrameReader::new(4096);
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                reader.push(c);
                while let Some(f) = reader.poll() {
                    got.push(f.unwrap());
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert_eq!(reader.pending(), 0);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), chunk in 1usize..50) {
            let mut reader = DataFrameReader::new(256);
            for c in bytes.chunks(chunk) {
                reader.push(c);
                while let Some(f) = reader.poll() {
                    if let Ok(f) = f {
                        // What parses encodes back to something that parses the same.
                        let mut out = Vec::new();
                        f.encode(&mut out).unwrap();
                        let mut again = DataFrameReader::new(256);
                        again.push(&out);
                        prop_assert_eq!(again.poll(), Some(Ok(f)));
                    }
                }
            }
        }

        #[test]
        fn truncated_bodies_are_errors(f in frame(), cut in 1usize..40) {
            if matches!(f, DataFrame::Message { .. }) {
                // A message is whatever bytes it has.
                return Ok(());
            }
            let mut wire = Vec::new();
            f.encode(&mut wire).unwrap();
            let body = &wire[DATA_FRAME_HEADER_LEN..];
            let keep = body.len().saturating_sub(cut);
            if keep < body.len() {
                prop_assert!(DataFrame::decode(wire[0], Bytes::copy_from_slice(&body[..keep])).is_err());
            }
        }

        #[test]
        fn a_message_header_matches_the_encoded_frame(is_text in any::<bool>(), data in proptest::collection::vec(any::<u8>(), 0..100)) {
            let mut wire = Vec::new();
            DataFrame::Message { is_text, data: Bytes::from(data.clone()) }.encode(&mut wire).unwrap();
            prop_assert_eq!(&wire[..DATA_FRAME_HEADER_LEN], &DataFrame::message_header(is_text, data.len()).unwrap()[..]);
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header() {
        let mut reader = DataFrameReader::new(10);
        reader.push(&[T_BINARY, 0, 0, 0, 11]);
        assert_eq!(reader.poll(), Some(Err(ProtoError::TooLarge("data frame"))));
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn unknown_types_and_bad_flags_are_named() {
        assert_eq!(
            DataFrame::decode(99, Bytes::new()),
            Err(ProtoError::UnknownType {
                what: "data frame",
                value: 99
            })
        );
        let mut body = Vec::new();
        DataChannelInfo {
            label: "a".into(),
            protocol: String::new(),
            ordered: true,
            reliability: DataReliability::Reliable,
            priority: 256,
        }
        .encode(&mut body)
        .unwrap();
        body[5] = 2; // ordered flag
        assert_eq!(
            DataFrame::decode(T_ACCEPT, Bytes::from(body)),
            Err(ProtoError::Invalid("ordered flag"))
        );
    }
}
