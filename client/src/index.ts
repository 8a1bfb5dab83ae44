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

import type {
  CandidateJson,
  ClientMessage,
  DataInfo,
  ErrorMessage,
  Layers,
  OfferMessage,
  OfferTrack,
  PublishedMessage,
  ServerMessage,
  TrackInfo,
  TransportKind,
} from './protocol.js';

export type * from './protocol.js';

/** Video codecs a publisher can ask for. */
export type VideoCodec = 'VP8' | 'VP9' | 'H264' | 'AV1';

/** All {@link VideoCodec} values, in the order the demo tries them. */
export const VIDEO_CODECS: readonly VideoCodec[] = ['VP8', 'VP9', 'H264', 'AV1'];

/**
 * The encodings of a simulcast publication: three `rid`s, lowest resolution
 * first (`q` at 1/4, `h` at 1/2, `f` at full size), so that spatial layer
 * `i` of {@link Room.setPreferredLayers} is encoding `i`. A fresh array on
 * every call. Chromium sends all three only when capturing at 720p or more.
 */
export function simulcastEncodings(): RTCRtpEncodingParameters[] {
  return [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }];
}

/** The highest spatial or temporal layer index the server accepts. */
export const MAX_LAYER = 3;

/** Returns the value as a {@link VideoCodec} (case-insensitive), or `undefined`. */
export function parseVideoCodec(value: string | null | undefined): VideoCodec | undefined {
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
  readonly code: string;
  /** The `id` of the request that failed, when there was one. */
  readonly requestId: number | undefined;

  /** Creates an error; the message reads `code: detail`. */
  constructor(code: string, detail: string, requestId?: number, options?: { cause?: unknown }) {
    super(`${code}: ${detail}`, options);
    this.name = 'WeirError';
    this.code = code;
    this.requestId = requestId;
  }
}

