/**
 * The weir-server demo page: join a room, publish camera and microphone,
 * show everyone else, and chat over a data channel.
 *
 * Query parameters (also the test hooks): `room` (default `demo`), `name`,
 * `codec` (`VP8`, `VP9`, `H264`, `AV1`), `publish` (`0` to only watch),
 * `chat` (`1` to publish a "chat" data channel on joining, `0` not to;
 * default on unless `autostart` is set), `autostart` (`1` to join without
 * pressing the button), `ws` (signaling URL; default `/ws` on the page's
 * own host), `simulcast` (`1` to capture at 1280x720 and publish video as
 * three simulcast encodings). Everyone's "chat" channels are shown in the
 * chat box either way. Each remote video has a layer picker (low, mid,
 * high) and shows the layers the server forwards. `window.weirDemo`
 * exposes the state, the chat, the layers and a `stats()` summary for tests.
 *
 * @module
 */

import { MAX_LAYER, Room, WeirError, browserSupportsCodec, parseVideoCodec } from './index.js';
import type { DataInfo, Layers, TrackInfo, VideoCodec } from './index.js';

/** The label of the demo's chat channels. */
export const CHAT_LABEL = 'chat';

/** The demo's settings, from the query string and the form. */
export interface DemoConfig {
  /** Room to join. */
  room: string;
  /** Display name. */
  name: string;
  /** Video codec to publish with; the browser's default when absent. */
  codec: VideoCodec | undefined;
  /** Whether to publish camera and microphone. */
  publish: boolean;
  /** Whether to publish a chat channel on joining. */
  chat: boolean;
  /** Whether to publish video as three simulcast encodings (captured at 1280x720). */
  simulcast: boolean;
  /** Whether to join on load. */
  autostart: boolean;
  /** The signaling WebSocket URL. */
  signalingUrl: string;
}

/** Summary of one inbound-rtp stats entry. */
export interface InboundSummary {
  /** Room track id, when known. */
  trackId: string | null;
  mid: string | null;
  kind: string;
  /** Codec mimeType, for example `video/VP8`. */
  codec: string | null;
  framesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  packetsReceived: number;
  packetsLost: number;
  bytesReceived: number;
  pliCount: number;
  nackCount: number;
  freezeCount: number;
  /** The layers the server last announced for this track (`layersChanged`), if any. */
  layers: Layers | null;
}

/** Summary of one outbound-rtp stats entry (one per simulcast layer). */
export interface OutboundSummary {
  mid: string | null;
  rid: string | null;
  kind: string;
  /** Codec mimeType, for example `video/VP9`. */
  codec: string | null;
  framesEncoded: number;
  packetsSent: number;
  frameWidth: number;
  frameHeight: number;
  /** PLIs received for this encoding (the server asking for keyframes). */
  pliCount: number;
}

/** What `window.weirDemo.stats()` returns; JSON-serialisable. */
export interface DemoStats {
  state: DemoState;
  peerId: string | null;
  /** Own tracks the server reported live. */
  published: number;
  inbound: InboundSummary[];
  outbound: OutboundSummary[];
}

/** One line of the chat box. */
export interface ChatLine {
  /** Who sent it: a display name, a peer id, or `you`. */
  from: string;
  /** The text, or a description of a binary message. */
  text: string;
  /** Whether it arrived as a binary message. */
  binary: boolean;
}

/** Where the demo is in its life. */
export type DemoState = 'idle' | 'connecting' | 'joined' | 'closed' | 'failed';

/** The test hook on `window`. */
export interface WeirDemo {
  readonly config: DemoConfig;
  state: DemoState;
  room: Room | null;
  /** Every error shown on the page, oldest first. */
  errors: string[];
  /** Joins with the form's settings. */
  start: () => Promise<void>;
  /** Leaves the room. */
  leave: () => Promise<void>;
  /** A summary of both transports' getStats(). */
  stats: () => Promise<DemoStats>;
  /** Layer selection of subscribed video tracks, like the pickers. */
  layers: {
    /** Asks for layers of a subscribed track (`temporal` defaults to the highest). */
    set: (trackId: string, spatial: number, temporal?: number) => Promise<Layers>;
    /** The layers the server last announced for a track, or `null`. */
    current: (trackId: string) => Layers | null;
    /** Every `layersChanged` received, oldest first, with its time (ms since page load). */
    history: { trackId: string; spatial: number; temporal: number; at: number }[];
  };
  /** The chat box: every line shown, sending like the Send button. */
  chat: {
    lines: ChatLine[];
    send: (text: string) => void;
    /** Whether this page's own chat channel is published. */
    ready: () => boolean;
    /** How many others' chat channels it receives. */
    receiving: () => number;
  };
}

