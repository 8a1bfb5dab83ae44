//! Control messages on the relay connection's one bidirectional stream.
//!
//! A frame is `type (u8) | length (u16, big-endian) | body`; strings in a
//! body carry a u16 length. The first frame each way is a [`Hello`]; its
//! `version` decides how every later frame is read. [`FrameReader`] cuts
//! frames out of the stream's bytes as they arrive, whatever their
//! chunking.
use super::data::DataChannelInfo;
use super::{put_str, ProtoError, Reader, RelayTrackId};

/// Largest frame body (the length field is 16 bits).
pub const MAX_FRAME_BODY: usize = u16::MAX as usize;
/// Length of the proof in a hello (HMAC-SHA256).
pub const PROOF_LEN: usize = 32;

const T_HELLO: u8 = 1;
const T_ANNOUNCE: u8 = 2;
const T_SUBSCRIBE: u8 = 3;
const T_UNSUBSCRIBE: u8 = 4;
const T_KEYFRAME: u8 = 5;
const T_CLOSE: u8 = 6;
const T_ERROR: u8 = 7;
const T_TRACK_STATE: u8 = 8;
const T_DATA_STATE: u8 = 9;
const T_LAYERS: u8 = 10;

/// Capability bits of a [`Hello`]: what a server can do beyond the base
/// protocol, so later versions can add features without a new version.
pub mod capabilities {
    /// It answers NACKs from its own retransmission ring.
    pub const NACK: u32 = 1 << 0;
    /// It carries simulcast encodings.
    pub const SIMULCAST: u32 = 1 << 1;
    /// It carries SVC layer facts.
    pub const SVC: u32 = 1 << 2;
    /// It takes bundles: several relay datagrams in one QUIC datagram
    /// ([`crate::proto::bundle`]). A peer without it is sent one record per
    /// datagram.
    pub const BUNDLE: u32 = 1 << 3;
    /// As an origin, it acts on [`super::ControlMessage::Layers`]: it stops
    /// relaying layers the downstream server does not want.
    pub const LAYERS: u32 = 1 << 4;
    /// Everything this build does.
    pub const ALL: u32 = NACK | SIMULCAST | SVC | BUNDLE | LAYERS;
}

/// The first message each way: who the server is and the proof that it
/// knows the cluster secret (see `crate::auth`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version ([`super::PROTOCOL_VERSION`]).
    pub version: u16,
    /// The sender's server id (node id in the cluster).
    pub server_id: String,
    /// [`capabilities`] bits.
    pub capabilities: u32,
    /// HMAC over the TLS session's exported keying material.
    pub proof: [u8; PROOF_LEN],
}

/// Audio or video, as the relay carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// The codec parameters of a track, as its publisher's SDP gave them, so
/// the downstream server offers its subscribers the same format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodecParams {
    /// Encoding name (`VP8`, `opus`, …).
    pub name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Audio channels (0: not given).
    pub channels: u16,
    /// `a=fmtp` parameters, verbatim (empty: none).
    pub fmtp: String,
    /// `a=rtcp-fb` values.
    pub rtcp_fb: Vec<String>,
}

/// How a video track is layered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerStructure {
    /// Simulcast encodings (1 without simulcast).
    pub encodings: u8,
    /// SVC spatial layers (1 without SVC).
    pub spatial: u8,
    /// Temporal layers (1 without).
    pub temporal: u8,
}

/// The origin's answer to a [`ControlMessage::Subscribe`]: the track's
/// relay id on this connection and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The subscribe request it answers.
    pub request: u32,
    /// Id of the track in datagrams of this connection.
    pub track: RelayTrackId,
    /// The track's id at the origin.
    pub name: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Codec parameters.
    pub codec: CodecParams,
    /// Simulcast / SVC structure.
    pub layers: LayerStructure,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The router or track does not exist at the origin.
    UnknownTrack,
    /// The hello was refused (version or proof).
    Unauthorized,
    /// The peer broke the protocol.
    Protocol,
    /// A code from a newer version.
    Other(u16),
}

