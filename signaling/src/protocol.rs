//! The WebSocket JSON protocol of `PROTOCOL.md`: typed requests parsed from
//! text, and the server's messages.
//!
//! Parsing goes through `serde_json::Value` and decodes each `type` by hand:
//! serde's internally tagged enums report "data did not match any variant",
//! while the protocol promises an error that names the bad field.

use serde::Serialize;
use serde_json::{Map, Number, Value};
use std::fmt;
use weir::{DataPublisherId, DataPublisherInfo, IceCandidate, MediaKind, Reliability, TrackId};

/// The longest room name, in characters.
pub(crate) const MAX_ROOM_LEN: usize = 64;
/// The longest display name, in characters.
pub(crate) const MAX_NAME_LEN: usize = 64;
/// The longest data channel label, in bytes (DCEP allows 65535; chat apps
/// need far less).
pub(crate) const MAX_LABEL_LEN: usize = 256;
/// The highest spatial or temporal layer index `setPreferredLayers` accepts.
pub(crate) const MAX_LAYER: u8 = 3;

/// The `id` a client attaches to a request; echoed verbatim on the reply.
pub(crate) type RequestId = Number;

/// A room name that passed validation: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RoomName(String);

impl RoomName {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("room name is empty".into());
        }
        if s.len() > MAX_ROOM_LEN {
            return Err(format!(
                "room name is longer than {MAX_ROOM_LEN} characters"
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(format!(
                "room name contains {c:?}; only A-Z, a-z, 0-9, '_' and '-' are allowed"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which of a participant's two transports a message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TransportKind {
    Publish,
    Subscribe,
}

/// A request from the client, fully decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    Join {
        room: RoomName,
        name: Option<String>,
        /// Not announced to the other members (a viewer in a large room).
        hidden: bool,
    },
    Publish {
        sdp: String,
    },
    Unpublish {
        track_id: TrackId,
    },
    Subscribe {
        track_id: TrackId,
    },
    Unsubscribe {
        track_id: TrackId,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        transport: TransportKind,
        /// `None` is end-of-candidates.
        candidate: Option<IceCandidate>,
    },
    PublishData {
        label: String,
    },
    SubscribeData {
        data_id: DataPublisherId,
    },
    SetPreferredLayers {
        track_id: TrackId,
        spatial: u8,
        temporal: u8,
    },
    Leave,
}

impl Request {
    pub(crate) fn kind(&self) -> RequestKind {
        match self {
            Request::Join { .. } => RequestKind::Join,
            Request::Publish { .. } => RequestKind::Publish,
            Request::Unpublish { .. } => RequestKind::Unpublish,
            Request::Subscribe { .. } => RequestKind::Subscribe,
            Request::Unsubscribe { .. } => RequestKind::Unsubscribe,
            Request::Answer { .. } => RequestKind::Answer,
            Request::Candidate { .. } => RequestKind::Candidate,
            Request::PublishData { .. } => RequestKind::PublishData,
            Request::SubscribeData { .. } => RequestKind::SubscribeData,
            Request::SetPreferredLayers { .. } => RequestKind::SetPreferredLayers,
            Request::Leave => RequestKind::Leave,
        }
    }
}

/// The request types, for counting; `Invalid` is anything that did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestKind {
    Join,
    Publish,
    Unpublish,
    Subscribe,
    Unsubscribe,
    Answer,
    Candidate,
    PublishData,
    SubscribeData,
    SetPreferredLayers,
    Leave,
    Invalid,
}

impl RequestKind {
    pub(crate) const ALL: [RequestKind; 12] = [
        RequestKind::Join,
        RequestKind::Publish,
        RequestKind::Unpublish,
        RequestKind::Subscribe,
        RequestKind::Unsubscribe,
        RequestKind::Answer,
        RequestKind::Candidate,
        RequestKind::PublishData,
        RequestKind::SubscribeData,
        RequestKind::SetPreferredLayers,
        RequestKind::Leave,
        RequestKind::Invalid,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RequestKind::Join => "join",
            RequestKind::Publish => "publish",
            RequestKind::Unpublish => "unpublish",
            RequestKind::Subscribe => "subscribe",
            RequestKind::Unsubscribe => "unsubscribe",
            RequestKind::Answer => "answer",
            RequestKind::Candidate => "candidate",
            RequestKind::PublishData => "publishData",
            RequestKind::SubscribeData => "subscribeData",
            RequestKind::SetPreferredLayers => "setPreferredLayers",
            RequestKind::Leave => "leave",
            RequestKind::Invalid => "invalid",
        }
    }
}

/// A request with the `id` to echo.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub(crate) id: Option<RequestId>,
    pub(crate) request: Request,
}