declare global {
  interface Window {
    weirDemo: WeirDemo;
  }
}

/** Reads the demo settings from a query string; `origin` is the page's `location`. */
export function readConfig(search: string, origin: { protocol: string; host: string }): DemoConfig {
  const params = new URLSearchParams(search);
  const defaultUrl = `${origin.protocol === 'https:' ? 'wss' : 'ws'}://${origin.host}/ws`;
  return {
    room: params.get('room') ?? 'demo',
    name: params.get('name') ?? '',
    codec: parseVideoCodec(params.get('codec')),
    publish: params.get('publish') !== '0',
    chat: params.has('chat') ? params.get('chat') !== '0' : params.get('autostart') !== '1',
    simulcast: params.get('simulcast') === '1',
    autostart: params.get('autostart') === '1',
    signalingUrl: params.get('ws') ?? defaultUrl,
  };
}

function element<T extends HTMLElement>(id: string, type: new () => T): T {
  const el = document.getElementById(id);
  if (!(el instanceof type)) throw new Error(`demo page has no #${id}`);
  return el;
}

const form = element('join-form', HTMLFormElement);
const roomInput = element('room', HTMLInputElement);
const nameInput = element('name', HTMLInputElement);
const codecSelect = element('codec', HTMLSelectElement);
const publishInput = element('publish', HTMLInputElement);
const simulcastInput = element('simulcast', HTMLInputElement);
const joinButton = element('join', HTMLButtonElement);
const leaveButton = element('leave', HTMLButtonElement);
const statusList = element('status', HTMLElement);
const errorList = element('errors', HTMLUListElement);
const grid = element('videos', HTMLElement);
const chatInput = element('chat-enable', HTMLInputElement);
const chatLog = element('chat-log', HTMLOListElement);
const chatForm = element('chat-form', HTMLFormElement);
const chatText = element('chat-input', HTMLInputElement);
const chatSend = element('chat-send', HTMLButtonElement);

const config = readConfig(location.search, location);
roomInput.value = config.room;
nameInput.value = config.name;
codecSelect.value = config.codec ?? '';
publishInput.checked = config.publish;
simulcastInput.checked = config.simulcast;
chatInput.checked = config.chat;

/** A participant's tile: one video element playing all their tracks. */
interface Tile {
  root: HTMLElement;
  video: HTMLVideoElement;
  label: HTMLElement;
  stream: MediaStream;
  /** Layer pickers of the participant's video tracks. */
  layers: HTMLElement;
}

/** The layer picker choices: spatial layer index by name. */
const LAYER_CHOICES: readonly [string, number][] = [
  ['low', 0],
  ['mid', 1],
  ['high', 2],
];

/** A layer picker of one subscribed video track. */
interface LayerPicker {
  root: HTMLElement;
  select: HTMLSelectElement;
  current: HTMLElement;
}

const pickers = new Map<string, LayerPicker>();

const tiles = new Map<string, Tile>();
/** Subscribed room tracks: trackId → the publisher's peerId and the track. */
const subscribed = new Map<string, { peerId: string; track: MediaStreamTrack }>();
const statusValues = new Map<string, string>();
let localStream: MediaStream | null = null;
let publishedCount = 0;
/** This participant's chat channel, once published. */
let chatChannel: RTCDataChannel | null = null;
/** Chat channels subscribed to, by data id. */
const chats = new Map<string, RTCDataChannel>();

const demo: WeirDemo = {
  config,
  state: 'idle',
  room: null,
  errors: [],
  start,
  leave,
  stats,
  layers: {
    set: setLayers,
    current: (trackId) => demo.room?.currentLayers(trackId) ?? null,
    history: [],
  },
  chat: {
    lines: [],
    send: sendChat,
    ready: () => chatChannel?.readyState === 'open',
    receiving: () => chats.size,
  },
};
window.weirDemo = demo;

function setState(state: DemoState): void {
  demo.state = state;
  setStatus('room', state);
  joinButton.disabled = state === 'connecting' || state === 'joined';
  leaveButton.disabled = state !== 'joined';
}

