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
/** All {@link VideoCodec} values, in the order the demo tries them. */
export const VIDEO_CODECS = ['VP8', 'VP9', 'H264', 'AV1'];
/**
 * The encodings of a simulcast publication: three `rid`s, lowest resolution
 * first (`q` at 1/4, `h` at 1/2, `f` at full size), so that spatial layer
 * `i` of {@link Room.setPreferredLayers} is encoding `i`. A fresh array on
 * every call. Chromium sends all three only when capturing at 720p or more.
 */
export function simulcastEncodings() {
    return [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }];
}
/** The highest spatial or temporal layer index the server accepts. */
export const MAX_LAYER = 3;
/** Returns the value as a {@link VideoCodec} (case-insensitive), or `undefined`. */
export function parseVideoCodec(value) {
    const upper = value?.toUpperCase();
    return VIDEO_CODECS.find((c) => c === upper);
}
// ---------------------------------------------------------------------------
// Errors
/**
 * A failure with a machine-readable `code`: the server's error code for
 * rejected requests (`bad_sdp`, `unknown_track`, …), or one of the client's
 * own (`timeout`, `closed`, `unsupported_codec`, `bad_server_message`,
 * `negotiation_failed`).
 */
export class WeirError extends Error {
    /** Machine-readable error code. */
    code;
    /** The `id` of the request that failed, when there was one. */
    requestId;
    /** Creates an error; the message reads `code: detail`. */
    constructor(code, detail, requestId, options) {
        super(`${code}: ${detail}`, options);
        this.name = 'WeirError';
        this.code = code;
        this.requestId = requestId;
    }
}
function asWeirError(err, code) {
    if (err instanceof WeirError)
        return err;
    const detail = err instanceof Error ? err.message : String(err);
    return new WeirError(code, detail, undefined, { cause: err });
}
/**
 * A tiny typed event emitter. `Events` maps event names to payload types.
 * A throwing listener does not stop the others; its error is reported to
 * the global error handler.
 */
export class Emitter {
    #listeners = new Map();
    /** Adds a listener; returns a function that removes it. */
    on(type, listener) {
        let set = this.#listeners.get(type);
        if (set === undefined) {
            set = new Set();
            this.#listeners.set(type, set);
        }
        set.add(listener);
        return () => {
            this.off(type, listener);
        };
    }
    /** Removes a listener added with {@link Emitter.on}. */
    off(type, listener) {
        this.#listeners.get(type)?.delete(listener);
    }
    /** Calls every listener of `type` with `event`, in the order they were added. */
    emit(type, event) {
        const set = this.#listeners.get(type);
        if (set === undefined)
            return;
        for (const listener of [...set]) {
            try {
                listener(event);
            }
            catch (err) {
                reportUncaught(err);
            }
        }
    }
}
function reportUncaught(err) {
    // Rethrown from a fresh task, so the page's error handlers see it and the
    // emitting code carries on.
    setTimeout(() => {
        throw err;
    }, 0);
}
// ---------------------------------------------------------------------------
// Codec preferences
/**
 * Reorders codec capabilities so that every entry of `codec` (all its
 * profiles) comes first, keeping the browser's order otherwise.
 *
 * @throws {WeirError} `unsupported_codec` when the list has no such codec.
 */
export function preferCodec(codecs, codec) {
    const mimeType = `video/${codec}`.toLowerCase();
    const matches = (c) => c.mimeType.toLowerCase() === mimeType;
    const chosen = codecs.filter(matches);
    if (chosen.length === 0) {
        throw new WeirError('unsupported_codec', `this browser has no ${codec} codec`);
    }
    return [...chosen, ...codecs.filter((c) => !matches(c))];
}
/** True when this browser can both send and receive `codec`. */
export function browserSupportsCodec(codec) {
    const mimeType = `video/${codec}`.toLowerCase();
    const has = (caps) => caps?.codecs.some((c) => c.mimeType.toLowerCase() === mimeType) ?? false;
    return has(RTCRtpSender.getCapabilities('video')) && has(RTCRtpReceiver.getCapabilities('video'));
}
/** The peer-connection settings both transports use unless given others. */
export const DEFAULT_RTC_CONFIGURATION = {
    bundlePolicy: 'max-bundle',
    rtcpMuxPolicy: 'require',
    iceServers: [],
};
/**
 * Remote ICE candidates that arrive before the remote description are held
 * and added once it is set.
 */
