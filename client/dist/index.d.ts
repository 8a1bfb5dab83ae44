/**
 * weir-client: browser side of the Weir SFU.
 *
 * - {@link PublishTransport} sends local tracks to the server (the browser offers).
 * - {@link SubscribeTransport} receives room tracks (the server offers).
 * - {@link Room} speaks the weir-server WebSocket protocol and drives both,
 *   media and data channels ({@link Room.publishData}, {@link Room.subscribeData}).
 *
 * weir-server embeds this file as-is and serves it at `/client/index.js`, so
 * it must import nothing at run time (type imports are erased).
 *
 * @module
 */
import type { DataInfo, Layers, OfferTrack, PublishedMessage, ServerMessage, TrackInfo, TransportKind } from './protocol.js';
export type * from './protocol.js';
/** Video codecs a publisher can ask for. */
export type VideoCodec = 'VP8' | 'VP9' | 'H264' | 'AV1';
/** All {@link VideoCodec} values, in the order the demo tries them. */
export declare const VIDEO_CODECS: readonly VideoCodec[];
/**
 * The encodings of a simulcast publication: three `rid`s, lowest resolution
 * first (`q` at 1/4, `h` at 1/2, `f` at full size), so that spatial layer
 * `i` of {@link Room.setPreferredLayers} is encoding `i`. A fresh array on
 * every call. Chromium sends all three only when capturing at 720p or more.
 */
export declare function simulcastEncodings(): RTCRtpEncodingParameters[];
/** The highest spatial or temporal layer index the server accepts. */
export declare const MAX_LAYER = 3;
/** Returns the value as a {@link VideoCodec} (case-insensitive), or `undefined`. */
export declare function parseVideoCodec(value: string | null | undefined): VideoCodec | undefined;
/**
 * A failure with a machine-readable `code`: the server's error code for
 * rejected requests (`bad_sdp`, `unknown_track`, …), or one of the client's
 * own (`timeout`, `closed`, `unsupported_codec`, `bad_server_message`,
 * `negotiation_failed`).
 */
export declare class WeirError extends Error {
    /** Machine-readable error code. */
    readonly code: string;
    /** The `id` of the request that failed, when there was one. */
    readonly requestId: number | undefined;
    /** Creates an error; the message reads `code: detail`. */
    constructor(code: string, detail: string, requestId?: number, options?: {
        cause?: unknown;
    });
}
/** A listener for one event type. */
export type Listener<T> = (event: T) => void;
/**
 * A tiny typed event emitter. `Events` maps event names to payload types.
 * A throwing listener does not stop the others; its error is reported to
 * the global error handler.
 */
export declare class Emitter<Events extends object> {
    #private;
    /** Adds a listener; returns a function that removes it. */
    on<K extends keyof Events>(type: K, listener: Listener<Events[K]>): () => void;
    /** Removes a listener added with {@link Emitter.on}. */
    off<K extends keyof Events>(type: K, listener: Listener<Events[K]>): void;
    /** Calls every listener of `type` with `event`, in the order they were added. */
    protected emit<K extends keyof Events>(type: K, event: Events[K]): void;
}
/**
 * Reorders codec capabilities so that every entry of `codec` (all its
 * profiles) comes first, keeping the browser's order otherwise.
 *
 * @throws {WeirError} `unsupported_codec` when the list has no such codec.
 */