function setStatus(key: string, value: string): void {
  statusValues.set(key, value);
  statusList.replaceChildren(
    ...[...statusValues].map(([k, v]) => {
      const item = document.createElement('div');
      const dt = document.createElement('dt');
      const dd = document.createElement('dd');
      dt.textContent = k;
      dd.textContent = v;
      dd.dataset['state'] = v;
      item.append(dt, dd);
      return item;
    }),
  );
}

function showError(err: unknown): void {
  const text = err instanceof WeirError ? err.message : err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  demo.errors.push(text);
  const item = document.createElement('li');
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  errorList.append(item);
  console.error('[weir demo]', text);
}

function tileFor(key: string, label: string, local = false): Tile {
  const existing = tiles.get(key);
  if (existing !== undefined) return existing;
  const root = document.createElement('figure');
  root.className = local ? 'tile local' : 'tile';
  const video = document.createElement('video');
  video.autoplay = true;
  video.playsInline = true;
  // The local preview must not echo the microphone.
  video.muted = local;
  const caption = document.createElement('figcaption');
  caption.textContent = label;
  const stream = new MediaStream();
  video.srcObject = stream;
  const layers = document.createElement('div');
  layers.className = 'layers';
  root.append(video, caption, layers);
  grid.append(root);
  const tile = { root, video, label: caption, stream, layers };
  tiles.set(key, tile);
  return tile;
}

function removeTile(key: string): void {
  tiles.get(key)?.root.remove();
  tiles.delete(key);
}

function play(video: HTMLVideoElement): void {
  video.play().catch((err: unknown) => {
    // Autoplay may be refused until the user interacts; the element keeps
    // its controls so they can start it.
    video.controls = true;
    console.warn('[weir demo] autoplay refused', err);
  });
}

async function setLayers(trackId: string, spatial: number, temporal: number = MAX_LAYER): Promise<Layers> {
  const room = demo.room;
  if (room === null) throw new WeirError('closed', 'not in a room');
  const picker = pickers.get(trackId);
  if (picker !== undefined) picker.select.value = String(spatial);
  return room.setPreferredLayers(trackId, spatial, temporal);
}

function layersText(layers: Layers | null | undefined): string {
  return layers === null || layers === undefined ? 'waiting' : `S${String(layers.spatial)} T${String(layers.temporal)}`;
}

function addPicker(tile: Tile, trackId: string): void {
  if (pickers.has(trackId)) return;
  const root = document.createElement('label');
  root.className = 'layer-picker';
  root.dataset['trackId'] = trackId;
  const select = document.createElement('select');
  for (const [name, spatial] of LAYER_CHOICES) {
    const option = document.createElement('option');
    option.value = String(spatial);
    option.textContent = name;
    select.append(option);
  }
  select.value = String(LAYER_CHOICES[LAYER_CHOICES.length - 1]?.[1] ?? 0);
  select.title = 'Preferred simulcast layer';
  const current = document.createElement('span');
  current.className = 'layers-current';
  current.textContent = layersText(demo.room?.currentLayers(trackId));
  select.addEventListener('change', () => {
    setLayers(trackId, Number(select.value)).catch(showError);
  });
  root.append('layer ', select, current);
  tile.layers.append(root);
  pickers.set(trackId, { root, select, current });
}

function removePicker(trackId: string): void {
  pickers.get(trackId)?.root.remove();
  pickers.delete(trackId);
}

async function subscribeTo(room: Room, info: TrackInfo): Promise<void> {
  if (info.peerId === room.peerId || subscribed.has(info.trackId)) return;
  try {
    const track = await room.subscribe(info.trackId);
    subscribed.set(info.trackId, { peerId: info.peerId, track });
    const tile = tileFor(info.peerId, info.name === '' ? info.peerId : info.name);
    tile.stream.addTrack(track);
    tile.video.srcObject = tile.stream;
    if (track.kind === 'video') addPicker(tile, info.trackId);
    play(tile.video);
  } catch (err) {
    showError(err);
  }
}

function dropTrack(trackId: string): void {
  const sub = subscribed.get(trackId);
  if (sub === undefined) return;
  subscribed.delete(trackId);
  removePicker(trackId);
  tiles.get(sub.peerId)?.stream.removeTrack(sub.track);
}