/// The error codes of `PROTOCOL.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    BadJson,
    BadMessage,
    NotJoined,
    AlreadyJoined,
    BadRoom,
    BadSdp,
    UnknownTrack,
    AlreadySubscribed,
    NoPendingOffer,
    BadCandidate,
    UnknownData,
    DataFailed,
    Internal,
}

impl ErrorCode {
    pub(crate) const ALL: [ErrorCode; 13] = [
        ErrorCode::BadJson,
        ErrorCode::BadMessage,
        ErrorCode::NotJoined,
        ErrorCode::AlreadyJoined,
        ErrorCode::BadRoom,
        ErrorCode::BadSdp,
        ErrorCode::UnknownTrack,
        ErrorCode::AlreadySubscribed,
        ErrorCode::NoPendingOffer,
        ErrorCode::BadCandidate,
        ErrorCode::UnknownData,
        ErrorCode::DataFailed,
        ErrorCode::Internal,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::BadRoom => "bad_room",
            ErrorCode::BadSdp => "bad_sdp",
            ErrorCode::UnknownTrack => "unknown_track",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::NoPendingOffer => "no_pending_offer",
            ErrorCode::BadCandidate => "bad_candidate",
            ErrorCode::UnknownData => "unknown_data",
            ErrorCode::DataFailed => "data_failed",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code for an SDK failure.
    pub(crate) fn from_sdk(e: &weir::Error) -> Self {
        match e {
            weir::Error::InvalidSdp(_) => ErrorCode::BadSdp,
            weir::Error::InvalidCandidate(_) => ErrorCode::BadCandidate,
            weir::Error::UnknownTrack(_) => ErrorCode::UnknownTrack,
            weir::Error::AlreadySubscribed(_) => ErrorCode::AlreadySubscribed,
            weir::Error::NoPendingOffer => ErrorCode::NoPendingOffer,
            weir::Error::UnknownDataChannel(_) => ErrorCode::UnknownData,
            weir::Error::DataChannel(_) => ErrorCode::DataFailed,
            _ => ErrorCode::Internal,
        }
    }
}

/// A request that failed: becomes an `error` reply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn sdk(e: &weir::Error) -> Self {
        Self::new(ErrorCode::from_sdk(e), e.to_string())
    }
}

/// A message that did not parse, with the `id` if one could be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParseError {
    pub(crate) id: Option<RequestId>,
    pub(crate) failure: Failure,
}

/// Parses one text frame.
pub(crate) fn parse(text: &str) -> Result<Envelope, ParseError> {
    let fail = |id: Option<RequestId>, code, message: String| ParseError {
        id,
        failure: Failure::new(code, message),
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| fail(None, ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(fail(
            None,
            ErrorCode::BadJson,
            format!("expected a JSON object, got {}", type_name(&value)),
        ));
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.clone()),
        Some(other) => {
            return Err(fail(
                None,
                ErrorCode::BadMessage,
                format!("field `id` must be a number, got {}", type_name(other)),
            ))
        }
    };
    let request = decode(&obj).map_err(|f| ParseError {
        id: id.clone(),
        failure: f,
    })?;
    Ok(Envelope { id, request })
}

fn decode(obj: &Map<String, Value>) -> Result<Request, Failure> {
    let ty = match obj.get("type") {
        None => return Err(bad_message("missing field `type`")),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(bad_message(format!(
                "field `type` must be a string, got {}",
                type_name(other)
            )))
        }
    };
    Ok(match ty {
        "join" => {
            let room = RoomName::parse(req_str(obj, "room")?)
                .map_err(|m| Failure::new(ErrorCode::BadRoom, m))?;
            let name = opt_str(obj, "name")?;
            if let Some(n) = name {
                if n.chars().count() > MAX_NAME_LEN {
                    return Err(bad_message(format!(
                        "field `name` is longer than {MAX_NAME_LEN} characters"
                    )));
                }
            }
            Request::Join {
                room,
                name: name.map(str::to_owned),
                hidden: opt_bool(obj, "hidden")?.unwrap_or(false),
            }
        }
        "publish" => Request::Publish {
            sdp: req_str(obj, "sdp")?.to_owned(),
        },
        "unpublish" => Request::Unpublish {
            track_id: track_id(obj)?,
        },
        "subscribe" => Request::Subscribe {
            track_id: track_id(obj)?,
        },
        "unsubscribe" => Request::Unsubscribe {
            track_id: track_id(obj)?,
        },
        "answer" => Request::Answer {
            sdp: req_str(obj, "sdp")?.to_owned(),
        },
        "candidate" => {
            let transport = match req_str(obj, "transport")? {
                "publish" => TransportKind::Publish,
                "subscribe" => TransportKind::Subscribe,
                other => {
                    return Err(bad_message(format!(
                        "field `transport` must be \"publish\" or \"subscribe\", got {other:?}"
                    )))
                }
            };
            let candidate = match obj.get("candidate") {
                None => return Err(bad_message("missing field `candidate`")),
                Some(v) => candidate(v)?,
            };
            Request::Candidate {
                transport,
                candidate,
            }
        }
        "publishData" => {
            let label = req_str(obj, "label")?;
            if label.len() > MAX_LABEL_LEN {
                return Err(bad_message(format!(
                    "field `label` is longer than {MAX_LABEL_LEN} bytes"
                )));
            }
            Request::PublishData {
                label: label.to_owned(),
            }
        }
        "subscribeData" => {
            let s = req_str(obj, "dataId")?;
            if s.is_empty() {
                return Err(bad_message("field `dataId` is empty"));
            }
            Request::SubscribeData {
                data_id: DataPublisherId::from(s),
            }
        }
        "setPreferredLayers" => Request::SetPreferredLayers {
            track_id: track_id(obj)?,
            spatial: layer(obj, "spatial")?,
            temporal: layer(obj, "temporal")?,
        },
        "leave" => Request::Leave,
        other => return Err(bad_message(format!("unknown type {other:?}"))),
    })
}