class CandidateBuffer {
    pc;
    #held = [];
    constructor(pc) {
        this.pc = pc;
    }
    async add(candidate) {
        if (this.pc.remoteDescription === null) {
            this.#held.push(candidate);
            return;
        }
        await this.pc.addIceCandidate(candidate ?? undefined);
    }
    async flush() {
        const held = this.#held;
        this.#held = [];
        for (const candidate of held) {
            await this.pc.addIceCandidate(candidate ?? undefined);
        }
    }
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
export class PublishTransport extends Emitter {
    /** The underlying peer connection. */
    pc;
    #candidates;
    #defaultStream;
    /** Creates the transport and its peer connection. */
    constructor(configuration = DEFAULT_RTC_CONFIGURATION) {
        super();
        this.pc = new RTCPeerConnection(configuration);
        this.#candidates = new CandidateBuffer(this.pc);
        this.#defaultStream = new MediaStream();
        this.pc.addEventListener('icecandidate', (ev) => {
            this.emit('icecandidate', ev.candidate);
        });
        this.pc.addEventListener('connectionstatechange', () => {
            this.emit('connectionstatechange', this.pc.connectionState);
        });
    }
    /**
     * Adds a send-only transceiver for `track`. For video with
     * `options.codec`, that codec is put first with `setCodecPreferences`.
     * Takes effect at the next {@link createOffer}.
     *
     * @throws {WeirError} `unsupported_codec` if the browser lacks the codec.
     */
    publish(track, options = {}) {
        const init = {
            direction: 'sendonly',
            streams: [options.stream ?? this.#defaultStream],
        };
        if (options.sendEncodings !== undefined)
            init.sendEncodings = options.sendEncodings;
        const codec = options.codec;
        // Check before adding, so an unsupported codec leaves no transceiver behind.
        const preferences = track.kind === 'video' && codec !== undefined ? codecPreferences(codec) : undefined;
        const transceiver = this.pc.addTransceiver(track, init);
        if (preferences !== undefined) {
            transceiver.setCodecPreferences(preferences);
        }
        return transceiver;
    }
    /** Creates an offer, applies it locally and returns its SDP. */
    async createOffer() {
        const offer = await this.pc.createOffer();
        await this.pc.setLocalDescription(offer);
        return this.pc.localDescription?.sdp ?? offer.sdp ?? '';
    }
    /** Applies the server's answer to the last {@link createOffer}. */
    async setAnswer(sdp) {
        await this.pc.setRemoteDescription({ type: 'answer', sdp });
        await this.#candidates.flush();
    }
    /** Abandons an offer the server refused, so the transport can offer again. */
    async rollback() {
        if (this.pc.signalingState === 'have-local-offer') {
            await this.pc.setLocalDescription({ type: 'rollback' });
        }
    }
    /** Adds a server candidate (held until the answer is set); `null` ends them. */
    async addIceCandidate(candidate) {
        await this.#candidates.add(candidate);
    }
    /** Closes the peer connection. */
    close() {
        this.pc.close();
    }
}
function codecPreferences(codec) {
    // setCodecPreferences accepts the receiver's codecs; the sender's are a
    // fallback for browsers that check against those instead.
    const caps = RTCRtpReceiver.getCapabilities('video') ?? RTCRtpSender.getCapabilities('video');
    return preferCodec(caps?.codecs ?? [], codec);
}
/** Resolves once `channel` is open; rejects if it closes first. */
export function channelOpen(channel) {
    if (channel.readyState === 'open')
        return Promise.resolve(channel);
    if (channel.readyState === 'closing' || channel.readyState === 'closed') {
        return Promise.reject(new WeirError('closed', `data channel "${channel.label}" closed`));
    }
    return new Promise((resolve, reject) => {
        const onOpen = () => {
            channel.removeEventListener('close', onClose);
            resolve(channel);
        };
        const onClose = () => {
            channel.removeEventListener('open', onOpen);
            reject(new WeirError('closed', `data channel "${channel.label}" closed before opening`));
        };
        channel.addEventListener('open', onOpen, { once: true });
        channel.addEventListener('close', onClose, { once: true });
    });
}
/**
 * The server → client media transport: the server offers (one m-section per
 * subscribed track), the browser answers.
 *
 * Offers are applied strictly one at a time, in the order
 * {@link setOffer} is called, and so are candidates queued behind them.
 */
export class SubscribeTransport extends Emitter {
    /** The underlying peer connection. */
    pc;
    #candidates;
    #queue = Promise.resolve();
    /** The m-sections of the offer being applied or last applied. */
    #byMid = new Map();
    /** Tracks that arrived, by room track id. */
    #live = new Map();
    #waiters = new Map();
    /** Data channels the server opened, by SCTP stream id. */
    #dataChannels = new Map();
    #dataWaiters = new Map();
    #closed = false;
    /** Creates the transport and its peer connection. */
    constructor(configuration = DEFAULT_RTC_CONFIGURATION) {
        super();
        this.pc = new RTCPeerConnection(configuration);
        this.#candidates = new CandidateBuffer(this.pc);
        this.pc.addEventListener('icecandidate', (ev) => {
            this.emit('icecandidate', ev.candidate);
        });
        this.pc.addEventListener('connectionstatechange', () => {
            this.emit('connectionstatechange', this.pc.connectionState);
        });
        this.pc.addEventListener('track', (ev) => {
            const mid = ev.transceiver.mid;
            const info = mid === null ? undefined : this.#byMid.get(mid);
            if (info !== undefined)
                this.#arrived(info, ev.track);
        });
        this.pc.addEventListener('datachannel', (ev) => {
            const channel = ev.channel;
            if (channel.id === null)
                return;
            this.#dataChannels.set(channel.id, channel);
            const waiters = this.#dataWaiters.get(channel.id);
            this.#dataWaiters.delete(channel.id);
            if (waiters !== undefined)
                for (const w of waiters)
                    w.resolve(channel);
            this.emit('datachannel', { streamId: channel.id, channel });
        });
    }
    /**
     * Resolves with the data channel the server opens on SCTP stream
     * `streamId` (an `offer`'s `data[].streamId`) once it arrives. Rejects if
     * `signal` aborts or the transport closes first.
     */
    dataChannel(streamId, signal) {
        const known = this.#dataChannels.get(streamId);
        if (known !== undefined)
            return Promise.resolve(known);
        if (this.#closed)
            return Promise.reject(new WeirError('closed', 'transport is closed'));
        return new Promise((resolve, reject) => {
            if (signal?.aborted === true) {
                reject(abortReason(signal));
                return;
            }
            let set = this.#dataWaiters.get(streamId);
            if (set === undefined) {
                set = new Set();
                this.#dataWaiters.set(streamId, set);
            }
            const waiter = {
                resolve: (channel) => {
                    signal?.removeEventListener('abort', onAbort);
                    resolve(channel);
                },
                reject,
            };
            const onAbort = () => {
                set.delete(waiter);
                reject(abortReason(signal));
            };
            signal?.addEventListener('abort', onAbort, { once: true });
            set.add(waiter);
        });
    }
    /**
     * Applies a server offer and returns the answer SDP. `tracks` maps the
     * offer's active m-sections to room tracks. Queued behind earlier offers.
     */
    setOffer(sdp, tracks) {
        return this.#enqueue(() => this.#applyOffer(sdp, tracks));
    }
    /** Adds a server candidate, after any offers already queued; `null` ends them. */
    addIceCandidate(candidate) {
        return this.#enqueue(() => this.#candidates.add(candidate));
    }
    /**
     * Resolves with the track carrying room track `trackId` once it arrives.
     * Rejects if `signal` aborts or the transport closes first.
     */
    track(trackId, signal) {
        const live = this.#live.get(trackId);
        if (live !== undefined)
            return Promise.resolve(live.track);
        if (this.#closed)
            return Promise.reject(new WeirError('closed', 'transport is closed'));
        return new Promise((resolve, reject) => {
            if (signal?.aborted === true) {
                reject(abortReason(signal));
                return;
            }
            let set = this.#waiters.get(trackId);
            if (set === undefined) {
                set = new Set();
                this.#waiters.set(trackId, set);
            }
            const waiter = {
                resolve: (track) => {
                    signal?.removeEventListener('abort', onAbort);
                    resolve(track);
                },
                reject,
            };
            const onAbort = () => {
                set.delete(waiter);
                reject(abortReason(signal));
            };
            signal?.addEventListener('abort', onAbort, { once: true });
            set.add(waiter);
        });
    }
    /** Room track ids currently received, with their m-section ids. */
    get tracks() {
        return this.#live;
    }
    /** Closes the peer connection and rejects pending {@link track} calls. */
    close() {
        this.#closed = true;
        this.pc.close();
        const err = new WeirError('closed', 'transport is closed');
        for (const set of this.#waiters.values())
            for (const w of set)
                w.reject(err);
        this.#waiters.clear();
        for (const set of this.#dataWaiters.values())
            for (const w of set)
                w.reject(err);
        this.#dataWaiters.clear();
    }
    #enqueue(work) {
        const result = this.#queue.then(work);
        this.#queue = result.catch(() => undefined);
        return result;
    }
    async #applyOffer(sdp, tracks) {
        if (this.#closed)
            throw new WeirError('closed', 'transport is closed');
        const previous = this.#byMid;
        // Set before setRemoteDescription: `track` events fire inside it.
        this.#byMid = new Map(tracks.map((t) => [t.mid, t]));
        try {
            await this.pc.setRemoteDescription({ type: 'offer', sdp });
        }
        catch (err) {
            this.#byMid = previous;
            throw asWeirError(err, 'negotiation_failed');
        }
        await this.#candidates.flush();
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        for (const [trackId, live] of [...this.#live]) {
            if (this.#byMid.get(live.mid)?.trackId !== trackId) {
                this.#live.delete(trackId);
                this.emit('trackremoved', { trackId, mid: live.mid });
            }
        }
        // A reused m-section may bring a new room track without a `track` event.
        for (const info of tracks) {
            if (this.#live.has(info.trackId))
                continue;
            const transceiver = this.pc.getTransceivers().find((t) => t.mid === info.mid);
            if (transceiver !== undefined)
                this.#arrived(info, transceiver.receiver.track);
        }
        return this.pc.localDescription?.sdp ?? answer.sdp ?? '';
    }
    #arrived(info, track) {
        const live = this.#live.get(info.trackId);
        if (live?.track === track)
            return;
        this.#live.set(info.trackId, { mid: info.mid, track });
        const waiters = this.#waiters.get(info.trackId);
        this.#waiters.delete(info.trackId);
        if (waiters !== undefined)
            for (const w of waiters)
                w.resolve(track);
        this.emit('track', { trackId: info.trackId, mid: info.mid, track });
    }
}
function abortReason(signal) {
    const reason = signal?.reason;
    return reason instanceof Error ? reason : new WeirError('aborted', 'the wait was aborted');
}
function isObject(value) {
    return typeof value === 'object' && value !== null && !Array.isArray(value);
}
const isString = (v) => typeof v === 'string';
const isKind = (v) => v === 'audio' || v === 'video';
const isTransport = (v) => v === 'publish' || v === 'subscribe';
function isTrackInfo(v) {
    return (isObject(v) &&
        isString(v['trackId']) &&
        isString(v['peerId']) &&
        isKind(v['kind']) &&
        (v['name'] === undefined || isString(v['name'])) &&
        (v['codec'] === undefined || isString(v['codec'])));
}
function isOfferTrack(v) {
    return isObject(v) && isString(v['mid']) && isString(v['trackId']) && isKind(v['kind']);
}
const isNumberOrNull = (v) => v === null || typeof v === 'number';
const isLayer = (v) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
function isDataInfo(v) {
    return (isObject(v) &&
        isString(v['dataId']) &&
        isString(v['peerId']) &&
        isString(v['label']) &&
        typeof v['ordered'] === 'boolean' &&
        (v['name'] === undefined || isString(v['name'])) &&
        (v['protocol'] === undefined || isString(v['protocol'])) &&
        (v['maxRetransmits'] === undefined || isNumberOrNull(v['maxRetransmits'])) &&
        (v['maxPacketLifeTime'] === undefined || isNumberOrNull(v['maxPacketLifeTime'])));
}
function isOfferData(v) {
    return isObject(v) && isString(v['dataId']) && isString(v['label']) && typeof v['streamId'] === 'number';
}
function isCandidate(v) {
    return v === null || (isObject(v) && isString(v['candidate']));
}
const SHAPES = {
    joined: (m) => isString(m['peerId']) &&
        isString(m['room']) &&
        Array.isArray(m['tracks']) &&
        m['tracks'].every(isTrackInfo) &&
        (m['dataPublishers'] === undefined || (Array.isArray(m['dataPublishers']) && m['dataPublishers'].every(isDataInfo))),
    answer: (m) => m['transport'] === 'publish' && isString(m['sdp']),
    published: (m) => isString(m['trackId']) && isString(m['mid']) && isKind(m['kind']),
    unpublished: (m) => isString(m['trackId']),
    offer: (m) => isString(m['sdp']) &&
        Array.isArray(m['tracks']) &&
        m['tracks'].every(isOfferTrack) &&
        (m['data'] === undefined || (Array.isArray(m['data']) && m['data'].every(isOfferData))),
    answerAccepted: () => true,
    unsubscribed: (m) => isString(m['trackId']),
    candidate: (m) => isTransport(m['transport']) && isCandidate(m['candidate']),
    trackPublished: (m) => isTrackInfo(m),
    trackUnpublished: (m) => isString(m['trackId']),
    peerJoined: (m) => isString(m['peerId']),
    peerLeft: (m) => isString(m['peerId']),
    connectionState: (m) => isTransport(m['transport']) && isString(m['state']),
    error: (m) => isString(m['code']),
    dataPublished: (m) => isDataInfo(m),
    dataPublisherAdded: (m) => isDataInfo(m),
    dataPublisherRemoved: (m) => isString(m['dataId']),
    preferredLayersSet: (m) => isString(m['trackId']) && isLayer(m['spatial']) && isLayer(m['temporal']),
    layersChanged: (m) => isString(m['trackId']) && isLayer(m['spatial']) && isLayer(m['temporal']),
};
/**
 * Parses one WebSocket text frame from the server. A message of a type this
 * client does not know is `ignorable` (newer servers may add some); a known
 * type with missing or mistyped fields is not.
 */
export function parseServerMessage(text) {
    let value;
    try {
        value = JSON.parse(text);
    }
    catch {
        return { ok: false, ignorable: false, reason: 'not JSON' };
    }
    if (!isObject(value) || !isString(value['type'])) {
        return { ok: false, ignorable: false, reason: 'not an object with a string "type"' };
    }
    const type = value['type'];
    const shape = SHAPES[type];
    if (shape === undefined)
        return { ok: false, ignorable: true, reason: `unknown type "${type}"` };
    if (value['id'] !== undefined && value['id'] !== null && typeof value['id'] !== 'number') {
        return { ok: false, ignorable: false, reason: `"${type}" has a non-numeric id` };
    }
    if (!shape(value))
        return { ok: false, ignorable: false, reason: `"${type}" is missing fields` };
    return { ok: true, message: value };
}
/**
 * A participant in a weir-server room, over one WebSocket.
 *
 * Server offers for the subscribe transport are answered automatically, in
 * order. Requests get numeric ids and resolve with their reply, or reject
 * with a {@link WeirError} carrying the server's error code.
 */
export class Room extends Emitter {
    /** This participant's id. */
    peerId;
    /** The room's name. */
    room;
    /** Sends local media. */
    publisher;
    /** Receives room media. */
    subscriber;
    #socket;
    #requestTimeoutMs;
    #pending = new Map();
    #remoteTracks = new Map();
    #remoteData = new Map();
    #peers = new Map();
    /** Own tracks the server announced with `published`, by track id. */
    #ownTracks = new Map();
    /** Current layers of subscribed video tracks, from `layersChanged`. */
    #layers = new Map();
    #nextId = 1;
    #publishChain = Promise.resolve();
    #closed = false;
    constructor(socket, joined, options, nextId) {
        super();
        this.#socket = socket;
        this.#nextId = nextId;
        this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
        this.peerId = joined.peerId;
        this.room = joined.room;
        for (const t of joined.tracks)
            this.#remoteTracks.set(t.trackId, t);
        for (const d of joined.dataPublishers ?? [])
            this.#remoteData.set(d.dataId, d);
        const config = options.rtcConfiguration ?? DEFAULT_RTC_CONFIGURATION;
        this.publisher = new PublishTransport(config);
        this.subscriber = new SubscribeTransport(config);
        this.#wireTransport('publish', this.publisher);
        this.#wireTransport('subscribe', this.subscriber);
        socket.addEventListener('message', (ev) => {
            if (typeof ev.data === 'string')
                this.#onMessage(ev.data);
        });
        socket.addEventListener('close', (ev) => {
            this.#onClose(ev.code, ev.reason);
        });
    }
    /**
     * Opens a WebSocket to `url` (for example `ws://host/ws`), joins `room`
     * and resolves once the server replied `joined`.
     *
     * @throws {WeirError} the server's code (`bad_room`, …), or `timeout` / `closed`.
     */
    static async connect(url, room, name, options = {}) {
        const timeoutMs = options.connectTimeoutMs ?? 10_000;
        const socket = new WebSocket(url);
        try {
            const joined = await withTimeout(join(socket, room, name), timeoutMs, 'joining the room');
            return new Room(socket, joined, options, 2);
        }
        catch (err) {
            socket.close();
            throw asWeirError(err, 'closed');
        }
    }
    /** Tracks other participants publish, as last heard from the server. */
    get remoteTracks() {
        return [...this.#remoteTracks.values()];
    }
    /** Data channels other participants publish, as last heard from the server. */
    get remoteDataPublishers() {
        return [...this.#remoteData.values()];
    }
    /** Other participants heard of since joining. */
    get peers() {
        return [...this.#peers.values()];
    }
    /**
     * Publishes every track of `source` in one offer and resolves once the
     * server's answer is applied. `published` events follow when media
     * reaches the server. Publishes run one at a time.
     */
    publish(source, options = {}) {
        const run = async () => {
            const stream = source instanceof MediaStream ? source : new MediaStream([...source]);
            const transceivers = [];
            try {
                for (const track of stream.getTracks()) {
                    const opts = { stream };
                    if (track.kind === 'video') {
                        if (options.codec !== undefined)
                            opts.codec = options.codec;
                        if (options.videoEncodings !== undefined)
                            opts.sendEncodings = options.videoEncodings;
                        else if (options.simulcast === true)
                            opts.sendEncodings = simulcastEncodings();
                    }
                    transceivers.push(this.publisher.publish(track, opts));
                }
                const offer = await this.publisher.createOffer();
                const answer = await this.#request({ type: 'publish', sdp: offer }, 'answer');
                await this.publisher.setAnswer(answer.sdp);
                return transceivers;
            }
            catch (err) {
                await this.publisher.rollback().catch(() => undefined);
                for (const t of transceivers)
                    t.stop();
                throw asWeirError(err, 'negotiation_failed');
            }
        };
        const result = this.#publishChain.then(run);
        this.#publishChain = result.catch(() => undefined);
        return result;
    }
    /**
     * Stops publishing one of this participant's tracks (a `trackId` from a
     * `published` event). The local sender stops sending.
     */
    async unpublish(trackId) {
        await this.#request({ type: 'unpublish', trackId }, 'unpublished');
        const own = this.#ownTracks.get(trackId);
        this.#ownTracks.delete(trackId);
        const transceiver = own === undefined ? undefined : this.publisher.pc.getTransceivers().find((t) => t.mid === own.mid);
        await transceiver?.sender.replaceTrack(null);
    }
    /**
     * Subscribes to another participant's track and resolves with it once the
     * server's offer is answered and the track has arrived.
     */
    async subscribe(trackId) {
        const abort = new AbortController();
        const track = this.subscriber.track(trackId, abort.signal);
        track.catch(() => undefined); // awaited below; this only silences the abort path
        try {
            await this.#request({ type: 'subscribe', trackId }, 'offer');
            return await withTimeout(track, this.#requestTimeoutMs, `track ${trackId} to arrive`);
        }
        catch (err) {
            abort.abort(err);
            throw err;
        }
    }
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
    publishData(label, options = {}) {
        const run = async () => {
            const channel = this.publisher.pc.createDataChannel(label, options);
            try {
                if (!(this.publisher.pc.localDescription?.sdp.includes('\nm=application ') ?? false)) {
                    const offer = await this.publisher.createOffer();
                    const answer = await this.#request({ type: 'publish', sdp: offer }, 'answer');
                    await this.publisher.setAnswer(answer.sdp);
                }
                await withTimeout(channelOpen(channel), this.#requestTimeoutMs, `data channel "${label}" to open`);
                const reply = await this.#request({ type: 'publishData', label }, 'dataPublished');
                const { type: _type, id: _id, ...info } = reply;
                return { dataId: info.dataId, channel, info };
            }
            catch (err) {
                await this.publisher.rollback().catch(() => undefined);
                channel.close();
                throw asWeirError(err, 'negotiation_failed');
            }
        };
        const result = this.#publishChain.then(run);
        this.#publishChain = result.catch(() => undefined);
        return result;
    }
    /**
     * Subscribes to another participant's data channel and resolves with the
     * channel the server opens toward this participant, once open. It has
     * the publisher's label and parameters; add a `message` listener right
     * away (in the same task) to see every message.
     *
     * @throws {WeirError} the server's code (`unknown_data`, `already_subscribed`, …),
     *   `timeout` or `closed`.
     */
    async subscribeData(dataId) {
        const offer = await this.#request({ type: 'subscribeData', dataId }, 'offer');
        const entry = offer.data?.find((d) => d.dataId === dataId);
        if (entry === undefined) {
            throw new WeirError('bad_server_message', `the offer for data channel ${dataId} does not list it`);
        }
        const channel = await withTimeout(this.subscriber.dataChannel(entry.streamId), this.#requestTimeoutMs, `data channel ${dataId} to arrive`);
        return withTimeout(channelOpen(channel), this.#requestTimeoutMs, `data channel ${dataId} to open`);
    }
    /** Ends a subscription. The server follows up with a new offer, answered automatically. */
    async unsubscribe(trackId) {
        await this.#request({ type: 'unsubscribe', trackId }, 'unsubscribed');
        this.#layers.delete(trackId);
    }
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
    async setPreferredLayers(trackId, spatial, temporal) {
        const reply = await this.#request({ type: 'setPreferredLayers', trackId, spatial, temporal }, 'preferredLayersSet');
        return { spatial: reply.spatial, temporal: reply.temporal };
    }
    /** The layers last announced for a subscribed video track, if any. */
    currentLayers(trackId) {
        const layers = this.#layers.get(trackId);
        return layers === undefined ? undefined : { ...layers };
    }
    /** Leaves the room and closes both transports and the socket. */
    async leave() {
        if (this.#closed)
            return;
        this.#send({ type: 'leave' });
        const closed = new Promise((resolve) => {
            this.#socket.addEventListener('close', () => {
                resolve();
            });
        });
        await withTimeout(closed, 2_000, 'the server to close the socket').catch(() => undefined);
        this.#socket.close();
        this.#onClose(1000, 'left');
    }
    #wireTransport(kind, transport) {
        transport.on('icecandidate', (c) => {
            const candidate = c === null ? null : { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
            this.#send({ type: 'candidate', transport: kind, candidate });
        });
        transport.on('connectionstatechange', (state) => {
            this.emit('connectionState', { transport: kind, side: 'browser', state });
        });
    }
    #request(message, expect) {
        if (this.#closed)
            return Promise.reject(new WeirError('closed', 'the room is closed'));
        const id = this.#nextId++;
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.#pending.delete(id);
                reject(new WeirError('timeout', `no reply to ${message.type} within ${String(this.#requestTimeoutMs)} ms`, id));
            }, this.#requestTimeoutMs);
            this.#pending.set(id, {
                expect,
                resolve: (m) => {
                    resolve(m);
                },
                reject,
                timer,
            });
            this.#send({ ...message, id });
        });
    }
    #send(message) {
        if (this.#socket.readyState === WebSocket.OPEN)
            this.#socket.send(JSON.stringify(message));
    }
    #onMessage(text) {
        const parsed = parseServerMessage(text);
        if (!parsed.ok) {
            if (!parsed.ignorable)
                this.emit('error', new WeirError('bad_server_message', parsed.reason));
            return;
        }
        const message = parsed.message;
        this.#dispatch(message);
        const id = 'id' in message ? message.id : undefined;
        const pending = id === undefined ? undefined : this.#pending.get(id);
        if (pending === undefined || id === undefined) {
            if (message.type === 'error')
                this.emit('error', serverError(message));
            return;
        }
        if (message.type === 'error') {
            this.#settle(id, pending);
            pending.reject(serverError(message));
        }
        else if (message.type === pending.expect) {
            this.#settle(id, pending);
            pending.resolve(message);
        }
    }
    #settle(id, pending) {
        clearTimeout(pending.timer);
        this.#pending.delete(id);
    }
    #dispatch(message) {
        switch (message.type) {
            case 'offer':
                this.#answerOffer(message);
                break;
            case 'candidate': {
                const transport = message.transport === 'publish' ? this.publisher : this.subscriber;
                // The server's candidates are in its SDP too, so a failure here is
                // not fatal (e.g. a candidate for an m-section not yet offered).
                transport.addIceCandidate(message.candidate).catch(() => undefined);
                break;
            }
            case 'trackPublished': {
                const { type: _type, ...info } = message;
                this.#remoteTracks.set(info.trackId, info);
                this.emit('trackPublished', info);
                break;
            }
            case 'layersChanged': {
                const layers = { spatial: message.spatial, temporal: message.temporal };
                this.#layers.set(message.trackId, layers);
                this.emit('layersChanged', { trackId: message.trackId, ...layers });
                break;
            }
            case 'trackUnpublished':
                this.#remoteTracks.delete(message.trackId);
                this.#layers.delete(message.trackId);
                this.emit('trackUnpublished', { trackId: message.trackId });
                break;
            case 'dataPublisherAdded': {
                const { type: _type, ...info } = message;
                this.#remoteData.set(info.dataId, info);
                this.emit('dataPublisherAdded', info);
                break;
            }
            case 'dataPublisherRemoved':
                this.#remoteData.delete(message.dataId);
                this.emit('dataPublisherRemoved', { dataId: message.dataId });
                break;
            case 'published': {
                const { type: _type, ...info } = message;
                this.#ownTracks.set(info.trackId, info);
                this.emit('published', info);
                break;
            }
            case 'peerJoined':
            case 'peerLeft': {
                const peer = { peerId: message.peerId, name: message.name };
                if (message.type === 'peerJoined')
                    this.#peers.set(peer.peerId, peer);
                else
                    this.#peers.delete(peer.peerId);
                this.emit(message.type, peer);
                break;
            }
            case 'connectionState':
                this.emit('connectionState', { transport: message.transport, side: 'server', state: message.state });
                break;
            default:
                break;
        }
    }
    #answerOffer(offer) {
        this.subscriber
            .setOffer(offer.sdp, offer.tracks)
            .then((sdp) => this.#request({ type: 'answer', sdp }, 'answerAccepted'))
            .catch((err) => {
            this.emit('error', asWeirError(err, 'negotiation_failed'));
        });
    }
    #onClose(code, reason) {
        if (this.#closed)
            return;
        this.#closed = true;
        const err = new WeirError('closed', `socket closed (${String(code)}${reason === '' ? '' : `: ${reason}`})`);
        for (const [id, pending] of [...this.#pending]) {
            this.#settle(id, pending);
            pending.reject(err);
        }
        this.publisher.close();
        this.subscriber.close();
        this.emit('close', { code, reason });
    }
}
function serverError(message) {
    return new WeirError(message.code, message.message, message.id);
}
/** Opens `socket` and sends `join` with id 1; resolves with the `joined` reply. */
function join(socket, room, name) {
    return new Promise((resolve, reject) => {
        const cleanup = () => {
            socket.removeEventListener('open', onOpen);
            socket.removeEventListener('message', onMessage);
            socket.removeEventListener('close', onClose);
        };
        const onOpen = () => {
            const message = name === undefined ? { type: 'join', id: 1, room } : { type: 'join', id: 1, room, name };
            socket.send(JSON.stringify(message));
        };
        const onMessage = (ev) => {
            if (typeof ev.data !== 'string')
                return;
            const parsed = parseServerMessage(ev.data);
            if (!parsed.ok)
                return;
            const m = parsed.message;
            if (m.type === 'joined' && m.id === 1) {
                cleanup();
                resolve(m);
            }
            else if (m.type === 'error' && m.id === 1) {
                cleanup();
                reject(serverError(m));
            }
        };
        const onClose = (ev) => {
            cleanup();
            reject(new WeirError('closed', `socket closed before joining (${String(ev.code)})`));
        };
        socket.addEventListener('open', onOpen);
        socket.addEventListener('message', onMessage);
        socket.addEventListener('close', onClose);
    });
}
/** Rejects with a `timeout` {@link WeirError} if `promise` takes longer than `ms`. */
export function withTimeout(promise, ms, what) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            reject(new WeirError('timeout', `timed out after ${String(ms)} ms waiting for ${what}`));
        }, ms);
        promise.then((v) => {
            clearTimeout(timer);
            resolve(v);
        }, (err) => {
            clearTimeout(timer);
            reject(err instanceof Error ? err : new Error(String(err)));
        });
    });
}