function addChatLine(line: ChatLine): void {
  demo.chat.lines.push(line);
  const item = document.createElement('li');
  const who = document.createElement('b');
  who.textContent = `${line.from}: `;
  item.append(who, line.text);
  if (line.binary) item.className = 'binary';
  chatLog.append(item);
  chatLog.scrollTop = chatLog.scrollHeight;
}

function sendChat(text: string): void {
  if (chatChannel?.readyState !== 'open' || text === '') return;
  chatChannel.send(text);
  addChatLine({ from: 'you', text, binary: false });
}

async function openChat(room: Room): Promise<void> {
  try {
    const publication = await room.publishData(CHAT_LABEL);
    chatChannel = publication.channel;
    chatSend.disabled = false;
    chatChannel.addEventListener('close', () => {
      chatSend.disabled = true;
    });
  } catch (err) {
    showError(err);
  }
}

async function joinChat(room: Room, info: DataInfo): Promise<void> {
  if (info.label !== CHAT_LABEL || info.peerId === room.peerId || chats.has(info.dataId)) return;
  const from = info.name === '' ? info.peerId : info.name;
  try {
    const channel = await room.subscribeData(info.dataId);
    chats.set(info.dataId, channel);
    channel.binaryType = 'arraybuffer';
    channel.addEventListener('message', (ev: MessageEvent) => {
      const data: unknown = ev.data;
      if (typeof data === 'string') addChatLine({ from, text: data, binary: false });
      else if (data instanceof ArrayBuffer) addChatLine({ from, text: `[${String(data.byteLength)} bytes]`, binary: true });
    });
    channel.addEventListener('close', () => {
      chats.delete(info.dataId);
    });
  } catch (err) {
    showError(err);
  }
}

async function start(): Promise<void> {
  if (demo.state === 'connecting' || demo.state === 'joined') return;
  const settings: DemoConfig = {
    room: roomInput.value.trim(),
    name: nameInput.value.trim(),
    codec: parseVideoCodec(codecSelect.value),
    publish: publishInput.checked,
    chat: chatInput.checked,
    simulcast: simulcastInput.checked,
    autostart: config.autostart,
    signalingUrl: config.signalingUrl,
  };
  setState('connecting');
  let room: Room;
  try {
    room = await Room.connect(settings.signalingUrl, settings.room, settings.name === '' ? undefined : settings.name);
  } catch (err) {
    showError(err);
    setState('failed');
    return;
  }
  demo.room = room;
  setState('joined');
  setStatus('peer', room.peerId);

  room.on('connectionState', (ev) => {
    setStatus(`${ev.transport} (${ev.side})`, ev.state);
  });
  room.on('error', showError);
  room.on('published', () => {
    publishedCount += 1;
    setStatus('published', String(publishedCount));
  });
  room.on('trackPublished', (info) => void subscribeTo(room, info));
  room.on('layersChanged', (ev) => {
    demo.layers.history.push({ ...ev, at: Math.round(performance.now()) });
    const picker = pickers.get(ev.trackId);
    if (picker !== undefined) picker.current.textContent = layersText(ev);
  });
  room.on('trackUnpublished', ({ trackId }) => {
    dropTrack(trackId);
  });
  room.on('peerJoined', (peer) => {
    tileFor(peer.peerId, peer.name === '' ? peer.peerId : peer.name);
  });
  room.on('peerLeft', (peer) => {
    for (const [trackId, sub] of subscribed) if (sub.peerId === peer.peerId) dropTrack(trackId);
    removeTile(peer.peerId);
  });
  room.on('close', ({ code, reason }) => {
    setState('closed');
    if (code !== 1000) showError(new WeirError('closed', `connection closed (${String(code)} ${reason})`));
  });

  room.on('dataPublisherAdded', (info) => void joinChat(room, info));
  room.on('dataPublisherRemoved', ({ dataId }) => {
    chats.delete(dataId);
  });

  for (const info of room.remoteTracks) void subscribeTo(room, info);
  for (const info of room.remoteDataPublishers) void joinChat(room, info);

  if (settings.chat) await openChat(room);
  if (settings.publish) await publishLocal(room, settings.codec, settings.simulcast);
}

