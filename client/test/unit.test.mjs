// Unit checks of the parts of weir-client that need no browser, run against
// the built dist/index.js. A fake RTCPeerConnection stands in for the browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Emitter,
  SubscribeTransport,
  WeirError,
  parseServerMessage,
  parseVideoCodec,
  preferCodec,
  withTimeout,
} from '../dist/index.js';

const codecs = [
  { mimeType: 'video/VP8', clockRate: 90000 },
  { mimeType: 'video/rtx', clockRate: 90000, sdpFmtpLine: 'apt=96' },
  { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'profile-level-id=42001f' },
  { mimeType: 'video/VP9', clockRate: 90000 },
  { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'profile-level-id=42e01f' },
];

test('preferCodec puts every profile of the codec first and keeps the rest in order', () => {
  const out = preferCodec(codecs, 'H264').map((c) => `${c.mimeType} ${c.sdpFmtpLine ?? ''}`.trim());
  assert.deepEqual(out, [
    'video/H264 profile-level-id=42001f',
    'video/H264 profile-level-id=42e01f',
    'video/VP8',
    'video/rtx apt=96',
    'video/VP9',
  ]);
});

test('preferCodec rejects a codec the browser lacks', () => {
  assert.throws(() => preferCodec(codecs, 'AV1'), (err) => err instanceof WeirError && err.code === 'unsupported_codec');
});

test('parseVideoCodec is case-insensitive and rejects others', () => {
  assert.equal(parseVideoCodec('vp9'), 'VP9');
  assert.equal(parseVideoCodec('av1'), 'AV1');
  assert.equal(parseVideoCodec('theora'), undefined);
  assert.equal(parseVideoCodec(null), undefined);
});

test('parseServerMessage accepts well-formed messages', () => {
  const joined = parseServerMessage(
    JSON.stringify({ type: 'joined', id: 1, peerId: 'p1', room: 'r', tracks: [{ trackId: 't', peerId: 'p2', name: '', kind: 'video', codec: 'VP8' }] }),
  );
  assert.equal(joined.ok, true);
  const error = parseServerMessage(JSON.stringify({ type: 'error', id: 3, code: 'bad_sdp', message: 'no m-lines' }));
  assert.equal(error.ok && error.message.type, 'error');
});

test('parseServerMessage rejects malformed input and tolerates unknown types', () => {
  for (const text of ['{', '[]', '"x"', '{"type":3}', '{"type":"offer","sdp":"v=0"}', '{"type":"joined","id":"1","peerId":"p","room":"r","tracks":[]}']) {
    const r = parseServerMessage(text);
    assert.equal(r.ok, false, text);
    assert.equal(r.ok || r.ignorable, false, text);
  }
  const future = parseServerMessage('{"type":"somethingNew"}');
  assert.equal(future.ok, false);
  assert.equal(future.ok || future.ignorable, true);
});

test('Emitter keeps calling listeners after one throws, and off() removes', () => {
  class E extends Emitter {
    fire(v) {
      this.emit('x', v);
    }
  }
  const e = new E();
  const seen = [];
  const offThrower = e.on('x', () => {
    throw new Error('listener failure');
  });
  const off = e.on('x', (v) => seen.push(v));
  // The listener's error is rethrown from a timer; catch that timer here.
  const realSetTimeout = globalThis.setTimeout;
  const deferred = [];
  globalThis.setTimeout = (fn) => deferred.push(fn);
  try {
    e.fire(1);
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  off();
  offThrower();
  e.fire(2);
  assert.deepEqual(seen, [1]);
  assert.equal(deferred.length, 1);
  assert.throws(deferred[0], /listener failure/);
});

test('withTimeout rejects with a timeout WeirError', async () => {
  await assert.rejects(withTimeout(new Promise(() => {}), 10, 'nothing'), (err) => err instanceof WeirError && err.code === 'timeout');
  assert.equal(await withTimeout(Promise.resolve(7), 1000, 'seven'), 7);
});

/** Just enough of RTCPeerConnection for SubscribeTransport. */
class FakePeerConnection extends EventTarget {
  static log = [];
  remoteDescription = null;
  localDescription = null;
  connectionState = 'new';
  transceivers = [];
  async setRemoteDescription(desc) {
    const n = Number(/o=(\d+)/.exec(desc.sdp)[1]);
    FakePeerConnection.log.push(`srd start ${n}`);
    // Later offers finish sooner, so only the transport's queue keeps order.
    await new Promise((resolve) => setTimeout(resolve, 30 - n * 10));
    if (desc.sdp.includes('broken')) {
      FakePeerConnection.log.push(`srd fail ${n}`);
      throw new Error('bad offer');
    }
    for (const mid of desc.sdp.match(/mid:\w+/g) ?? []) {
      const m = mid.slice(4);
      if (this.transceivers.some((t) => t.mid === m)) continue;
      const transceiver = { mid: m, receiver: { track: { id: `track-${m}` } } };
      this.transceivers.push(transceiver);
      const ev = new Event('track');
      ev.transceiver = transceiver;
      ev.track = transceiver.receiver.track;
      this.dispatchEvent(ev);
    }
    this.remoteDescription = desc;
    FakePeerConnection.log.push(`srd done ${n}`);
  }
  async createAnswer() {
    return { type: 'answer', sdp: `answer to ${this.remoteDescription.sdp}` };
  }
  async setLocalDescription(desc) {
    this.localDescription = desc;
  }
  async addIceCandidate(c) {
    FakePeerConnection.log.push(`candidate ${c?.candidate ?? 'end'}`);
  }
  getTransceivers() {
    return this.transceivers;
  }
  close() {}
}

test('SubscribeTransport applies offers one at a time in arrival order and resolves tracks by mid', async () => {
  globalThis.RTCPeerConnection = FakePeerConnection;
  FakePeerConnection.log = [];
  const sub = new SubscribeTransport();
  const removed = [];
  sub.on('trackremoved', (e) => removed.push(e.trackId));
  const earlyCandidate = sub.addIceCandidate({ candidate: 'c0' });
  const video = sub.track('t-video');
  const a1 = sub.setOffer('o=1 mid:v', [{ mid: 'v', trackId: 't-video', kind: 'video' }]);
  const a2 = sub.setOffer('o=2 broken', []);
  const a3 = sub.setOffer('o=3 mid:v mid:a', [
    { mid: 'v', trackId: 't-video', kind: 'video' },
    { mid: 'a', trackId: 't-audio', kind: 'audio' },
  ]);
  const lateCandidate = sub.addIceCandidate({ candidate: 'c1' });
  assert.equal(await a1, 'answer to o=1 mid:v');
  await assert.rejects(a2, (err) => err instanceof WeirError && err.code === 'negotiation_failed');
  assert.equal(await a3, 'answer to o=3 mid:v mid:a');
  await earlyCandidate;
  await lateCandidate;
  assert.deepEqual((await video).id, 'track-v');
  assert.equal((await sub.track('t-audio')).id, 'track-a');
  assert.deepEqual(FakePeerConnection.log, [
    'srd start 1',
    'srd done 1',
    'candidate c0',
    'srd start 2',
    'srd fail 2',
    'srd start 3',
    'srd done 3',
    'candidate c1',
  ]);

  // The next offer drops the audio m-section's track.
  await sub.setOffer('o=0 mid:v', [{ mid: 'v', trackId: 't-video', kind: 'video' }]);
  assert.deepEqual(removed, ['t-audio']);

  const never = sub.track('t-missing');
  sub.close();
  await assert.rejects(never, (err) => err instanceof WeirError && err.code === 'closed');
});