/// Decodes the browser's `RTCIceCandidateInit` shape. `null`, or an empty
/// `candidate` string (what browsers emit at the end of gathering), is
/// end-of-candidates.
fn candidate(v: &Value) -> Result<Option<IceCandidate>, Failure> {
    let bad = |m: String| Failure::new(ErrorCode::BadCandidate, m);
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        other => {
            return Err(bad(format!(
                "field `candidate` must be an object or null, got {}",
                type_name(other)
            )))
        }
    };
    let cand = match obj.get("candidate") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(bad(format!(
                "field `candidate.candidate` must be a string, got {}",
                type_name(other)
            )))
        }
        None => return Err(bad("missing field `candidate.candidate`".into())),
    };
    if cand.is_empty() {
        return Ok(None);
    }
    let sdp_mid = match obj.get("sdpMid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(bad(format!(
                "field `candidate.sdpMid` must be a string or null, got {}",
                type_name(other)
            )))
        }
    };
    let sdp_mline_index = match obj.get("sdpMLineIndex") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().and_then(|i| u16::try_from(i).ok()).ok_or_else(
            || {
                bad(format!(
                    "field `candidate.sdpMLineIndex` is out of range: {n}"
                ))
            },
        )?),
        Some(other) => {
            return Err(bad(format!(
                "field `candidate.sdpMLineIndex` must be a number or null, got {}",
                type_name(other)
            )))
        }
    };
    if sdp_mid.is_none() && sdp_mline_index.is_none() {
        return Err(bad(
            "one of `candidate.sdpMid` and `candidate.sdpMLineIndex` is required".into(),
        ));
    }
    Ok(Some(IceCandidate {
        candidate: cand.strip_prefix("a=").unwrap_or(cand).to_owned(),
        sdp_mid: sdp_mid.unwrap_or_default(),
        sdp_mline_index: sdp_mline_index.unwrap_or(0),
    }))
}

fn bad_message(m: impl Into<String>) -> Failure {
    Failure::new(ErrorCode::BadMessage, m)
}

fn req_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, Failure> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        None => Err(bad_message(format!("missing field `{field}`"))),
        Some(other) => Err(bad_message(format!(
            "field `{field}` must be a string, got {}",
            type_name(other)
        ))),
    }
}

fn opt_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Failure> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(bad_message(format!(
            "field `{field}` must be a string, got {}",
            type_name(other)
        ))),
    }
}

fn opt_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, Failure> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad_message(format!(
            "field `{field}` must be a boolean, got {}",
            type_name(other)
        ))),
    }
}

fn track_id(obj: &Map<String, Value>) -> Result<TrackId, Failure> {
    let s = req_str(obj, "trackId")?;
    if s.is_empty() {
        return Err(bad_message("field `trackId` is empty"));
    }
    Ok(TrackId::from(s))
}

/// A layer index: an integer from 0 to [`MAX_LAYER`].
fn layer(obj: &Map<String, Value>, field: &str) -> Result<u8, Failure> {
    match obj.get(field) {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|v| *v <= u64::from(MAX_LAYER))
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| {
                bad_message(format!(
                    "field `{field}` must be an integer from 0 to {MAX_LAYER}, got {n}"
                ))
            }),
        None => Err(bad_message(format!("missing field `{field}`"))),
        Some(other) => Err(bad_message(format!(
            "field `{field}` must be a number, got {}",
            type_name(other)
        ))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Server → client

/// `"audio"` or `"video"`.
pub(crate) fn kind_str(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// A published track as the protocol describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrackObject {
    pub(crate) track_id: String,
    pub(crate) peer_id: String,
    /// The publisher's display name ("" if it gave none).
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    pub(crate) codec: String,
}

/// A room member in `joined.peers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PeerObject {
    pub(crate) peer_id: String,
    pub(crate) name: String,
}