impl ErrorCode {
    fn to_u16(self) -> u16 {
        match self {
            ErrorCode::UnknownTrack => 1,
            ErrorCode::Unauthorized => 2,
            ErrorCode::Protocol => 3,
            ErrorCode::Other(c) => c,
        }
    }

    fn from_u16(c: u16) -> Self {
        match c {
            1 => ErrorCode::UnknownTrack,
            2 => ErrorCode::Unauthorized,
            3 => ErrorCode::Protocol,
            c => ErrorCode::Other(c),
        }
    }
}

/// One control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    /// First message each way.
    Hello(Hello),
    /// A track the peer subscribed to.
    Announce(Announce),
    /// Pull a track of a router at the origin.
    Subscribe {
        /// Request id, echoed by the announce or error.
        request: u32,
        /// The router (room) at the origin.
        router: String,
        /// The track id at the origin.
        track: String,
    },
    /// Stop sending a track.
    Unsubscribe {
        /// Its relay id.
        track: RelayTrackId,
    },
    /// Ask the origin for a keyframe (reliable, unlike a PLI datagram).
    KeyframeRequest {
        /// Its relay id.
        track: RelayTrackId,
        /// A simulcast encoding, or every one.
        encoding: Option<u8>,
    },
    /// The track ended at the origin.
    Close {
        /// Its relay id.
        track: RelayTrackId,
        /// Why, for logs.
        reason: String,
    },
    /// A request failed.
    Error {
        /// The request (0 when not about one).
        request: u32,
        /// What went wrong.
        code: ErrorCode,
        /// Details for logs.
        message: String,
    },
    /// The sender's catalog: a track published on the sender itself (not
    /// one it relays) went live or ended in one of its served routers.
    /// Sent for every such track when the connection starts and on every
    /// change after, so the peer knows what it may pull without asking.
    TrackState {
        /// The router (room) at the sender.
        router: String,
        /// The track id at the sender.
        track: String,
        /// Live (true) or ended (false).
        live: bool,
    },
    /// Downstream → origin: the highest layers the downstream server's
    /// subscribers of a pulled track want (spatial: simulcast encoding or
    /// SVC spatial id), or `None` for nothing. The origin stops relaying
    /// the others and resumes a layer from a keyframe. Sent on change, at
    /// most every 100 ms; on the control stream because a lost one would
    /// leave layers off for good.
    Layers {
        /// Its relay id.
        track: RelayTrackId,
        /// (spatial, temporal), or nothing wanted.
        wanted: Option<(u8, u8)>,
    },
    /// The sender's catalog of data channels, like [`Self::TrackState`]:
    /// a channel published on the sender itself opened (with its label,
    /// protocol, ordering and reliability) or ended.
    DataState {
        /// The router (room) at the sender.
        router: String,
        /// The data publisher's id at the sender.
        data: String,
        /// Its parameters while open; `None`: it ended.
        info: Option<DataChannelInfo>,
    },
}