export declare function preferCodec(codecs: readonly RTCRtpCodec[], codec: VideoCodec): RTCRtpCodec[];
/** True when this browser can both send and receive `codec`. */
export declare function browserSupportsCodec(codec: VideoCodec): boolean;
/** Events common to both transports. */
export interface TransportEvents {
    /** A local ICE candidate, or `null` when gathering is complete. */
    icecandidate: RTCIceCandidate | null;
    /** The peer connection's `connectionState` changed. */
    connectionstatechange: RTCPeerConnectionState;
}
/** The peer-connection settings both transports use unless given others. */
export declare const DEFAULT_RTC_CONFIGURATION: RTCConfiguration;
/** Options for {@link PublishTransport.publish}. */
export interface PublishOptions {
    /** Video codec to put first in the offer. Ignored for audio. */
    codec?: VideoCodec;
    /** Stream the track is announced in (`a=msid`); a shared default otherwise. */
    stream?: MediaStream;
    /** Encodings, for simulcast (`rid`s) or scalability modes. */
    sendEncodings?: RTCRtpEncodingParameters[];
}
/**
 * The client → server media transport: the browser offers, the server
 * answers.
 *
 * Calling order: {@link publish} one or more tracks, then
 * {@link createOffer}, send it, and pass the server's answer to
 * {@link setAnswer} (or call {@link rollback} if the server refused it).
 * Repeat for more tracks. Only one negotiation may be in flight.
 */
export declare class PublishTransport extends Emitter<TransportEvents> {
    #private;
    /** The underlying peer connection. */
    readonly pc: RTCPeerConnection;
    /** Creates the transport and its peer connection. */
    constructor(configuration?: RTCConfiguration);
    /**
     * Adds a send-only transceiver for `track`. For video with
     * `options.codec`, that codec is put first with `setCodecPreferences`.
     * Takes effect at the next {@link createOffer}.
     *
     * @throws {WeirError} `unsupported_codec` if the browser lacks the codec.
     */
    publish(track: MediaStreamTrack, options?: PublishOptions): RTCRtpTransceiver;
    /** Creates an offer, applies it locally and returns its SDP. */
    createOffer(): Promise<string>;
    /** Applies the server's answer to the last {@link createOffer}. */
    setAnswer(sdp: string): Promise<void>;
    /** Abandons an offer the server refused, so the transport can offer again. */
    rollback(): Promise<void>;
    /** Adds a server candidate (held until the answer is set); `null` ends them. */
    addIceCandidate(candidate: RTCIceCandidateInit | null): Promise<void>;
    /** Closes the peer connection. */
    close(): void;
}
/** Events of a {@link SubscribeTransport}. */
export interface SubscribeTransportEvents extends TransportEvents {
    /** A room track arrived on m-section `mid`. */
    track: {
        trackId: string;
        mid: string;
        track: MediaStreamTrack;
    };
    /** A room track is no longer in the server's offers. */
    trackremoved: {
        trackId: string;
        mid: string;
    };
    /** The server opened a data channel on SCTP stream `streamId`. */
    datachannel: {
        streamId: number;
        channel: RTCDataChannel;
    };
}
/** Resolves once `channel` is open; rejects if it closes first. */
export declare function channelOpen(channel: RTCDataChannel): Promise<RTCDataChannel>;
/**
 * The server → client media transport: the server offers (one m-section per
 * subscribed track), the browser answers.
 *
 * Offers are applied strictly one at a time, in the order
 * {@link setOffer} is called, and so are candidates queued behind them.
 */
export declare class SubscribeTransport extends Emitter<SubscribeTransportEvents> {
    #private;
    /** The underlying peer connection. */
    readonly pc: RTCPeerConnection;
    /** Creates the transport and its peer connection. */
    constructor(configuration?: RTCConfiguration);
    /**
     * Resolves with the data channel the server opens on SCTP stream
     * `streamId` (an `offer`'s `data[].streamId`) once it arrives. Rejects if
     * `signal` aborts or the transport closes first.
     */
    dataChannel(streamId: number, signal?: AbortSignal): Promise<RTCDataChannel>;
    /**
     * Applies a server offer and returns the answer SDP. `tracks` maps the
     * offer's active m-sections to room tracks. Queued behind earlier offers.
     */
    setOffer(sdp: string, tracks: readonly OfferTrack[]): Promise<string>;
    /** Adds a server candidate, after any offers already queued; `null` ends them. */
    addIceCandidate(candidate: RTCIceCandidateInit | null): Promise<void>;
    /**
     * Resolves with the track carrying room track `trackId` once it arrives.
     * Rejects if `signal` aborts or the transport closes first.
     */
    track(trackId: string, signal?: AbortSignal): Promise<MediaStreamTrack>;
    /** Room track ids currently received, with their m-section ids. */
    get tracks(): ReadonlyMap<string, {
        mid: string;
        track: MediaStreamTrack;
    }>;
    /** Closes the peer connection and rejects pending {@link track} calls. */
    close(): void;
}
/** Result of {@link parseServerMessage}. */
export type ParsedServerMessage = {
    ok: true;
    message: ServerMessage;
} | {
    ok: false;
    ignorable: boolean;
    reason: string;
};
/**
 * Parses one WebSocket text frame from the server. A message of a type this
 * client does not know is `ignorable` (newer servers may add some); a known
 * type with missing or mistyped fields is not.
 */