function asWeirError(err: unknown, code: string): WeirError {
  if (err instanceof WeirError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new WeirError(code, detail, undefined, { cause: err });
}

// ---------------------------------------------------------------------------
// Emitter

/** A listener for one event type. */
export type Listener<T> = (event: T) => void;

/**
 * A tiny typed event emitter. `Events` maps event names to payload types.
 * A throwing listener does not stop the others; its error is reported to
 * the global error handler.
 */
export class Emitter<Events extends object> {
  readonly #listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(type: K, listener: Listener<Events[K]>): () => void {
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
  off<K extends keyof Events>(type: K, listener: Listener<Events[K]>): void {
    this.#listeners.get(type)?.delete(listener);
  }

  /** Calls every listener of `type` with `event`, in the order they were added. */
  protected emit<K extends keyof Events>(type: K, event: Events[K]): void {
    const set = this.#listeners.get(type);
    if (set === undefined) return;
    for (const listener of [...set]) {
      try {
        (listener as Listener<Events[K]>)(event);
      } catch (err) {
        reportUncaught(err);
      }
    }
  }
}

function reportUncaught(err: unknown): void {
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
export function preferCodec(codecs: readonly RTCRtpCodec[], codec: VideoCodec): RTCRtpCodec[] {
  const mimeType = `video/${codec}`.toLowerCase();
  const matches = (c: RTCRtpCodec): boolean => c.mimeType.toLowerCase() === mimeType;
  const chosen = codecs.filter(matches);
  if (chosen.length === 0) {
    throw new WeirError('unsupported_codec', `this browser has no ${codec} codec`);
  }
  return [...chosen, ...codecs.filter((c) => !matches(c))];
}

/** True when this browser can both send and receive `codec`. */
export function browserSupportsCodec(codec: VideoCodec): boolean {
  const mimeType = `video/${codec}`.toLowerCase();
  const has = (caps: RTCRtpCapabilities | null): boolean =>
    caps?.codecs.some((c) => c.mimeType.toLowerCase() === mimeType) ?? false;
  return has(RTCRtpSender.getCapabilities('video')) && has(RTCRtpReceiver.getCapabilities('video'));
}

// ---------------------------------------------------------------------------
// Transports

/** Events common to both transports. */
export interface TransportEvents {
  /** A local ICE candidate, or `null` when gathering is complete. */
  icecandidate: RTCIceCandidate | null;
  /** The peer connection's `connectionState` changed. */
  connectionstatechange: RTCPeerConnectionState;
}

/** The peer-connection settings both transports use unless given others. */
export const DEFAULT_RTC_CONFIGURATION: RTCConfiguration = {
  bundlePolicy: 'max-bundle',
  rtcpMuxPolicy: 'require',
  iceServers: [],
};

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
 * Remote ICE candidates that arrive before the remote description are held
 * and added once it is set.
 */
class CandidateBuffer {
  #held: (RTCIceCandidateInit | null)[] = [];

  constructor(private readonly pc: RTCPeerConnection) {}

  async add(candidate: RTCIceCandidateInit | null): Promise<void> {
    if (this.pc.remoteDescription === null) {
      this.#held.push(candidate);
      return;
    }
    await this.pc.addIceCandidate(candidate ?? undefined);
  }

  async flush(): Promise<void> {
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
export class PublishTransport extends Emitter<TransportEvents> {
  /** The underlying peer connection. */
  readonly pc: RTCPeerConnection;
  readonly #candidates: CandidateBuffer;
  readonly #defaultStream: MediaStream;

  /** Creates the transport and its peer connection. */
  constructor(configuration: RTCConfiguration = DEFAULT_RTC_CONFIGURATION) {
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
  publish(track: MediaStreamTrack, options: PublishOptions = {}): RTCRtpTransceiver {
    const init: RTCRtpTransceiverInit = {
      direction: 'sendonly',
      streams: [options.stream ?? this.#defaultStream],
    };
    if (options.sendEncodings !== undefined) init.sendEncodings = options.sendEncodings;
    const codec = options.codec;
    // Check before adding, so an unsupported codec leaves no transceiver behind.
    const preferences =
      track.kind === 'video' && codec !== undefined ? codecPreferences(codec) : undefined;
    const transceiver = this.pc.addTransceiver(track, init);
    if (preferences !== undefined) {
      transceiver.setCodecPreferences(preferences);
    }
    return transceiver;
  }

  /** Creates an offer, applies it locally and returns its SDP. */
  async createOffer(): Promise<string> {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    return this.pc.localDescription?.sdp ?? offer.sdp ?? '';
  }

  /** Applies the server's answer to the last {@link createOffer}. */
  async setAnswer(sdp: string): Promise<void> {
    await this.pc.setRemoteDescription({ type: 'answer', sdp });
    await this.#candidates.flush();
  }

  /** Abandons an offer the server refused, so the transport can offer again. */
  async rollback(): Promise<void> {
    if (this.pc.signalingState === 'have-local-offer') {
      await this.pc.setLocalDescription({ type: 'rollback' });
    }
  }

  /** Adds a server candidate (held until the answer is set); `null` ends them. */
  async addIceCandidate(candidate: RTCIceCandidateInit | null): Promise<void> {
    await this.#candidates.add(candidate);
  }

  /** Closes the peer connection. */
  close(): void {
    this.pc.close();
  }
}

function codecPreferences(codec: VideoCodec): RTCRtpCodec[] {
  // setCodecPreferences accepts the receiver's codecs; the sender's are a
  // fallback for browsers that check against those instead.
  const caps = RTCRtpReceiver.getCapabilities('video') ?? RTCRtpSender.getCapabilities('video');
  return preferCodec(caps?.codecs ?? [], codec);
}

/** Events of a {@link SubscribeTransport}. */
export interface SubscribeTransportEvents extends TransportEvents {
  /** A room track arrived on m-section `mid`. */
  track: { trackId: string; mid: string; track: MediaStreamTrack };
  /** A room track is no longer in the server's offers. */
  trackremoved: { trackId: string; mid: string };
  /** The server opened a data channel on SCTP stream `streamId`. */
  datachannel: { streamId: number; channel: RTCDataChannel };
}

interface TrackWaiter {
  resolve: (track: MediaStreamTrack) => void;
  reject: (reason: unknown) => void;
}

interface DataChannelWaiter {
  resolve: (channel: RTCDataChannel) => void;
  reject: (reason: unknown) => void;
}

/** Resolves once `channel` is open; rejects if it closes first. */
export function channelOpen(channel: RTCDataChannel): Promise<RTCDataChannel> {
  if (channel.readyState === 'open') return Promise.resolve(channel);
  if (channel.readyState === 'closing' || channel.readyState === 'closed') {
    return Promise.reject(new WeirError('closed', `data channel "${channel.label}" closed`));
  }
  return new Promise((resolve, reject) => {
    const onOpen = (): void => {
      channel.removeEventListener('close', onClose);
      resolve(channel);
    };
    const onClose = (): void => {
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
export class SubscribeTransport extends Emitter<SubscribeTransportEvents> {
  /** The underlying peer connection. */
  readonly pc: RTCPeerConnection;
  readonly #candidates: CandidateBuffer;
  #queue: Promise<unknown> = Promise.resolve();
  /** The m-sections of the offer being applied or last applied. */
  #byMid = new Map<string, OfferTrack>();
  /** Tracks that arrived, by room track id. */
  readonly #live = new Map<string, { mid: string; track: MediaStreamTrack }>();
  readonly #waiters = new Map<string, Set<TrackWaiter>>();
  /** Data channels the server opened, by SCTP stream id. */
  readonly #dataChannels = new Map<number, RTCDataChannel>();
  readonly #dataWaiters = new Map<number, Set<DataChannelWaiter>>();
  #closed = false;

  /** Creates the transport and its peer connection. */
  constructor(configuration: RTCConfiguration = DEFAULT_RTC_CONFIGURATION) {
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
      if (info !== undefined) this.#arrived(info, ev.track);
    });
    this.pc.addEventListener('datachannel', (ev) => {
      const channel = ev.channel;
      if (channel.id === null) return;
      this.#dataChannels.set(channel.id, channel);
      const waiters = this.#dataWaiters.get(channel.id);
      this.#dataWaiters.delete(channel.id);
      if (waiters !== undefined) for (const w of waiters) w.resolve(channel);
      this.emit('datachannel', { streamId: channel.id, channel });
    });
  }

  /**
   * Resolves with the data channel the server opens on SCTP stream
   * `streamId` (an `offer`'s `data[].streamId`) once it arrives. Rejects if
   * `signal` aborts or the transport closes first.
   */
  dataChannel(streamId: number, signal?: AbortSignal): Promise<RTCDataChannel> {
    const known = this.#dataChannels.get(streamId);
    if (known !== undefined) return Promise.resolve(known);
    if (this.#closed) return Promise.reject(new WeirError('closed', 'transport is closed'));
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
      const waiter: DataChannelWaiter = {
        resolve: (channel) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(channel);
        },
        reject,
      };
      const onAbort = (): void => {
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
  setOffer(sdp: string, tracks: readonly OfferTrack[]): Promise<string> {
    return this.#enqueue(() => this.#applyOffer(sdp, tracks));
  }

  /** Adds a server candidate, after any offers already queued; `null` ends them. */
  addIceCandidate(candidate: RTCIceCandidateInit | null): Promise<void> {
    return this.#enqueue(() => this.#candidates.add(candidate));
  }

  /**
   * Resolves with the track carrying room track `trackId` once it arrives.
   * Rejects if `signal` aborts or the transport closes first.
   */
  track(trackId: string, signal?: AbortSignal): Promise<MediaStreamTrack> {
    const live = this.#live.get(trackId);
    if (live !== undefined) return Promise.resolve(live.track);
    if (this.#closed) return Promise.reject(new WeirError('closed', 'transport is closed'));
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
      const waiter: TrackWaiter = {
        resolve: (track) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(track);
        },
        reject,
      };
      const onAbort = (): void => {
        set.delete(waiter);
        reject(abortReason(signal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      set.add(waiter);
    });
  }

  /** Room track ids currently received, with their m-section ids. */
  get tracks(): ReadonlyMap<string, { mid: string; track: MediaStreamTrack }> {
    return this.#live;
  }

  /** Closes the peer connection and rejects pending {@link track} calls. */
  close(): void {
    this.#closed = true;
    this.pc.close();
    const err = new WeirError('closed', 'transport is closed');
    for (const set of this.#waiters.values()) for (const w of set) w.reject(err);
    this.#waiters.clear();
    for (const set of this.#dataWaiters.values()) for (const w of set) w.reject(err);
    this.#dataWaiters.clear();
  }

  #enqueue<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(work);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  async #applyOffer(sdp: string, tracks: readonly OfferTrack[]): Promise<string> {
    if (this.#closed) throw new WeirError('closed', 'transport is closed');
    const previous = this.#byMid;
    // Set before setRemoteDescription: `track` events fire inside it.
    this.#byMid = new Map(tracks.map((t) => [t.mid, t]));
    try {
      await this.pc.setRemoteDescription({ type: 'offer', sdp });
    } catch (err) {
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
      if (this.#live.has(info.trackId)) continue;
      const transceiver = this.pc.getTransceivers().find((t) => t.mid === info.mid);
      if (transceiver !== undefined) this.#arrived(info, transceiver.receiver.track);
    }
    return this.pc.localDescription?.sdp ?? answer.sdp ?? '';
  }

  #arrived(info: OfferTrack, track: MediaStreamTrack): void {
    const live = this.#live.get(info.trackId);
    if (live?.track === track) return;
    this.#live.set(info.trackId, { mid: info.mid, track });
    const waiters = this.#waiters.get(info.trackId);
    this.#waiters.delete(info.trackId);
    if (waiters !== undefined) for (const w of waiters) w.resolve(track);
    this.emit('track', { trackId: info.trackId, mid: info.mid, track });
  }
}

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new WeirError('aborted', 'the wait was aborted');
}

// ---------------------------------------------------------------------------
// Server messages

type Fields = Record<string, unknown>;

function isObject(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isKind = (v: unknown): boolean => v === 'audio' || v === 'video';
const isTransport = (v: unknown): v is TransportKind => v === 'publish' || v === 'subscribe';

function isTrackInfo(v: unknown): v is TrackInfo {
  return (
    isObject(v) &&
    isString(v['trackId']) &&
    isString(v['peerId']) &&
    isKind(v['kind']) &&
    (v['name'] === undefined || isString(v['name'])) &&
    (v['codec'] === undefined || isString(v['codec']))
  );
}

function isOfferTrack(v: unknown): v is OfferTrack {
  return isObject(v) && isString(v['mid']) && isString(v['trackId']) && isKind(v['kind']);
}

const isNumberOrNull = (v: unknown): boolean => v === null || typeof v === 'number';
const isLayer = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

function isDataInfo(v: unknown): v is DataInfo {
  return (
    isObject(v) &&
    isString(v['dataId']) &&
    isString(v['peerId']) &&
    isString(v['label']) &&
    typeof v['ordered'] === 'boolean' &&
    (v['name'] === undefined || isString(v['name'])) &&
    (v['protocol'] === undefined || isString(v['protocol'])) &&
    (v['maxRetransmits'] === undefined || isNumberOrNull(v['maxRetransmits'])) &&
    (v['maxPacketLifeTime'] === undefined || isNumberOrNull(v['maxPacketLifeTime']))
  );
}

function isOfferData(v: unknown): boolean {
  return isObject(v) && isString(v['dataId']) && isString(v['label']) && typeof v['streamId'] === 'number';
}

function isCandidate(v: unknown): v is CandidateJson | null {
  return v === null || (isObject(v) && isString(v['candidate']));
}

const SHAPES: Record<string, (m: Fields) => boolean> = {
  joined: (m) =>
    isString(m['peerId']) &&
    isString(m['room']) &&
    Array.isArray(m['tracks']) &&
    m['tracks'].every(isTrackInfo) &&
    (m['dataPublishers'] === undefined || (Array.isArray(m['dataPublishers']) && m['dataPublishers'].every(isDataInfo))),
  answer: (m) => m['transport'] === 'publish' && isString(m['sdp']),
  published: (m) => isString(m['trackId']) && isString(m['mid']) && isKind(m['kind']),
  unpublished: (m) => isString(m['trackId']),
  offer: (m) =>
    isString(m['sdp']) &&
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

/** Result of {@link parseServerMessage}. */
export type ParsedServerMessage =
  | { ok: true; message: ServerMessage }
  | { ok: false; ignorable: boolean; reason: string };

/**
 * Parses one WebSocket text frame from the server. A message of a type this
 * client does not know is `ignorable` (newer servers may add some); a known
 * type with missing or mistyped fields is not.
 */
export function parseServerMessage(text: string): ParsedServerMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, ignorable: false, reason: 'not JSON' };
  }
  if (!isObject(value) || !isString(value['type'])) {
    return { ok: false, ignorable: false, reason: 'not an object with a string "type"' };
  }
  const type = value['type'];
  const shape = SHAPES[type];
  if (shape === undefined) return { ok: false, ignorable: true, reason: `unknown type "${type}"` };
  if (value['id'] !== undefined && value['id'] !== null && typeof value['id'] !== 'number') {
    return { ok: false, ignorable: false, reason: `"${type}" has a non-numeric id` };
  }
  if (!shape(value)) return { ok: false, ignorable: false, reason: `"${type}" is missing fields` };
  return { ok: true, message: value as unknown as ServerMessage };
}

// ---------------------------------------------------------------------------
// Room

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
  trackUnpublished: { trackId: string };
  /** One of this participant's tracks reached the server. */
  published: Omit<PublishedMessage, 'type'>;
  /** A participant joined. */
  peerJoined: PeerInfo;
  /** A participant left. */
  peerLeft: PeerInfo;
  /** Another participant published a data channel; {@link Room.subscribeData} to receive it. */
  dataPublisherAdded: DataInfo;
  /** A data channel ended. */
  dataPublisherRemoved: { dataId: string };
  /** A failure not tied to a request the caller awaits. */
  error: WeirError;
  /** A transport's state changed. */
  connectionState: ConnectionStateEvent;
  /** The layers the server forwards for a subscribed video track changed (a switch completed). */
  layersChanged: LayersChangedEvent;
  /** The WebSocket closed; the room is unusable. */
  close: { code: number; reason: string };
}

/** What {@link Room} needs from either transport. */
interface TransportEventSource {
  on(type: 'icecandidate', listener: Listener<RTCIceCandidate | null>): () => void;
  on(type: 'connectionstatechange', listener: Listener<RTCPeerConnectionState>): () => void;
}

interface PendingRequest {
  expect: ServerMessage['type'];
  resolve: (message: ServerMessage) => void;
  reject: (err: WeirError) => void;
  timer: ReturnType<typeof setTimeout>;
}

type Reply<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

/** A request without its `id`, which {@link Room} assigns. */
type Request = ClientMessage extends infer M ? (M extends ClientMessage ? Omit<M, 'id'> : never) : never;

/**
 * A participant in a weir-server room, over one WebSocket.
 *
 * Server offers for the subscribe transport are answered automatically, in
 * order. Requests get numeric ids and resolve with their reply, or reject
 * with a {@link WeirError} carrying the server's error code.
 */
export class Room extends Emitter<RoomEvents> {
  /** This participant's id. */
  readonly peerId: string;
  /** The room's name. */
  readonly room: string;
  /** Sends local media. */
  readonly publisher: PublishTransport;
  /** Receives room media. */
  readonly subscriber: SubscribeTransport;

  readonly #socket: WebSocket;
  readonly #requestTimeoutMs: number;
  readonly #pending = new Map<number, PendingRequest>();
  readonly #remoteTracks = new Map<string, TrackInfo>();
  readonly #remoteData = new Map<string, DataInfo>();
  readonly #peers = new Map<string, PeerInfo>();
  /** Own tracks the server announced with `published`, by track id. */
  readonly #ownTracks = new Map<string, Omit<PublishedMessage, 'type'>>();
  /** Current layers of subscribed video tracks, from `layersChanged`. */
  readonly #layers = new Map<string, Layers>();
  #nextId = 1;
  #publishChain: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(socket: WebSocket, joined: Reply<'joined'>, options: RoomOptions, nextId: number) {
    super();
    this.#socket = socket;
    this.#nextId = nextId;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 10_000;
    this.peerId = joined.peerId;
    this.room = joined.room;
    for (const t of joined.tracks) this.#remoteTracks.set(t.trackId, t);
    for (const d of joined.dataPublishers ?? []) this.#remoteData.set(d.dataId, d);
    const config = options.rtcConfiguration ?? DEFAULT_RTC_CONFIGURATION;
    this.publisher = new PublishTransport(config);
    this.subscriber = new SubscribeTransport(config);
    this.#wireTransport('publish', this.publisher);
    this.#wireTransport('subscribe', this.subscriber);
    socket.addEventListener('message', (ev) => {
      if (typeof ev.data === 'string') this.#onMessage(ev.data);
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
  static async connect(url: string, room: string, name?: string, options: RoomOptions = {}): Promise<Room> {
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    const socket = new WebSocket(url);
    try {
      const joined = await withTimeout(join(socket, room, name), timeoutMs, 'joining the room');
      return new Room(socket, joined, options, 2);
    } catch (err) {
      socket.close();
      throw asWeirError(err, 'closed');
    }
  }

  /** Tracks other participants publish, as last heard from the server. */
  get remoteTracks(): TrackInfo[] {
    return [...this.#remoteTracks.values()];
  }

  /** Data channels other participants publish, as last heard from the server. */
  get remoteDataPublishers(): DataInfo[] {
    return [...this.#remoteData.values()];
  }

  /** Other participants heard of since joining. */
  get peers(): PeerInfo[] {
    return [...this.#peers.values()];
  }

  /**
   * Publishes every track of `source` in one offer and resolves once the
   * server's answer is applied. `published` events follow when media
   * reaches the server. Publishes run one at a time.
   */
  publish(source: MediaStream | readonly MediaStreamTrack[], options: RoomPublishOptions = {}): Promise<RTCRtpTransceiver[]> {
    const run = async (): Promise<RTCRtpTransceiver[]> => {
      const stream = source instanceof MediaStream ? source : new MediaStream([...source]);
      const transceivers: RTCRtpTransceiver[] = [];
      try {
        for (const track of stream.getTracks()) {
          const opts: PublishOptions = { stream };
          if (track.kind === 'video') {
            if (options.codec !== undefined) opts.codec = options.codec;
            if (options.videoEncodings !== undefined) opts.sendEncodings = options.videoEncodings;
            else if (options.simulcast === true) opts.sendEncodings = simulcastEncodings();
          }
          transceivers.push(this.publisher.publish(track, opts));
        }
        const offer = await this.publisher.createOffer();
        const answer = await this.#request({ type: 'publish', sdp: offer }, 'answer');
        await this.publisher.setAnswer(answer.sdp);
        return transceivers;
      } catch (err) {
        await this.publisher.rollback().catch(() => undefined);
        for (const t of transceivers) t.stop();
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
  async unpublish(trackId: string): Promise<void> {
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
  async subscribe(trackId: string): Promise<MediaStreamTrack> {
    const abort = new AbortController();
    const track = this.subscriber.track(trackId, abort.signal);
    track.catch(() => undefined); // awaited below; this only silences the abort path
    try {
      await this.#request({ type: 'subscribe', trackId }, 'offer');
      return await withTimeout(track, this.#requestTimeoutMs, `track ${trackId} to arrive`);
    } catch (err) {
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
  publishData(label: string, options: RTCDataChannelInit = {}): Promise<DataPublication> {
    const run = async (): Promise<DataPublication> => {
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
      } catch (err) {
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
  async subscribeData(dataId: string): Promise<RTCDataChannel> {
    const offer = await this.#request({ type: 'subscribeData', dataId }, 'offer');
    const entry = offer.data?.find((d) => d.dataId === dataId);
    if (entry === undefined) {
      throw new WeirError('bad_server_message', `the offer for data channel ${dataId} does not list it`);
    }
    const channel = await withTimeout(
      this.subscriber.dataChannel(entry.streamId),
      this.#requestTimeoutMs,
      `data channel ${dataId} to arrive`,
    );
    return withTimeout(channelOpen(channel), this.#requestTimeoutMs, `data channel ${dataId} to open`);
  }

  /** Ends a subscription. The server follows up with a new offer, answered automatically. */
  async unsubscribe(trackId: string): Promise<void> {
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
  async setPreferredLayers(trackId: string, spatial: number, temporal: number): Promise<Layers> {
    const reply = await this.#request({ type: 'setPreferredLayers', trackId, spatial, temporal }, 'preferredLayersSet');
    return { spatial: reply.spatial, temporal: reply.temporal };
  }

  /** The layers last announced for a subscribed video track, if any. */
  currentLayers(trackId: string): Layers | undefined {
    const layers = this.#layers.get(trackId);
    return layers === undefined ? undefined : { ...layers };
  }

  /** Leaves the room and closes both transports and the socket. */
  async leave(): Promise<void> {
    if (this.#closed) return;
    this.#send({ type: 'leave' });
    const closed = new Promise<void>((resolve) => {
      this.#socket.addEventListener('close', () => {
        resolve();
      });
    });
    await withTimeout(closed, 2_000, 'the server to close the socket').catch(() => undefined);
    this.#socket.close();
    this.#onClose(1000, 'left');
  }

  #wireTransport(kind: TransportKind, transport: TransportEventSource): void {
    transport.on('icecandidate', (c) => {
      const candidate: CandidateJson | null =
        c === null ? null : { candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
      this.#send({ type: 'candidate', transport: kind, candidate });
    });
    transport.on('connectionstatechange', (state) => {
      this.emit('connectionState', { transport: kind, side: 'browser', state });
    });
  }

  #request<T extends ServerMessage['type']>(message: Request, expect: T): Promise<Reply<T>> {
    if (this.#closed) return Promise.reject(new WeirError('closed', 'the room is closed'));
    const id = this.#nextId++;
    return new Promise<Reply<T>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new WeirError('timeout', `no reply to ${message.type} within ${String(this.#requestTimeoutMs)} ms`, id));
      }, this.#requestTimeoutMs);
      this.#pending.set(id, {
        expect,
        resolve: (m) => {
          resolve(m as Reply<T>);
        },
        reject,
        timer,
      });
      this.#send({ ...message, id });
    });
  }

  #send(message: ClientMessage): void {
    if (this.#socket.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  #onMessage(text: string): void {
    const parsed = parseServerMessage(text);
    if (!parsed.ok) {
      if (!parsed.ignorable) this.emit('error', new WeirError('bad_server_message', parsed.reason));
      return;
    }
    const message = parsed.message;
    this.#dispatch(message);
    const id = 'id' in message ? message.id : undefined;
    const pending = id === undefined ? undefined : this.#pending.get(id);
    if (pending === undefined || id === undefined) {
      if (message.type === 'error') this.emit('error', serverError(message));
      return;
    }
    if (message.type === 'error') {
      this.#settle(id, pending);
      pending.reject(serverError(message));
    } else if (message.type === pending.expect) {
      this.#settle(id, pending);
      pending.resolve(message);
    }
  }

  #settle(id: number, pending: PendingRequest): void {
    clearTimeout(pending.timer);
    this.#pending.delete(id);
  }

  #dispatch(message: ServerMessage): void {
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
        if (message.type === 'peerJoined') this.#peers.set(peer.peerId, peer);
        else this.#peers.delete(peer.peerId);
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

  #answerOffer(offer: OfferMessage): void {
    this.subscriber
      .setOffer(offer.sdp, offer.tracks)
      .then((sdp) => this.#request({ type: 'answer', sdp }, 'answerAccepted'))
      .catch((err: unknown) => {
        this.emit('error', asWeirError(err, 'negotiation_failed'));
      });
  }

  #onClose(code: number, reason: string): void {
    if (this.#closed) return;
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

function serverError(message: ErrorMessage): WeirError {
  return new WeirError(message.code, message.message, message.id);
}

/** Opens `socket` and sends `join` with id 1; resolves with the `joined` reply. */
function join(socket: WebSocket, room: string, name: string | undefined): Promise<Reply<'joined'>> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      socket.removeEventListener('open', onOpen);
      socket.removeEventListener('message', onMessage);
      socket.removeEventListener('close', onClose);
    };
    const onOpen = (): void => {
      const message: ClientMessage = name === undefined ? { type: 'join', id: 1, room } : { type: 'join', id: 1, room, name };
      socket.send(JSON.stringify(message));
    };
    const onMessage = (ev: MessageEvent): void => {
      if (typeof ev.data !== 'string') return;
      const parsed = parseServerMessage(ev.data);
      if (!parsed.ok) return;
      const m = parsed.message;
      if (m.type === 'joined' && m.id === 1) {
        cleanup();
        resolve(m);
      } else if (m.type === 'error' && m.id === 1) {
        cleanup();
        reject(serverError(m));
      }
    };
    const onClose = (ev: CloseEvent): void => {
      cleanup();
      reject(new WeirError('closed', `socket closed before joining (${String(ev.code)})`));
    };
    socket.addEventListener('open', onOpen);
    socket.addEventListener('message', onMessage);
    socket.addEventListener('close', onClose);
  });
}

/** Rejects with a `timeout` {@link WeirError} if `promise` takes longer than `ms`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new WeirError('timeout', `timed out after ${String(ms)} ms waiting for ${what}`));
    }, ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