impl ControlMessage {
    /// Appends this message's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0, 0]);
        let ty = match self {
            ControlMessage::Hello(h) => {
                out.extend_from_slice(&h.version.to_be_bytes());
                put_str(out, &h.server_id, "server id")?;
                out.extend_from_slice(&h.capabilities.to_be_bytes());
                out.extend_from_slice(&h.proof);
                T_HELLO
            }
            ControlMessage::Announce(a) => {
                out.extend_from_slice(&a.request.to_be_bytes());
                out.extend_from_slice(&a.track.to_be_bytes());
                put_str(out, &a.name, "track name")?;
                out.push(match a.kind {
                    TrackKind::Audio => 0,
                    TrackKind::Video => 1,
                });
                put_str(out, &a.codec.name, "codec name")?;
                out.extend_from_slice(&a.codec.clock_rate.to_be_bytes());
                out.extend_from_slice(&a.codec.channels.to_be_bytes());
                put_str(out, &a.codec.fmtp, "fmtp")?;
                let n = u8::try_from(a.codec.rtcp_fb.len())
                    .map_err(|_| ProtoError::TooLarge("rtcp-fb list"))?;
                out.push(n);
                for fb in &a.codec.rtcp_fb {
                    put_str(out, fb, "rtcp-fb")?;
                }
                out.extend_from_slice(&[a.layers.encodings, a.layers.spatial, a.layers.temporal]);
                T_ANNOUNCE
            }
            ControlMessage::Subscribe {
                request,
                router,
                track,
            } => {
                out.extend_from_slice(&request.to_be_bytes());
                put_str(out, router, "router")?;
                put_str(out, track, "track")?;
                T_SUBSCRIBE
            }
            ControlMessage::Unsubscribe { track } => {
                out.extend_from_slice(&track.to_be_bytes());
                T_UNSUBSCRIBE
            }
            ControlMessage::KeyframeRequest { track, encoding } => {
                out.extend_from_slice(&track.to_be_bytes());
                out.push(encoding.map_or(0xff, |e| e.min(0xfe)));
                T_KEYFRAME
            }
            ControlMessage::Close { track, reason } => {
                out.extend_from_slice(&track.to_be_bytes());
                put_str(out, reason, "reason")?;
                T_CLOSE
            }
            ControlMessage::Layers { track, wanted } => {
                out.extend_from_slice(&track.to_be_bytes());
                match wanted {
                    Some((spatial, temporal)) => out.extend_from_slice(&[1, *spatial, *temporal]),
                    None => out.extend_from_slice(&[0, 0, 0]),
                }
                T_LAYERS
            }
            ControlMessage::Error {
                request,
                code,
                message,
            } => {
                out.extend_from_slice(&request.to_be_bytes());
                out.extend_from_slice(&code.to_u16().to_be_bytes());
                put_str(out, message, "message")?;
                T_ERROR
            }
            ControlMessage::TrackState {
                router,
                track,
                live,
            } => {
                put_str(out, router, "router")?;
                put_str(out, track, "track")?;
                out.push(u8::from(*live));
                T_TRACK_STATE
            }
            ControlMessage::DataState { router, data, info } => {
                put_str(out, router, "router")?;
                put_str(out, data, "data channel id")?;
                out.push(u8::from(info.is_some()));
                if let Some(info) = info {
                    info.encode(out)?;
                }
                T_DATA_STATE
            }
        };
        let len = out.len() - start - 3;
        let Ok(len16) = u16::try_from(len) else {
            out.truncate(start);
            return Err(ProtoError::TooLarge("control frame"));
        };
        out[start] = ty;
        out[start + 1..start + 3].copy_from_slice(&len16.to_be_bytes());
        Ok(())
    }

    /// Parses one frame body of type `ty`.
    pub fn decode(ty: u8, body: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(body);
        let msg = match ty {
            T_HELLO => {
                let version = r.u16("hello version")?;
                let server_id = r.str("server id")?;
                let capabilities = r.u32("capabilities")?;
                let mut proof = [0u8; PROOF_LEN];
                proof.copy_from_slice(r.take(PROOF_LEN, "proof")?);
                ControlMessage::Hello(Hello {
                    version,
                    server_id,
                    capabilities,
                    proof,
                })
            }
            T_ANNOUNCE => {
                let request = r.u32("request")?;
                let track = r.u32("track")?;
                let name = r.str("track name")?;
                let kind = match r.u8("kind")? {
                    0 => TrackKind::Audio,
                    1 => TrackKind::Video,
                    _ => return Err(ProtoError::Invalid("track kind")),
                };
                let codec_name = r.str("codec name")?;
                let clock_rate = r.u32("clock rate")?;
                let channels = r.u16("channels")?;
                let fmtp = r.str("fmtp")?;
                let n = r.u8("rtcp-fb count")?;
                let mut rtcp_fb = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    rtcp_fb.push(r.str("rtcp-fb")?);
                }
                let l = r.take(3, "layers")?;
                let layers = LayerStructure {
                    encodings: l[0],
                    spatial: l[1],
                    temporal: l[2],
                };
                ControlMessage::Announce(Announce {
                    request,
                    track,
                    name,
                    kind,
                    codec: CodecParams {
                        name: codec_name,
                        clock_rate,
                        channels,
                        fmtp,
                        rtcp_fb,
                    },
                    layers,
                })
            }
            T_SUBSCRIBE => ControlMessage::Subscribe {
                request: r.u32("request")?,
                router: r.str("router")?,
                track: r.str("track")?,
            },
            T_UNSUBSCRIBE => ControlMessage::Unsubscribe {
                track: r.u32("track")?,
            },
            T_KEYFRAME => ControlMessage::KeyframeRequest {
                track: r.u32("track")?,
                encoding: match r.u8("encoding")? {
                    0xff => None,
                    e => Some(e),
                },
            },
            T_CLOSE => ControlMessage::Close {
                track: r.u32("track")?,
                reason: r.str("reason")?,
            },
            T_LAYERS => {
                let track = r.u32("track")?;
                let wanted = match (r.u8("layers")?, r.u8("layers")?, r.u8("layers")?) {
                    (0, 0, 0) => None,
                    (1, spatial, temporal) => Some((spatial, temporal)),
                    _ => return Err(ProtoError::Invalid("wanted layers")),
                };
                ControlMessage::Layers { track, wanted }
            }
            T_ERROR => ControlMessage::Error {
                request: r.u32("request")?,
                code: ErrorCode::from_u16(r.u16("code")?),
                message: r.str("message")?,
            },
            T_TRACK_STATE => ControlMessage::TrackState {
                router: r.str("router")?,
                track: r.str("track")?,
                live: match r.u8("live")? {
                    0 => false,
                    1 => true,
                    _ => return Err(ProtoError::Invalid("track state")),
                },
            },
            T_DATA_STATE => ControlMessage::DataState {
                router: r.str("router")?,
                data: r.str("data channel id")?,
                info: match r.u8("live")? {
                    0 => None,
                    1 => Some(DataChannelInfo::decode(&mut r)?),
                    _ => return Err(ProtoError::Invalid("data state")),
                },
            },
            value => {
                return Err(ProtoError::UnknownType {
                    what: "control message",
                    value,
                })
            }
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Cuts frames out of a byte stream. Holds at most one frame beyond what
/// was parsed, so a peer cannot make it grow without bound.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, `None` until one is complete. An error
    /// consumes its frame: the caller decides whether to go on (an unknown
    /// type from a newer peer) or close (anything else).
    #[must_use]
    pub fn poll(&mut self) -> Option<Result<ControlMessage, ProtoError>> {
        if self.buf.len() < 3 {
            return None;
        }
        let ty = self.buf[0];
        let len = usize::from(u16::from_be_bytes([self.buf[1], self.buf[2]]));
        if self.buf.len() < 3 + len {
            return None;
        }
        let msg = ControlMessage::decode(ty, &self.buf[3..3 + len]);
        self.buf.drain(..3 + len);
        Some(msg)
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
        "[a-zA-Z0-9 =;/-]{0,40}"
    }

    fn message() -> impl Strategy<Value = ControlMessage> {
        let hello = (any::<u16>(), s(), any::<u32>(), any::<[u8; 32]>()).prop_map(
            |(version, server_id, capabilities, proof)| {
                ControlMessage::Hello(Hello {
                    version,
                    server_id,
                    capabilities,
                    proof,
                })
            },
        );
        let announce = (
            any::<u32>(),
            any::<u32>(),
            s(),
            any::<bool>(),
            (s(), any::<u32>(), any::<u16>(), s()),
            proptest::collection::vec(s(), 0..5),
            any::<[u8; 3]>(),
        )
            .prop_map(
                |(request, track, name, video, (cname, clock_rate, channels, fmtp), fb, l)| {
                    ControlMessage::Announce(Announce {
                        request,
                        track,
                        name,
                        kind: if video {
                            TrackKind::Video
                        } else {
                            TrackKind::Audio
                        },
                        codec: CodecParams {
                            name: cname,
                            clock_rate,
                            channels,
                            fmtp,
                            rtcp_fb: fb,
                        },
                        layers: LayerStructure {
                            encodings: l[0],
                            spatial: l[1],
                            temporal: l[2],
                        },
                    })
                },
            );
        prop_oneof![
            hello,
            announce,
            (any::<u32>(), s(), s()).prop_map(|(request, router, track)| {
                ControlMessage::Subscribe {
                    request,
                    router,
                    track,
                }
            }),
            any::<u32>().prop_map(|track| ControlMessage::Unsubscribe { track }),
            (any::<u32>(), proptest::option::of(0u8..0xff))
                .prop_map(|(track, encoding)| ControlMessage::KeyframeRequest { track, encoding }),
            (any::<u32>(), s()).prop_map(|(track, reason)| ControlMessage::Close { track, reason }),
            (any::<u32>(), proptest::option::of(any::<(u8, u8)>()))
                .prop_map(|(track, wanted)| ControlMessage::Layers { track, wanted }),
            (any::<u32>(), 4u16.., s()).prop_map(|(request, c, message)| ControlMessage::Error {
                request,
                code: ErrorCode::from_u16(c),
                message
            }),
            (s(), s(), any::<bool>()).prop_map(|(router, track, live)| {
                ControlMessage::TrackState {
                    router,
                    track,
                    live,
                }
            }),
            (
                s(),
                s(),
                proptest::option::of((s(), s(), any::<bool>(), 0u8..3, any::<u32>(), any::<u16>()))
            )
                .prop_map(|(router, data, info)| ControlMessage::DataState {
                    router,
                    data,
                    info: info.map(|(label, protocol, ordered, kind, value, priority)| {
                        crate::proto::data::DataChannelInfo {
                            label,
                            protocol,
                            ordered,
                            reliability: match kind {
                                0 => crate::proto::data::DataReliability::Reliable,
                                1 => crate::proto::data::DataReliability::MaxRetransmits(value),
                                _ => crate::proto::data::DataReliability::MaxLifetime(value),
                            },
                            priority,
                        }
                    }),
                }),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip_whatever_the_chunking(
            msgs in proptest::collection::vec(message(), 1..8),
            chunk in 1usize..64,
        ) {
            let mut wire = Vec::new();
            for m in &msgs {
                m.encode(&mut wire).unwrap();
            }
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                reader.push(c);
                while let Some(m) = reader.poll() {
                    got.push(m.unwrap());
                }
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(reader.pending(), 0);
        }

        #[test]
        fn garbage_never_panics(ty in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = ControlMessage::decode(ty, &body);
        }

        #[test]
        fn truncated_bodies_are_errors(m in message(), cut in 1usize..40) {
            let mut wire = Vec::new();
            m.encode(&mut wire).unwrap();
            let body = &wire[3..];
            let keep = body.len().saturating_sub(cut);
            if keep < body.len() {
                prop_assert!(ControlMessage::decode(wire[0], &body[..keep]).is_err());
            }
        }
    }

    #[test]
    fn unknown_type_and_trailing_bytes_are_named() {
        assert_eq!(
            ControlMessage::decode(99, &[]),
            Err(ProtoError::UnknownType {
                what: "control message",
                value: 99
            })
        );
        assert_eq!(
            ControlMessage::decode(T_UNSUBSCRIBE, &[0, 0, 0, 1, 9]),
            Err(ProtoError::Trailing(1))
        );
    }

    #[test]
    fn an_oversized_message_is_refused_and_leaves_the_buffer_as_it_was() {
        let m = ControlMessage::Close {
            track: 1,
            reason: "x".repeat(MAX_FRAME_BODY),
        };
        let mut out = vec![7];
        assert!(m.encode(&mut out).is_err());
        assert_eq!(out, vec![7]);
    }
}