/// One m-section of a subscribe offer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OfferTrack {
    pub(crate) mid: String,
    pub(crate) track_id: String,
    pub(crate) kind: &'static str,
}

/// A published data channel as the protocol describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DataObject {
    pub(crate) data_id: String,
    pub(crate) peer_id: String,
    /// The publisher's display name ("" if it gave none).
    pub(crate) name: String,
    pub(crate) label: String,
    pub(crate) protocol: String,
    pub(crate) ordered: bool,
    /// `null` unless the channel is partially reliable by retransmits.
    pub(crate) max_retransmits: Option<u32>,
    /// `null` unless the channel is partially reliable by lifetime (ms).
    pub(crate) max_packet_life_time: Option<u32>,
}

impl DataObject {
    pub(crate) fn new(info: &DataPublisherInfo, peer_id: &str, name: &str) -> Self {
        let p = &info.params;
        let (max_retransmits, max_packet_life_time) = match p.reliability {
            Reliability::MaxRetransmits(n) => (Some(n), None),
            Reliability::MaxLifetime(ms) => (None, Some(ms)),
            _ => (None, None),
        };
        Self {
            data_id: info.id.to_string(),
            peer_id: peer_id.to_owned(),
            name: name.to_owned(),
            label: p.label.clone(),
            protocol: p.protocol.clone(),
            ordered: p.ordered,
            max_retransmits,
            max_packet_life_time,
        }
    }
}

/// A data channel Weir opens on the subscribe transport, in an `offer`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OfferData {
    pub(crate) data_id: String,
    pub(crate) label: String,
    /// The SCTP stream id: the browser's `RTCDataChannel.id`.
    pub(crate) stream_id: u16,
}

/// A candidate in the browser's `RTCIceCandidateInit` shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CandidateObject {
    pub(crate) candidate: String,
    pub(crate) sdp_mid: String,
    #[serde(rename = "sdpMLineIndex")]
    pub(crate) sdp_mline_index: u16,
}

impl From<&IceCandidate> for CandidateObject {
    fn from(c: &IceCandidate) -> Self {
        Self {
            candidate: c.candidate.clone(),
            sdp_mid: c.sdp_mid.clone(),
            sdp_mline_index: c.sdp_mline_index,
        }
    }
}

/// Every message the server sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub(crate) enum ServerMessage {
    Joined {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        peer_id: String,
        room: String,
        tracks: Vec<TrackObject>,
        peers: Vec<PeerObject>,
        data_publishers: Vec<DataObject>,
    },
    Answer {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        transport: TransportKind,
        sdp: String,
    },
    Published {
        track_id: String,
        mid: String,
        kind: &'static str,
        codec: String,
    },
    Unpublished {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        track_id: String,
    },
    Offer {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        sdp: String,
        tracks: Vec<OfferTrack>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        data: Vec<OfferData>,
    },
    AnswerAccepted {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
    },
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        track_id: String,
    },
    Candidate {
        transport: TransportKind,
        candidate: CandidateObject,
    },
    TrackPublished(TrackObject),
    TrackUnpublished {
        track_id: String,
    },
    PeerJoined {
        peer_id: String,
        name: String,
    },
    PeerLeft {
        peer_id: String,
        name: String,
    },
    ConnectionState {
        transport: TransportKind,
        state: String,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        code: ErrorCode,
        message: String,
    },
    DataPublished {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        #[serde(flatten)]
        data: DataObject,
    },
    DataPublisherAdded(DataObject),
    DataPublisherRemoved {
        data_id: String,
    },
    PreferredLayersSet {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<RequestId>,
        track_id: String,
        spatial: u8,
        temporal: u8,
    },
    LayersChanged {
        track_id: String,
        spatial: u8,
        temporal: u8,
    },
}

/// The server message types, for counting.
pub(crate) const SERVER_TYPES: [&str; 19] = [
    "joined",
    "answer",
    "published",
    "unpublished",
    "offer",
    "answerAccepted",
    "unsubscribed",
    "candidate",
    "trackPublished",
    "trackUnpublished",
    "peerJoined",
    "peerLeft",
    "connectionState",
    "error",
    "dataPublished",
    "dataPublisherAdded",
    "dataPublisherRemoved",
    "preferredLayersSet",
    "layersChanged",
];

