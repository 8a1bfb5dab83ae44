/**
 * Message types of the weir-server signaling protocol, version 1
 * (`signaling/PROTOCOL.md`).
 *
 * This module holds types only: every import of it is erased, so the
 * browser never loads `protocol.js` and `index.js` stays a single file.
 *
 * @module
 */
/** Which of a participant's two transports a message is about. */
export type TransportKind = 'publish' | 'subscribe';
/** Media kind of a track, as the server names it. */
export type MediaKind = 'audio' | 'video';
/** Server-side transport state, as reported in `connectionState`. */
export type ServerConnectionState = 'new' | 'connecting' | 'connected' | 'failed' | 'closed';
/** Error codes the server puts in `error` messages. */
export type ServerErrorCode = 'bad_json' | 'bad_message' | 'not_joined' | 'already_joined' | 'bad_room' | 'bad_sdp' | 'unknown_track' | 'already_subscribed' | 'no_pending_offer' | 'bad_candidate' | 'unknown_data' | 'data_failed' | 'internal';
/** A track published in the room, as listed in `joined` and `trackPublished`. */
export interface TrackInfo {
    /** Server-assigned track id, unique in the room. */
    trackId: string;
    /** The publishing participant. */
    peerId: string;
    /** The publisher's display name. */
    name: string;
    /** Audio or video. */
    kind: MediaKind;
    /** Negotiated codec, for example `"VP8"` or `"opus"`. */
    codec: string;
}
/** One active m-section of a subscribe-transport offer. */
export interface OfferTrack {
    /** The m-section's `a=mid`. */
    mid: string;
    /** The room track carried in it. */
    trackId: string;
    /** Audio or video. */
    kind: MediaKind;
}
/**
 * A published data channel, as listed in `joined.dataPublishers`,
 * `dataPublished` and `dataPublisherAdded`: the parameters from the
 * publisher's DATA_CHANNEL_OPEN.
 */
