'use strict';
// weir-client and the demo page in headless Chromium against a scripted
// signaling server, with no weir-server involved. The script plays the SFU's
// signaling role; a second page ("the far end") terminates the media with
// plain RTCPeerConnections, so real media flows in both directions:
//   publish:   demo page --offer--> script --> far end answers
//   subscribe: far end offers --> script --offer--> demo page answers
// The page and bundle are served from client/demo and client/dist, the
// files weir-server embeds.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { WebSocketServer } = require('ws');

const { ARTIFACTS, pollUntil } = require('./server.js');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CLIENT = path.resolve(__dirname, '../../client');
const CODECS = ['VP8', 'VP9', 'H264', 'AV1'];
const TIMEOUT_MS = 20000;

let browser;
let tmpDir;
let httpServer;
let baseUrl;
/** The script for the next WebSocket connection: (socket) => void. */
let onConnection = null;

function serveFile(res, file, type) {
  res.writeHead(200, { 'content-type': type });
  res.end(fs.readFileSync(file));
}

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-chromium-'));
  httpServer = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const js = 'text/javascript; charset=utf-8';
    if (url.pathname === '/') serveFile(res, path.join(CLIENT, 'demo/index.html'), 'text/html; charset=utf-8');
    else if (url.pathname === '/client/index.js') serveFile(res, path.join(CLIENT, 'dist/index.js'), js);
    else if (url.pathname === '/client/demo.js') serveFile(res, path.join(CLIENT, 'dist/demo.js'), js);
    else if (url.pathname === '/far-end') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>far end</title>');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  const wss = new WebSocketServer({ server: httpServer, path: '/ws' });
  wss.on('connection', (socket) => {
    const script = onConnection;
    onConnection = null;
    if (script === null) socket.close(1011, 'no script');
    else script(socket);
  });
  await new Promise((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${httpServer.address().port}`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: [
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--autoplay-policy=no-user-gesture-required',
    ],
    env: { ...process.env, TMPDIR: tmpDir },
  });
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (httpServer ? httpServer.close(resolve) : resolve()));
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

/**
 * Runs `handle(message, reply)` for each client message, one at a time in
 * arrival order, and records every message both ways.
 */
function script(socket, handle) {
  const log = { received: [], sent: [], errors: [] };
  const send = (message) => {
    log.sent.push(message);
    socket.send(JSON.stringify(message));
  };
  let queue = Promise.resolve();
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString());
    log.received.push(message);
    queue = queue
      .then(() => handle(message, send))
      .catch((err) => {
        log.errors.push(err.stack ?? String(err));
        send({ type: 'error', id: message.id, code: 'internal', message: err.message });
      });
  });
  return log;
}

/** The far end: a page whose RTCPeerConnections stand in for the SFU's media side. */
async function openFarEnd() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${baseUrl}/far-end`);
  await page.evaluate(() => {
    const waitGathered = (pc) =>
      new Promise((resolve, reject) => {
        if (pc.iceGatheringState === 'complete') return resolve();
        const timer = setTimeout(() => reject(new Error('ICE gathering timed out')), 5000);
        pc.addEventListener('icegatheringstatechange', () => {
          if (pc.iceGatheringState === 'complete') {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    const config = { bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
    const far = {
      receiver: new RTCPeerConnection(config),
      sender: new RTCPeerConnection(config),
      media: null,
      async answerPublish(sdp) {
        await this.receiver.setRemoteDescription({ type: 'offer', sdp });
        await this.receiver.setLocalDescription(await this.receiver.createAnswer());
        await waitGathered(this.receiver);
        return this.receiver.localDescription.sdp;
      },
      async offerTrack(kind) {
        this.media ??= await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
        const track = this.media.getTracks().find((t) => t.kind === kind);
        const transceiver = this.sender.addTransceiver(track, { direction: 'sendonly', streams: [this.media] });
        await this.sender.setLocalDescription(await this.sender.createOffer());
        await waitGathered(this.sender);
        return { sdp: this.sender.localDescription.sdp, mid: transceiver.mid };
      },
      async applyAnswer(sdp) {
        await this.sender.setRemoteDescription({ type: 'answer', sdp });
      },
      async addCandidate(which, candidate) {
        await this[which].addIceCandidate(candidate ?? undefined);
      },
      async inboundVideo() {
        const report = await this.receiver.getStats();
        let video = null;
        report.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind === 'video') {
            video = { framesDecoded: s.framesDecoded ?? 0, codec: report.get(s.codecId)?.mimeType ?? null };
          }
        });
        return video;
      },
    };
    window.far = far;
  });
  return { context, page };
}

async function openDemo(query) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const logs = [];
  page.on('console', (msg) => logs.push(`[demo ${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`[demo pageerror] ${err.message}`));
  await page.goto(`${baseUrl}/?${new URLSearchParams(query)}`, { timeout: 10000 });
  return { context, page, logs };
}

function demoStats(page) {
  return page.evaluate(() => window.weirDemo.stats());
}

/** Payload types of the m=video line, in order, and the codec each names. */
function videoCodecOrder(sdp) {
  const lines = sdp.split(/\r?\n/);
  const mLine = lines.find((l) => l.startsWith('m=video'));
  const pts = mLine.split(' ').slice(3);
  const names = new Map();
  for (const l of lines) {
    const m = /^a=rtpmap:(\d+) ([^/]+)\//.exec(l);
    if (m && !names.has(m[1])) names.set(m[1], m[2]);
  }
  return pts.map((pt) => names.get(pt));
}

async function supportedCodecs() {
  const page = await browser.newPage();
  try {
    return await page.evaluate((codecs) => {
      const has = (caps, c) => (caps?.codecs ?? []).some((x) => x.mimeType.toLowerCase() === `video/${c.toLowerCase()}`);
      return codecs.filter((c) => has(RTCRtpSender.getCapabilities('video'), c) && has(RTCRtpReceiver.getCapabilities('video'), c));
    }, CODECS);
  } finally {
    await page.close();
  }
}

async function withDiagnostics(name, opened, fn) {
  try {
    await fn();
  } catch (err) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const logs = opened.flatMap((o) => o.logs ?? []).join('\n');
    fs.writeFileSync(path.join(ARTIFACTS, `client-${name}-console.log`), logs);
    err.message += `\n--- browser console ---\n${logs.split('\n').slice(-30).join('\n')}`;
    throw err;
  } finally {
    for (const o of opened) await o.context.close();
  }
}

test('the demo publishes with the requested codec first and media reaches the far end', { timeout: 120000 }, async (t) => {
  const codecs = await supportedCodecs();
  t.diagnostic(`codecs this Chromium sends and receives: ${codecs.join(', ')}`);
  for (const codec of codecs) {
    const far = await openFarEnd();
    const opened = [far];
    let log;
    await withDiagnostics(`publish-${codec.toLowerCase()}`, opened, async () => {
      onConnection = (socket) => {
        let mids = [];
        log = script(socket, async (m, send) => {
          if (m.type === 'join') {
            send({ type: 'joined', id: m.id, peerId: 'p-demo', room: m.room, tracks: [] });
          } else if (m.type === 'publish') {
            const sdp = await far.page.evaluate((offer) => window.far.answerPublish(offer), m.sdp);
            send({ type: 'answer', id: m.id, transport: 'publish', sdp });
            mids = [...m.sdp.matchAll(/^a=mid:(\S+)/gm)].map((x) => x[1]);
            for (const [i, mid] of mids.entries()) {
              const kind = i === 0 ? 'audio' : 'video';
              send({ type: 'published', trackId: `t-${mid}`, mid, kind, codec: kind === 'audio' ? 'opus' : codec });
            }
          } else if (m.type === 'candidate') {
            assert.equal(m.transport, 'publish', 'a publish-only demo sends only publish candidates');
            await far.page.evaluate(([c]) => window.far.addCandidate('receiver', c), [m.candidate]);
          }
        });
      };
      const demo = await openDemo({ room: `pub-${codec}`, name: 'A', codec, autostart: '1' });
      opened.push(demo);

      const video = await pollUntil(() => far.page.evaluate(() => window.far.inboundVideo()), (v) => (v?.framesDecoded ?? 0) > 30, {
        timeoutMs: TIMEOUT_MS,
        what: `the far end to decode 30 ${codec} frames`,
      });
      assert.equal(video.codec.toLowerCase(), `video/${codec.toLowerCase()}`);

      const join = log.received.find((m) => m.type === 'join');
      assert.deepEqual({ room: join.room, name: join.name, id: typeof join.id }, { room: `pub-${codec}`, name: 'A', id: 'number' });
      const publish = log.received.find((m) => m.type === 'publish');
      assert.equal(videoCodecOrder(publish.sdp)[0], codec, `first video codec in ${JSON.stringify(videoCodecOrder(publish.sdp))}`);
      assert.match(publish.sdp, /^a=sendonly/m);
      assert.match(publish.sdp, /^a=msid:\S+ \S+/m, 'tracks carry a=msid');
      const candidates = log.received.filter((m) => m.type === 'candidate');
      assert.ok(candidates.length > 0, 'the demo trickles candidates');
      for (const c of candidates) {
        if (c.candidate !== null) assert.equal(typeof c.candidate.candidate, 'string');
      }
      const stats = await pollUntil(() => demoStats(demo.page), (s) => s.published === 2, {
        timeoutMs: 5000,
        what: 'the demo to count both published tracks',
      });
      assert.equal(stats.outbound.find((o) => o.kind === 'video' && o.framesEncoded > 0)?.codec?.toLowerCase(), `video/${codec.toLowerCase()}`);
      assert.deepEqual(await demo.page.evaluate(() => window.weirDemo.errors), []);
      assert.deepEqual(log.errors, []);
    });
  }
});

test('the demo subscribes to announced tracks, answers offers in order and plays them', { timeout: 60000 }, async () => {
  const far = await openFarEnd();
  const opened = [far];
  let log;
  await withDiagnostics('subscribe', opened, async () => {
    const tracks = [];
    // Like the SFU, offer one subscription at a time: the next offer waits
    // for the answer to the previous one.
    let offers = Promise.resolve();
    let answered = null;
    onConnection = (socket) => {
      log = script(socket, async (m, send) => {
        if (m.type === 'join') {
          // One track is already live when the demo joins, the other goes live after.
          send({ type: 'joined', id: m.id, peerId: 'p-demo', room: m.room, tracks: [{ trackId: 't-video', peerId: 'p-far', name: 'Far', kind: 'video', codec: 'VP8' }] });
          send({ type: 'peerJoined', peerId: 'p-far', name: 'Far' });
          send({ type: 'trackPublished', trackId: 't-audio', peerId: 'p-far', name: 'Far', kind: 'audio', codec: 'opus' });
        } else if (m.type === 'subscribe') {
          offers = offers.then(async () => {
            const kind = m.trackId === 't-video' ? 'video' : 'audio';
            const { sdp, mid } = await far.page.evaluate((k) => window.far.offerTrack(k), kind);
            tracks.push({ mid, trackId: m.trackId, kind });
            const done = new Promise((resolve) => (answered = resolve));
            send({ type: 'offer', id: m.id, sdp, tracks: [...tracks] });
            await done;
          }).catch((err) => log.errors.push(err.stack));
        } else if (m.type === 'answer') {
          assert.notEqual(answered, null, 'an answer with no offer outstanding');
          await far.page.evaluate((sdp) => window.far.applyAnswer(sdp), m.sdp);
          send({ type: 'answerAccepted', id: m.id });
          const resolve = answered;
          answered = null;
          resolve();
        } else if (m.type === 'candidate') {
          assert.equal(m.transport, 'subscribe', 'a watching demo sends only subscribe candidates');
          await far.page.evaluate(([c]) => window.far.addCandidate('sender', c), [m.candidate]);
        }
      });
    };
    const demo = await openDemo({ room: 'sub', name: 'B', publish: '0', autostart: '1' });
    opened.push(demo);
    const first = await pollUntil(
      () => demoStats(demo.page),
      (s) => (s.inbound.find((x) => x.kind === 'video')?.framesDecoded ?? 0) > 30,
      { timeoutMs: TIMEOUT_MS, what: 'the demo to decode 30 frames' },
    );
    const video = first.inbound.find((x) => x.kind === 'video');
    assert.equal(video.trackId, 't-video');
    const audioBefore = first.inbound.find((x) => x.kind === 'audio')?.packetsReceived ?? 0;
    const second = await pollUntil(
      () => demoStats(demo.page),
      (s) => (s.inbound.find((x) => x.kind === 'audio')?.packetsReceived ?? 0) > audioBefore,
      { timeoutMs: 10000, what: 'the demo to receive audio' },
    );
    assert.equal(second.inbound.find((x) => x.kind === 'audio').trackId, 't-audio');

    // Each of the two offers was answered exactly once.
    assert.equal(log.received.filter((m) => m.type === 'subscribe').length, 2);
    assert.equal(log.received.filter((m) => m.type === 'answer').length, 2);
    const playing = await demo.page.evaluate(() => {
      const v = document.querySelector('.tile video');
      return { tracks: v.srcObject.getTracks().map((x) => x.kind).sort(), paused: v.paused, muted: v.muted };
    });
    assert.deepEqual(playing, { tracks: ['audio', 'video'], paused: false, muted: false });
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await demo.page.screenshot({ path: path.join(ARTIFACTS, 'client-subscribe.png') });
    assert.deepEqual(await demo.page.evaluate(() => window.weirDemo.errors), []);
    assert.deepEqual(log.errors, []);
  });
});

test('server errors reach the caller with their code, and the room stays usable', { timeout: 30000 }, async () => {
  onConnection = (socket) => {
    script(socket, async (m, send) => {
      if (m.type === 'join') send({ type: 'joined', id: m.id, peerId: 'p1', room: m.room, tracks: [] });
      else if (m.type === 'subscribe') send({ type: 'error', id: m.id, code: 'unknown_track', message: `no track ${m.trackId}` });
      else if (m.type === 'unsubscribe') send({ type: 'unsubscribed', id: m.id, trackId: m.trackId });
      else if (m.type === 'leave') socket.close(1000);
    });
  };
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/far-end`);
    const result = await page.evaluate(async (url) => {
      const { Room } = await import('/client/index.js');
      const room = await Room.connect(url, 'errors', 'E', { requestTimeoutMs: 3000 });
      const out = { peerId: room.peerId };
      try {
        await room.subscribe('t-missing');
      } catch (err) {
        out.subscribe = { name: err.name, code: err.code, requestId: typeof err.requestId };
      }
      await room.unsubscribe('t-other');
      out.unsubscribed = true;
      await room.leave();
      try {
        await room.unsubscribe('t-other');
      } catch (err) {
        out.afterLeave = err.code;
      }
      return out;
    }, `${baseUrl.replace('http', 'ws')}/ws`);
    assert.deepEqual(result, {
      peerId: 'p1',
      subscribe: { name: 'WeirError', code: 'unknown_track', requestId: 'number' },
      unsubscribed: true,
      afterLeave: 'closed',
    });
  } finally {
    await context.close();
  }
});

test('a refused join rejects Room.connect with the server code', { timeout: 30000 }, async () => {
  onConnection = (socket) => {
    script(socket, async (m, send) => {
      send({ type: 'error', id: m.id, code: 'bad_room', message: 'room names are [A-Za-z0-9_-]{1,64}' });
    });
  };
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${baseUrl}/far-end`);
    const code = await page.evaluate(async (url) => {
      const { Room } = await import('/client/index.js');
      return Room.connect(url, 'bad room', undefined).then(
        () => 'joined',
        (err) => err.code,
      );
    }, `${baseUrl.replace('http', 'ws')}/ws`);
    assert.equal(code, 'bad_room');
  } finally {
    await context.close();
  }
});