export declare function parseServerMessage(text: string): ParsedServerMessage;
/** Options for {@link Room.connect}. */
export interface RoomOptions {
    /** Peer-connection settings for both transports. */
    rtcConfiguration?: RTCConfiguration;
    /** How long a request waits for its reply. Default 10 000 ms. */
    requestTimeoutMs?: number;
    /** How long opening the WebSocket and joining may take. Default 10 000 ms. */
    connectTimeoutMs?: number;
}
/** Options for {@link Room.publish}. */
export interface RoomPublishOptions {
    /** Video codec to prefer for video tracks. */
    codec?: VideoCodec;
    /** Encodings for video tracks (simulcast or scalability modes). */
    videoEncodings?: RTCRtpEncodingParameters[];
    /**
     * Publish video as three simulcast encodings ({@link simulcastEncodings}).
     * Ignored when `videoEncodings` is given.
     */
    simulcast?: boolean;
}
/** A `layersChanged` event: what the server now forwards for a subscribed video track. */
export interface LayersChangedEvent extends Layers {
    /** The subscribed room track. */
    trackId: string;
}
/** A data channel this participant published: see {@link Room.publishData}. */
export interface DataPublication {
    /** Its id in the room (what others pass to {@link Room.subscribeData}). */
    dataId: string;
    /** The open channel: `send` on it reaches every subscriber. */
    channel: RTCDataChannel;
    /** What the server announced to the room. */
    info: DataInfo;
}
/** A transport state change, from the server's or the browser's view. */
export interface ConnectionStateEvent {
    /** Which transport. */
    transport: TransportKind;
    /** `server`: a `connectionState` message; `browser`: the local peer connection. */
    side: 'server' | 'browser';
    /** The new state. */
    state: string;
}
/** A participant in the room. */
export interface PeerInfo {
    /** Server-assigned participant id. */
    peerId: string;
    /** Display name (may be empty). */
    name: string;
}
/** Events of a {@link Room}. */
export interface RoomEvents {
    /** Another participant's track went live; {@link Room.subscribe} to receive it. */
    trackPublished: TrackInfo;
    /** A track ended. */
    trackUnpublished: {
        trackId: string;
    };
    /** One of this participant's tracks reached the server. */
    published: Omit<PublishedMessage, 'type'>;
    /** A participant joined. */
    peerJoined: PeerInfo;
    /** A participant left. */
    peerLeft: PeerInfo;
    /** Another participant published a data channel; {@link Room.subscribeData} to receive it. */
    dataPublisherAdded: DataInfo;
    /** A data channel ended. */
    dataPublisherRemoved: {
        dataId: string;
    };
    /** A failure not tied to a request the caller awaits. */
    error: WeirError;
    /** A transport's state changed. */
    connectionState: ConnectionStateEvent;
    /** The layers the server forwards for a subscribed video track changed (a switch completed). */
    layersChanged: LayersChangedEvent;
    /** The WebSocket closed; the room is unusable. */
    close: {
        code: number;
        reason: string;
    };
}
/**
 * A participant in a weir-server room, over one WebSocket.
 *
 * Server offers for the subscribe transport are answered automatically, in
 * order. Requests get numeric ids and resolve with their reply, or reject
 * with a {@link WeirError} carrying the server's error code.
 */