export interface DataInfo {
    /** Server-assigned data channel id, unique in the room. */
    dataId: string;
    /** The publishing participant. */
    peerId: string;
    /** The publisher's display name. */
    name: string;
    /** The channel's label. */
    label: string;
    /** The channel's sub-protocol (often empty). */
    protocol: string;
    /** Whether messages arrive in order. */
    ordered: boolean;
    /** Retransmit limit of a partially reliable channel, else `null`. */
    maxRetransmits: number | null;
    /** Lifetime limit (ms) of a partially reliable channel, else `null`. */
    maxPacketLifeTime: number | null;
}
/** A data channel the server opens on the subscribe transport. */
export interface OfferData {
    /** The data channel subscribed to. */
    dataId: string;
    /** Its label. */
    label: string;
    /** SCTP stream id: the `RTCDataChannel.id` the browser will see. */
    streamId: number;
}
/** An ICE candidate in the protocol's JSON shape (`RTCIceCandidateInit`). */
export interface CandidateJson {
    /** The `candidate:` attribute line. */
    candidate: string;
    /** Media id the candidate belongs to. */
    sdpMid?: string | null;
    /** Index of the m-section it belongs to. */
    sdpMLineIndex?: number | null;
}
/** Messages the client sends. `id` is optional and echoed on the reply. */
export type ClientMessage = {
    type: 'join';
    id?: number;
    room: string;
    name?: string;
} | {
    type: 'publish';
    id?: number;
    sdp: string;
} | {
    type: 'unpublish';
    id?: number;
    trackId: string;
} | {
    type: 'subscribe';
    id?: number;
    trackId: string;
} | {
    type: 'unsubscribe';
    id?: number;
    trackId: string;
} | {
    type: 'answer';
    id?: number;
    sdp: string;
} | {
    type: 'candidate';
    id?: number;
    transport: TransportKind;
    candidate: CandidateJson | null;
} | {
    type: 'publishData';
    id?: number;
    label: string;
} | {
    type: 'subscribeData';
    id?: number;
    dataId: string;
} | {
    type: 'setPreferredLayers';
    id?: number;
    trackId: string;
    spatial: number;
    temporal: number;
} | {
    type: 'leave';
    id?: number;
};
/** Reply to `join`. */
export interface JoinedMessage {
    type: 'joined';
    id?: number;
    peerId: string;
    room: string;
    tracks: TrackInfo[];
    /** Data channels published in the room (absent from older servers). */
    dataPublishers?: DataInfo[];
}
/** Reply to `publish`. */
export interface AnswerMessage {
    type: 'answer';
    id?: number;
    transport: 'publish';
    sdp: string;
}
/** One of this participant's tracks reached the server. */
export interface PublishedMessage {
    type: 'published';
    trackId: string;
    mid: string;
    kind: MediaKind;
    codec: string;
}
/** Reply to `unpublish`. */
export interface UnpublishedMessage {
    type: 'unpublished';
    id?: number;
    trackId: string;
}
/** A server offer for the subscribe transport. */
export interface OfferMessage {
    type: 'offer';
    id?: number;
    sdp: string;
    tracks: OfferTrack[];
    /** Data channels the server opens on the subscribe transport. */
    data?: OfferData[];
}
/** Reply to `answer`. */
export interface AnswerAcceptedMessage {
    type: 'answerAccepted';
    id?: number;
}
/** Reply to `unsubscribe`. */
export interface UnsubscribedMessage {
    type: 'unsubscribed';
    id?: number;
    trackId: string;
}
/** A server ICE candidate. */
export interface ServerCandidateMessage {
    type: 'candidate';
    transport: TransportKind;
    candidate: CandidateJson | null;
}
/** Another participant's track went live. */
export interface TrackPublishedMessage extends TrackInfo {
    type: 'trackPublished';
}
/** A track ended. */
export interface TrackUnpublishedMessage {
    type: 'trackUnpublished';
    trackId: string;
}
/** A participant joined or left. */
export interface PeerMessage {
    type: 'peerJoined' | 'peerLeft';
    peerId: string;
    name: string;
}
/** Server-side transport state changed. */
export interface ConnectionStateMessage {
    type: 'connectionState';
    transport: TransportKind;
    state: ServerConnectionState;
}
/** A request failed; nothing changed on the server. */
export interface ErrorMessage {
    type: 'error';
    id?: number;
    code: ServerErrorCode | (string & {});
    message: string;
}
/** Reply to `publishData`: this participant's channel is published. */
export interface DataPublishedMessage extends DataInfo {
    type: 'dataPublished';
    id?: number;
}
/** Another participant published a data channel. */
export interface DataPublisherAddedMessage extends DataInfo {
    type: 'dataPublisherAdded';
}
/** A data channel ended. */
export interface DataPublisherRemovedMessage {
    type: 'dataPublisherRemoved';
    dataId: string;
}
/**
 * Video layers of a subscription: `spatial` is the simulcast encoding index
 * (0 = lowest resolution) or SVC spatial layer, `temporal` the temporal
 * layer. Both 0–3.
 */
export interface Layers {
    spatial: number;
    temporal: number;
}
/** Reply to `setPreferredLayers`: the preference is recorded (not yet applied). */
export interface PreferredLayersSetMessage extends Layers {
    type: 'preferredLayersSet';
    id?: number;
    trackId: string;
}
/** The layers the server forwards for a subscribed video track changed. */
export interface LayersChangedMessage extends Layers {
    type: 'layersChanged';
    trackId: string;
}
/** Messages the server sends. */
export type ServerMessage = JoinedMessage | AnswerMessage | PublishedMessage | UnpublishedMessage | OfferMessage | AnswerAcceptedMessage | UnsubscribedMessage | ServerCandidateMessage | TrackPublishedMessage | TrackUnpublishedMessage | PeerMessage | ConnectionStateMessage | ErrorMessage | DataPublishedMessage | DataPublisherAddedMessage | DataPublisherRemovedMessage | PreferredLayersSetMessage | LayersChangedMessage;
