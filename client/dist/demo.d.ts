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
import { Room } from './index.js';
import type { Layers, VideoCodec } from './index.js';
/** The label of the demo's chat channels. */
export declare const CHAT_LABEL = "chat";
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
        history: {
            trackId: string;
            spatial: number;
            temporal: number;
            at: number;
        }[];
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
export declare function readConfig(search: string, origin: {
    protocol: string;
    host: string;
}): DemoConfig;