impl ServerMessage {
    /// Index into [`SERVER_TYPES`].
    pub(crate) fn type_index(&self) -> usize {
        match self {
            ServerMessage::Joined { .. } => 0,
            ServerMessage::Answer { .. } => 1,
            ServerMessage::Published { .. } => 2,
            ServerMessage::Unpublished { .. } => 3,
            ServerMessage::Offer { .. } => 4,
            ServerMessage::AnswerAccepted { .. } => 5,
            ServerMessage::Unsubscribed { .. } => 6,
            ServerMessage::Candidate { .. } => 7,
            ServerMessage::TrackPublished(_) => 8,
            ServerMessage::TrackUnpublished { .. } => 9,
            ServerMessage::PeerJoined { .. } => 10,
            ServerMessage::PeerLeft { .. } => 11,
            ServerMessage::ConnectionState { .. } => 12,
            ServerMessage::Error { .. } => 13,
            ServerMessage::DataPublished { .. } => 14,
            ServerMessage::DataPublisherAdded(_) => 15,
            ServerMessage::DataPublisherRemoved { .. } => 16,
            ServerMessage::PreferredLayersSet { .. } => 17,
            ServerMessage::LayersChanged { .. } => 18,
        }
    }

    pub(crate) fn error(id: Option<RequestId>, failure: Failure) -> Self {
        ServerMessage::Error {
            id,
            code: failure.code,
            message: failure.message,
        }
    }