export declare class Room extends Emitter<RoomEvents> {
    #private;
    /** This participant's id. */
    readonly peerId: string;
    /** The room's name. */
    readonly room: string;
    /** Sends local media. */
    readonly publisher: PublishTransport;
    /** Receives room media. */
    readonly subscriber: SubscribeTransport;
    private constructor();
    /**
     * Opens a WebSocket to `url` (for example `ws://host/ws`), joins `room`
     * and resolves once the server replied `joined`.
     *
     * @throws {WeirError} the server's code (`bad_room`, …), or `timeout` / `closed`.
     */
    static connect(url: string, room: string, name?: string, options?: RoomOptions): Promise<Room>;
    /** Tracks other participants publish, as last heard from the server. */
    get remoteTracks(): TrackInfo[];
    /** Data channels other participants publish, as last heard from the server. */
    get remoteDataPublishers(): DataInfo[];
    /** Other participants heard of since joining. */
    get peers(): PeerInfo[];
    /**
     * Publishes every track of `source` in one offer and resolves once the
     * server's answer is applied. `published` events follow when media
     * reaches the server. Publishes run one at a time.
     */
    publish(source: MediaStream | readonly MediaStreamTrack[], options?: RoomPublishOptions): Promise<RTCRtpTransceiver[]>;
    /**
     * Stops publishing one of this participant's tracks (a `trackId` from a
     * `published` event). The local sender stops sending.
     */
    unpublish(trackId: string): Promise<void>;
    /**
     * Subscribes to another participant's track and resolves with it once the
     * server's offer is answered and the track has arrived.
     */
    subscribe(trackId: string): Promise<MediaStreamTrack>;
    /**
     * Opens a data channel `label` on the publish transport (renegotiating
     * the first time, to add the data channel m-section), waits for it to
     * open and publishes it. Every message sent on the returned channel
     * reaches every subscriber with its type. `options` are the browser's
     * (`ordered`, `maxRetransmits`, `maxPacketLifeTime`, `protocol`);
     * subscribers' channels get the same. Runs in turn with {@link publish}.
     *
     * @throws {WeirError} the server's code (`unknown_data`, `data_failed`, …),
     *   `negotiation_failed`, `timeout` or `closed`.
     */
    publishData(label: string, options?: RTCDataChannelInit): Promise<DataPublication>;
    /**
     * Subscribes to another participant's data channel and resolves with the
     * channel the server opens toward this participant, once open. It has
     * the publisher's label and parameters; add a `message` listener right
     * away (in the same task) to see every message.
     *
     * @throws {WeirError} the server's code (`unknown_data`, `already_subscribed`, …),
     *   `timeout` or `closed`.
     */
    subscribeData(dataId: string): Promise<RTCDataChannel>;
    /** Ends a subscription. The server follows up with a new offer, answered automatically. */
    unsubscribe(trackId: string): Promise<void>;
    /**
     * Asks the server to forward these layers of a subscribed video track:
     * `spatial` is the simulcast encoding index (0 = lowest resolution) or
     * SVC spatial layer, `temporal` the temporal layer, each 0–3 (higher
     * than the track has means its highest). Resolves once the server
     * recorded the preference; the switch itself follows (an up-switch waits
     * for a keyframe, and the bandwidth estimate may hold the track lower)
     * and is announced by a `layersChanged` event.
     *
     * @throws {WeirError} `unknown_track` if not subscribed to `trackId`,
     *   `bad_message` for values out of range, `timeout` or `closed`.
     */
    setPreferredLayers(trackId: string, spatial: number, temporal: number): Promise<Layers>;
    /** The layers last announced for a subscribed video track, if any. */
    currentLayers(trackId: string): Layers | undefined;
    /** Leaves the room and closes both transports and the socket. */
    leave(): Promise<void>;
}
/** Rejects with a `timeout` {@link WeirError} if `promise` takes longer than `ms`. */
export declare function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T>;