async function publishLocal(room: Room, codec: VideoCodec | undefined, simulcast: boolean): Promise<void> {
  try {
    if (codec !== undefined && !browserSupportsCodec(codec)) {
      throw new WeirError('unsupported_codec', `this browser cannot send and receive ${codec}`);
    }
    localStream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      // Chromium makes three simulcast layers only from 720p up.
      video: simulcast ? { width: { ideal: 1280 }, height: { ideal: 720 } } : { width: { ideal: 640 }, height: { ideal: 480 } },
    });
    const tile = tileFor('local', 'you', true);
    for (const track of localStream.getTracks()) tile.stream.addTrack(track);
    tile.video.srcObject = tile.stream;
    play(tile.video);
    await room.publish(localStream, codec === undefined ? { simulcast } : { codec, simulcast });
    setStatus('codec', codec ?? 'browser default');
    if (simulcast) setStatus('simulcast', 'q h f');
  } catch (err) {
    showError(err);
  }
}

async function leave(): Promise<void> {
  const room = demo.room;
  if (room === null) return;
  await room.leave();
  for (const track of localStream?.getTracks() ?? []) track.stop();
  localStream = null;
  subscribed.clear();
  for (const trackId of [...pickers.keys()]) removePicker(trackId);
  chatChannel = null;
  chatSend.disabled = true;
  chats.clear();
  for (const key of [...tiles.keys()]) removeTile(key);
  demo.room = null;
  setState('closed');
}

type StatsEntry = Record<string, unknown>;

function num(entry: StatsEntry, key: string): number {
  const value = entry[key];
  return typeof value === 'number' ? value : 0;
}

function str(entry: StatsEntry, key: string): string | null {
  const value = entry[key];
  return typeof value === 'string' ? value : null;
}

async function statsEntries(pc: RTCPeerConnection): Promise<Map<string, StatsEntry>> {
  const report = await pc.getStats();
  const entries = new Map<string, StatsEntry>();
  report.forEach((value: unknown, key: string) => {
    if (typeof value === 'object' && value !== null) entries.set(key, value as StatsEntry);
  });
  return entries;
}

function codecOf(entries: Map<string, StatsEntry>, entry: StatsEntry): string | null {
  const codecId = str(entry, 'codecId');
  const codec = codecId === null ? undefined : entries.get(codecId);
  return codec === undefined ? null : str(codec, 'mimeType');
}

async function stats(): Promise<DemoStats> {
  const room = demo.room;
  const result: DemoStats = {
    state: demo.state,
    peerId: room?.peerId ?? null,
    published: publishedCount,
    inbound: [],
    outbound: [],
  };
  if (room === null) return result;

  const trackByMid = new Map<string, string>();
  for (const [trackId, { mid }] of room.subscriber.tracks) trackByMid.set(mid, trackId);

  const inbound = await statsEntries(room.subscriber.pc);
  for (const entry of inbound.values()) {
    if (entry['type'] !== 'inbound-rtp') continue;
    const mid = str(entry, 'mid');
    const trackId = mid === null ? null : (trackByMid.get(mid) ?? null);
    result.inbound.push({
      trackId,
      mid,
      kind: str(entry, 'kind') ?? '',
      codec: codecOf(inbound, entry),
      framesDecoded: num(entry, 'framesDecoded'),
      frameWidth: num(entry, 'frameWidth'),
      frameHeight: num(entry, 'frameHeight'),
      packetsReceived: num(entry, 'packetsReceived'),
      packetsLost: num(entry, 'packetsLost'),
      bytesReceived: num(entry, 'bytesReceived'),
      pliCount: num(entry, 'pliCount'),
      nackCount: num(entry, 'nackCount'),
      freezeCount: num(entry, 'freezeCount'),
      layers: trackId === null ? null : (room.currentLayers(trackId) ?? null),
    });
  }

  const outbound = await statsEntries(room.publisher.pc);
  for (const entry of outbound.values()) {
    if (entry['type'] !== 'outbound-rtp') continue;
    result.outbound.push({
      mid: str(entry, 'mid'),
      rid: str(entry, 'rid'),
      kind: str(entry, 'kind') ?? '',
      codec: codecOf(outbound, entry),
      framesEncoded: num(entry, 'framesEncoded'),
      packetsSent: num(entry, 'packetsSent'),
      frameWidth: num(entry, 'frameWidth'),
      frameHeight: num(entry, 'frameHeight'),
      pliCount: num(entry, 'pliCount'),
    });
  }
  return result;
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  void start();
});
leaveButton.addEventListener('click', () => void leave());
chatForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  sendChat(chatText.value);
  chatText.value = '';
});
setState('idle');
if (config.autostart) void start();