    pub(crate) fn to_json(&self) -> String {
        // Serializing these plain structs cannot fail: no maps with non-string
        // keys, no failing Serialize impls.
        serde_json::to_string(self).expect("server messages serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Any JSON value, a few levels deep.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Hostile frames: any text parses or fails with a code, never panics.
        #[test]
        fn any_text_parses_or_fails_cleanly(text in ".{0,200}") {
            let _ = parse(&text);
        }

        /// A join with any value of `hidden` (and any other fields): a
        /// boolean is taken as is, anything else but null is bad_message.
        #[test]
        fn join_hidden_is_a_boolean_or_refused(hidden in any_json(), extra in any_json()) {
            let text = json!({"type": "join", "room": "r", "hidden": hidden, "extra": extra}).to_string();
            match (&hidden, parse(&text)) {
                (Value::Bool(b), Ok(env)) => {
                    let taken = matches!(env.request, Request::Join { hidden: h, .. } if h == *b);
                    prop_assert!(taken);
                }
                (Value::Null, Ok(env)) => {
                    let default = matches!(env.request, Request::Join { hidden: false, .. });
                    prop_assert!(default);
                }
                (_, Err(e)) => prop_assert_eq!(e.failure.code, ErrorCode::BadMessage),
                (other, Ok(_)) => prop_assert!(false, "hidden = {other} accepted"),
            }
        }

        /// Every request type with random fields: parses or fails cleanly.
        #[test]
        fn any_fields_of_any_type_fail_cleanly(
            ty in prop::sample::select(vec![
                "join", "publish", "unpublish", "subscribe", "unsubscribe", "answer",
                "candidate", "publishData", "subscribeData", "setPreferredLayers", "leave",
            ]),
            fields in prop::collection::btree_map(
                prop::sample::select(vec![
                    "id", "room", "name", "hidden", "sdp", "trackId", "transport",
                    "candidate", "label", "dataId", "spatial", "temporal",
                ]),
                any_json(),
                0..6,
            ),
        ) {
            let mut obj: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            obj.insert("type".into(), json!(ty));
            let _ = parse(&Value::Object(obj).to_string());
        }
    }

    fn err(text: &str) -> (Option<RequestId>, ErrorCode, String) {
        let e = parse(text).expect_err("should fail");
        (e.id, e.failure.code, e.failure.message)
    }

    #[test]
    fn bad_json() {
        assert_eq!(err("{").1, ErrorCode::BadJson);
        assert_eq!(err("[1,2]").1, ErrorCode::BadJson);
        assert_eq!(err("\"join\"").1, ErrorCode::BadJson);
        assert_eq!(err("").1, ErrorCode::BadJson);
    }

    #[test]
    fn type_problems_are_bad_message() {
        let (id, code, msg) = err(r#"{"id":3}"#);
        assert_eq!((id, code), (Some(3.into()), ErrorCode::BadMessage));
        assert!(msg.contains("`type`"), "{msg}");
        let (_, code, msg) = err(r#"{"type":7}"#);
        assert_eq!(code, ErrorCode::BadMessage);
        assert!(msg.contains("`type`"), "{msg}");
        let (id, code, msg) = err(r#"{"type":"dance","id":1}"#);
        assert_eq!((id, code), (Some(1.into()), ErrorCode::BadMessage));
        assert!(msg.contains("dance"), "{msg}");
    }

    #[test]
    fn id_must_be_a_number() {
        let (id, code, msg) = err(r#"{"type":"leave","id":"x"}"#);
        assert_eq!((id, code), (None, ErrorCode::BadMessage));
        assert!(msg.contains("`id`"), "{msg}");
        let ok = parse(r#"{"type":"leave","id":null}"#).unwrap();
        assert_eq!(ok.id, None);
        let ok = parse(r#"{"type":"leave","id":1.5}"#).unwrap();
        assert_eq!(ok.id, Some(Number::from_f64(1.5).unwrap()));
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        for (text, field) in [
            (r#"{"type":"publish"}"#, "`sdp`"),
            (r#"{"type":"answer","sdp":1}"#, "`sdp`"),
            (r#"{"type":"subscribe"}"#, "`trackId`"),
            (r#"{"type":"unsubscribe","trackId":[]}"#, "`trackId`"),
            (r#"{"type":"unpublish","trackId":""}"#, "`trackId`"),
            (r#"{"type":"join"}"#, "`room`"),
            (r#"{"type":"join","room":"a","name":5}"#, "`name`"),
            (
                r#"{"type":"candidate","transport":"publish"}"#,
                "`candidate`",
            ),
            (r#"{"type":"candidate","candidate":null}"#, "`transport`"),
            (
                r#"{"type":"candidate","transport":"both","candidate":null}"#,
                "`transport`",
            ),
        ] {
            let (_, code, msg) = err(text);
            assert_eq!(code, ErrorCode::BadMessage, "{text}");
            assert!(msg.contains(field), "{text}: {msg}");
        }
    }

    #[test]
    fn room_names() {
        assert!(RoomName::parse("a").is_ok());
        assert!(RoomName::parse("Room_1-b").is_ok());
        assert!(RoomName::parse(&"x".repeat(64)).is_ok());
        assert!(RoomName::parse(&"x".repeat(65)).is_err());
        assert!(RoomName::parse("").is_err());
        assert!(RoomName::parse("a b").is_err());
        assert!(RoomName::parse("é").is_err());
        assert!(RoomName::parse("a/b").is_err());
        let (id, code, _) = err(r#"{"type":"join","room":"no spaces","id":2}"#);
        assert_eq!((id, code), (Some(2.into()), ErrorCode::BadRoom));
        assert_eq!(err(r#"{"type":"join","room":""}"#).1, ErrorCode::BadRoom);
    }

    #[test]
    fn join_name() {
        let env = parse(r#"{"type":"join","room":"r","name":"Ann","extra":true}"#).unwrap();
        assert_eq!(
            env.request,
            Request::Join {
                room: RoomName::parse("r").unwrap(),
                name: Some("Ann".into()),
                hidden: false,
            }
        );
        let hidden = parse(r#"{"type":"join","room":"r","hidden":true}"#).unwrap();
        assert!(matches!(hidden.request, Request::Join { hidden: true, .. }));
        assert_eq!(
            err(r#"{"type":"join","room":"r","hidden":"yes"}"#).1,
            ErrorCode::BadMessage
        );
        let long = json!({"type":"join","room":"r","name":"é".repeat(65)}).to_string();
        assert_eq!(err(&long).1, ErrorCode::BadMessage);
        let ok = json!({"type":"join","room":"r","name":"é".repeat(64)}).to_string();
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn candidates() {
        let env = parse(
            r#"{"type":"candidate","transport":"subscribe","candidate":
               {"candidate":"candidate:1 1 udp 2122260223 192.0.2.1 5000 typ host",
                "sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}}"#,
        )
        .unwrap();
        let Request::Candidate {
            transport,
            candidate: Some(c),
        } = env.request
        else {
            panic!("not a candidate: {:?}", env.request)
        };
        assert_eq!(transport, TransportKind::Subscribe);
        assert_eq!(c.sdp_mid, "0");
        assert!(c.candidate.starts_with("candidate:1"));

        for eoc in [
            r#"{"type":"candidate","transport":"publish","candidate":null}"#,
            r#"{"type":"candidate","transport":"publish","candidate":{"candidate":"","sdpMid":"0"}}"#,
        ] {
            let env = parse(eoc).unwrap();
            assert_eq!(
                env.request,
                Request::Candidate {
                    transport: TransportKind::Publish,
                    candidate: None
                }
            );
        }

        for bad in [
            r#"{"type":"candidate","transport":"publish","candidate":"x"}"#,
            r#"{"type":"candidate","transport":"publish","candidate":{}}"#,
            r#"{"type":"candidate","transport":"publish","candidate":{"candidate":"c"}}"#,
            r#"{"type":"candidate","transport":"publish","candidate":{"candidate":"c","sdpMLineIndex":70000}}"#,
            r#"{"type":"candidate","transport":"publish","candidate":{"candidate":"c","sdpMLineIndex":-1}}"#,
            r#"{"type":"candidate","transport":"publish","candidate":{"candidate":"c","sdpMid":3}}"#,
        ] {
            assert_eq!(err(bad).1, ErrorCode::BadCandidate, "{bad}");
        }
    }

    #[test]
    fn every_request_parses() {
        for (text, kind) in [
            (r#"{"type":"join","room":"r"}"#, RequestKind::Join),
            (r#"{"type":"publish","sdp":"v=0"}"#, RequestKind::Publish),
            (
                r#"{"type":"unpublish","trackId":"t"}"#,
                RequestKind::Unpublish,
            ),
            (
                r#"{"type":"subscribe","trackId":"t"}"#,
                RequestKind::Subscribe,
            ),
            (
                r#"{"type":"unsubscribe","trackId":"t"}"#,
                RequestKind::Unsubscribe,
            ),
            (r#"{"type":"answer","sdp":"v=0"}"#, RequestKind::Answer),
            (
                r#"{"type":"publishData","label":"chat"}"#,
                RequestKind::PublishData,
            ),
            (
                r#"{"type":"subscribeData","dataId":"pub1-dc0"}"#,
                RequestKind::SubscribeData,
            ),
            (
                r#"{"type":"setPreferredLayers","trackId":"t","spatial":0,"temporal":3}"#,
                RequestKind::SetPreferredLayers,
            ),
            (r#"{"type":"leave"}"#, RequestKind::Leave),
        ] {
            assert_eq!(parse(text).unwrap().request.kind(), kind, "{text}");
        }
    }

    #[test]
    fn server_messages_serialize_as_documented() {
        let v: Value = serde_json::from_str(
            &ServerMessage::Error {
                id: Some(4.into()),
                code: ErrorCode::NoPendingOffer,
                message: "m".into(),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"error","id":4,"code":"no_pending_offer","message":"m"})
        );
        let v: Value = serde_json::from_str(
            &ServerMessage::TrackPublished(TrackObject {
                track_id: "t".into(),
                peer_id: "p".into(),
                name: "n".into(),
                kind: "video",
                codec: "VP8".into(),
            })
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"trackPublished","trackId":"t","peerId":"p","name":"n","kind":"video","codec":"VP8"})
        );
        let v: Value = serde_json::from_str(
            &ServerMessage::Candidate {
                transport: TransportKind::Publish,
                candidate: CandidateObject {
                    candidate: "candidate:x".into(),
                    sdp_mid: "0".into(),
                    sdp_mline_index: 0,
                },
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"candidate","transport":"publish",
                   "candidate":{"candidate":"candidate:x","sdpMid":"0","sdpMLineIndex":0}})
        );
        let v: Value =
            serde_json::from_str(&ServerMessage::AnswerAccepted { id: None }.to_json()).unwrap();
        assert_eq!(v, json!({"type":"answerAccepted"}));
        let v: Value = serde_json::from_str(
            &ServerMessage::ConnectionState {
                transport: TransportKind::Subscribe,
                state: weir::ConnectionState::Connected.to_string(),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"connectionState","transport":"subscribe","state":"connected"})
        );
    }

    fn data_object() -> DataObject {
        DataObject {
            data_id: "pub1-dc0".into(),
            peer_id: "p1".into(),
            name: "ann".into(),
            label: "chat".into(),
            protocol: String::new(),
            ordered: false,
            max_retransmits: Some(0),
            max_packet_life_time: None,
        }
    }

    #[test]
    fn data_messages_parse_and_serialize_as_documented() {
        for (text, field) in [
            (r#"{"type":"publishData"}"#, "`label`"),
            (r#"{"type":"publishData","label":7}"#, "`label`"),
            (r#"{"type":"subscribeData"}"#, "`dataId`"),
            (r#"{"type":"subscribeData","dataId":""}"#, "`dataId`"),
        ] {
            let (_, code, msg) = err(text);
            assert_eq!(code, ErrorCode::BadMessage, "{text}");
            assert!(msg.contains(field), "{text}: {msg}");
        }
        let long = format!(r#"{{"type":"publishData","label":"{}"}}"#, "x".repeat(300));
        assert_eq!(err(&long).1, ErrorCode::BadMessage);
        let v: Value = serde_json::from_str(
            &ServerMessage::DataPublished {
                id: Some(3.into()),
                data: data_object(),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"dataPublished","id":3,"dataId":"pub1-dc0","peerId":"p1","name":"ann",
                   "label":"chat","protocol":"","ordered":false,"maxRetransmits":0,
                   "maxPacketLifeTime":null})
        );
        let v: Value = serde_json::from_str(
            &ServerMessage::Offer {
                id: None,
                sdp: "v=0".into(),
                tracks: vec![],
                data: vec![OfferData {
                    data_id: "d".into(),
                    label: "chat".into(),
                    stream_id: 1,
                }],
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"offer","sdp":"v=0","tracks":[],
                   "data":[{"dataId":"d","label":"chat","streamId":1}]})
        );
        assert_eq!(
            ErrorCode::from_sdk(&weir::Error::UnknownDataChannel("x".into())).as_str(),
            "unknown_data"
        );
    }

    #[test]
    fn type_index_matches_serialized_type() {
        let msgs = [
            ServerMessage::AnswerAccepted { id: None },
            ServerMessage::TrackUnpublished {
                track_id: "t".into(),
            },
            ServerMessage::PeerLeft {
                peer_id: "p".into(),
                name: String::new(),
            },
            ServerMessage::Offer {
                id: None,
                sdp: String::new(),
                tracks: vec![],
                data: vec![],
            },
            ServerMessage::DataPublished {
                id: None,
                data: data_object(),
            },
            ServerMessage::DataPublisherAdded(data_object()),
            ServerMessage::DataPublisherRemoved {
                data_id: "d".into(),
            },
            ServerMessage::PreferredLayersSet {
                id: None,
                track_id: "t".into(),
                spatial: 0,
                temporal: 0,
            },
            ServerMessage::LayersChanged {
                track_id: "t".into(),
                spatial: 1,
                temporal: 2,
            },
        ];
        for m in msgs {
            let v: Value = serde_json::from_str(&m.to_json()).unwrap();
            assert_eq!(v["type"], SERVER_TYPES[m.type_index()]);
        }
    }

    #[test]
    fn layer_messages_parse_and_serialize_as_documented() {
        let env = parse(
            r#"{"type":"setPreferredLayers","id":5,"trackId":"t1","spatial":2,"temporal":1}"#,
        )
        .unwrap();
        assert_eq!(env.id, Some(5.into()));
        assert_eq!(
            env.request,
            Request::SetPreferredLayers {
                track_id: TrackId::from("t1"),
                spatial: 2,
                temporal: 1
            }
        );
        for (text, field) in [
            (
                r#"{"type":"setPreferredLayers","spatial":0,"temporal":0}"#,
                "`trackId`",
            ),
            (
                r#"{"type":"setPreferredLayers","trackId":"t","temporal":0}"#,
                "`spatial`",
            ),
            (
                r#"{"type":"setPreferredLayers","trackId":"t","spatial":0}"#,
                "`temporal`",
            ),
            (
                r#"{"type":"setPreferredLayers","trackId":"t","spatial":4,"temporal":0}"#,
                "`spatial`",
            ),
            (
                r#"{"type":"setPreferredLayers","trackId":"t","spatial":-1,"temporal":0}"#,
                "`spatial`",
            ),
            (
                r#"{"type":"setPreferredLayers","trackId":"t","spatial":1.5,"temporal":0}"#,
                "`spatial`",
            ),
            (
                r#"{"type":"setPreferredLayers","trackId":"t","spatial":"1","temporal":0}"#,
                "`spatial`",
            ),
            (
                r#"{"type":"setPreferredLayers","trackId":"t","spatial":0,"temporal":9}"#,
                "`temporal`",
            ),
        ] {
            let (_, code, msg) = err(text);
            assert_eq!(code, ErrorCode::BadMessage, "{text}");
            assert!(msg.contains(field), "{text}: {msg}");
        }
        let v: Value = serde_json::from_str(
            &ServerMessage::PreferredLayersSet {
                id: Some(5.into()),
                track_id: "t1".into(),
                spatial: 2,
                temporal: 1,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"preferredLayersSet","id":5,"trackId":"t1","spatial":2,"temporal":1})
        );
        let v: Value = serde_json::from_str(
            &ServerMessage::LayersChanged {
                track_id: "t1".into(),
                spatial: 0,
                temporal: 2,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"layersChanged","trackId":"t1","spatial":0,"temporal":2})
        );
    }

    /// The fuzzing hook answers as a session does: the type of a valid
    /// request, or the error reply, which keeps the request's id.
    #[test]
    fn fuzzing_hook_gives_the_type_or_the_error_reply() {
        assert_eq!(
            crate::fuzzing::request(r#"{"type":"leave","id":4}"#),
            Ok("leave")
        );
        let reply = crate::fuzzing::request(r#"{"type":"join","room":"a b","id":4}"#).unwrap_err();
        let v: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(
            (&v["type"], &v["code"], &v["id"]),
            (&json!("error"), &json!("bad_room"), &json!(4))
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}
