'use strict';
// End to end with headless Chromium: page A publishes the fake camera and
// microphone with one codec, page B subscribes, and B must decode A's video
// in that codec and receive its audio.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const { ARTIFACTS, pollUntil, startServer } = require('./server.js');
const chromium = require('./chromium.js');
const { demoStats: stats } = chromium;

// With WEIR_DEMO_FROM_CLIENT=1 the pages load the demo and bundle from
// client/ (served on another loopback port, with `ws=` pointing at the
// server) instead of the copies embedded in the server binary: for working on
// the client without rebuilding the server. Off by default, so the test checks
// what the server really serves.
const DEMO_FROM_CLIENT = process.env.WEIR_DEMO_FROM_CLIENT === '1';
const CLIENT = path.resolve(__dirname, '../../client');
const CODECS = ['VP8', 'VP9', 'H264', 'AV1'];
const MEDIA_TIMEOUT_MS = 20000;

let server;
/** Where the pages load the demo from: the server, or a static server of client/. */
let demoUrl;
let staticServer;
let browser;
let closeBrowser;
/** codec → null if this Chromium sends and receives it, else the reason to skip. */
const unsupported = new Map();

before(async () => {
  server = await startServer('media');
  demoUrl = server.url;
  if (DEMO_FROM_CLIENT) {
    const files = { '/': 'demo/index.html', '/client/index.js': 'dist/index.js', '/client/demo.js': 'dist/demo.js' };
    staticServer = http.createServer((req, res) => {
      const file = files[new URL(req.url, 'http://x').pathname];
      if (file === undefined) {
        res.writeHead(404);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': file.endsWith('.html') ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8' });
      res.end(fs.readFileSync(path.join(CLIENT, file)));
    });
    await new Promise((resolve) => staticServer.listen(0, '127.0.0.1', resolve));
    demoUrl = `http://127.0.0.1:${staticServer.address().port}`;
    console.log(`WEIR_DEMO_FROM_CLIENT=1: demo from ${CLIENT}, not from the server binary`);
  }
  ({ browser, close: closeBrowser } = await chromium.launchChromium());
  const page = await browser.newPage();
  try {
    const caps = await page.evaluate(() => ({
      send: (RTCRtpSender.getCapabilities('video')?.codecs ?? []).map((c) => c.mimeType.toLowerCase()),
      receive: (RTCRtpReceiver.getCapabilities('video')?.codecs ?? []).map((c) => c.mimeType.toLowerCase()),
    }));
    for (const codec of CODECS) {
      const mime = `video/${codec.toLowerCase()}`;
      if (!caps.send.includes(mime)) unsupported.set(codec, `this Chromium cannot send ${codec}`);
      else if (!caps.receive.includes(mime)) unsupported.set(codec, `this Chromium cannot receive ${codec}`);
    }
  } finally {
    await page.close();
  }
});

after(async () => {
  await closeBrowser?.();
  await server?.stop();
  await new Promise((resolve) => (staticServer ? staticServer.close(resolve) : resolve()));
});

/** Opens the demo in a fresh browser context, recording console output. */
function openDemo(query, label) {
  const params = new URLSearchParams(query);
  if (DEMO_FROM_CLIENT) params.set('ws', server.wsUrl);
  return chromium.openDemo(browser, `${demoUrl}/?${params}`, label);
}

function video(s) {
  return chromium.inbound(s, 'video');
}

function audio(s) {
  return chromium.inbound(s, 'audio');
}

for (const codec of CODECS) {
  test(`B receives A's camera in ${codec} and its microphone`, { timeout: 90000 }, async (t) => {
    const reason = unsupported.get(codec);
    if (reason !== undefined) {
      console.log(`skipping ${codec}: ${reason}`);
      t.skip(reason);
      return;
    }
    // Failure artifacts of an earlier run would mislead.
    for (const stale of ['console.log', 'failed-A.png', 'failed-B.png', 'subscriber.png']) {
      fs.rmSync(path.join(ARTIFACTS, `browser-${codec.toLowerCase()}-${stale}`), { force: true });
    }
    const room = `media-${codec.toLowerCase()}-${process.pid}-${Date.now()}`;
    const opened = [];
    try {
      const a = await openDemo({ room, name: 'A', codec, autostart: '1' }, 'A');
      opened.push(a);
      const aStats = await pollUntil(
        () => stats(a.page),
        (s) => s.outbound.some((o) => o.kind === 'video' && o.framesEncoded > 0),
        { timeoutMs: MEDIA_TIMEOUT_MS, what: 'A to encode video' },
      );
      const sent = aStats.outbound.find((o) => o.kind === 'video' && o.framesEncoded > 0);
      assert.equal(sent.codec?.toLowerCase(), `video/${codec.toLowerCase()}`, `A sends ${sent.codec}, not ${codec}`);
      // The server announces each track once its first packet arrives.
      await pollUntil(() => stats(a.page), (s) => s.published >= 2, {
        timeoutMs: MEDIA_TIMEOUT_MS,
        what: 'the server to report both of A\'s tracks published',
      });

      const b = await openDemo({ room, name: 'B', publish: '0', autostart: '1' }, 'B');
      opened.push(b);
      const bStats = await pollUntil(() => stats(b.page), (s) => (video(s)?.framesDecoded ?? 0) > 30, {
        timeoutMs: MEDIA_TIMEOUT_MS,
        what: 'B to decode 30 video frames',
      });
      const inVideo = video(bStats);
      assert.equal(inVideo.codec?.toLowerCase(), `video/${codec.toLowerCase()}`, `B receives ${inVideo.codec}, not ${codec}`);
      assert.ok(inVideo.frameWidth > 0 && inVideo.frameHeight > 0, `B's frame size is ${inVideo.frameWidth}x${inVideo.frameHeight}`);

      const firstAudio = audio(bStats)?.packetsReceived ?? 0;
      await pollUntil(() => stats(b.page), (s) => (audio(s)?.packetsReceived ?? 0) > firstAudio, {
        timeoutMs: 10000,
        what: `B's audio packetsReceived to grow past ${firstAudio}`,
      });

      const errors = await b.page.evaluate(() => window.weirDemo.errors);
      assert.deepEqual(errors, [], 'B shows no errors');
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await b.page.screenshot({ path: path.join(ARTIFACTS, `browser-${codec.toLowerCase()}-subscriber.png`) });
      console.log(`${codec}: ${JSON.stringify(inVideo)}`);
    } catch (err) {
      const logs = opened.flatMap((o) => o.logs).join('\n');
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      fs.writeFileSync(path.join(ARTIFACTS, `browser-${codec.toLowerCase()}-console.log`), logs);
      for (const o of opened) {
        await o.page
          .screenshot({ path: path.join(ARTIFACTS, `browser-${codec.toLowerCase()}-failed-${o.label}.png`) })
          .catch(() => undefined);
      }
      err.message += `\n--- browser console ---\n${logs.split('\n').slice(-30).join('\n')}\n--- ${server.logPath} ---\n${server.logTail(30)}`;
      throw err;
    } finally {
      for (const o of opened) await o.context.close();
    }
  });
}

test('B unsubscribes and resubscribes, then sees A leave', { timeout: 90000 }, async () => {
  const room = `media-resub-${process.pid}-${Date.now()}`;
  const opened = [];
  try {
    const a = await openDemo({ room, name: 'A', codec: 'VP8', autostart: '1' }, 'A');
    opened.push(a);
    await pollUntil(() => stats(a.page), (s) => s.published >= 2, { timeoutMs: MEDIA_TIMEOUT_MS, what: 'A to be published' });
    const b = await openDemo({ room, name: 'B', publish: '0', autostart: '1' }, 'B');
    opened.push(b);
    const first = await pollUntil(() => stats(b.page), (s) => (video(s)?.framesDecoded ?? 0) > 10, {
      timeoutMs: MEDIA_TIMEOUT_MS,
      what: 'B to decode video',
    });
    const trackId = video(first).trackId;
    assert.ok(trackId, `B's video has a room track id: ${JSON.stringify(first)}`);

    // Unsubscribe: the server replies, then re-offers without the track; B answers on its own.
    const after = await b.page.evaluate(async (id) => {
      const r = window.weirDemo.room;
      await r.unsubscribe(id);
      const deadline = Date.now() + 10000;
      while (r.subscriber.tracks.has(id) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      return { stillThere: r.subscriber.tracks.has(id), transceivers: r.subscriber.pc.getTransceivers().length };
    }, trackId);
    assert.equal(after.stillThere, false, 'the re-offer without the track was applied');

    // Subscribe again: the track comes back and decodes.
    const decodedBefore = await b.page.evaluate(async (id) => {
      const track = await window.weirDemo.room.subscribe(id);
      return track.kind;
    }, trackId);
    assert.equal(decodedBefore, 'video');
    await pollUntil(
      () => stats(b.page),
      (s) => s.inbound.some((t) => t.trackId === trackId && t.framesDecoded > 10),
      { timeoutMs: MEDIA_TIMEOUT_MS, what: 'B to decode the resubscribed video' },
    );

    // A leaves: B hears trackUnpublished for both tracks and peerLeft, and drops A's tile.
    await a.page.evaluate(() => window.weirDemo.leave());
    await pollUntil(
      () => b.page.evaluate(() => ({ tiles: document.querySelectorAll('.tile').length, tracks: window.weirDemo.room.remoteTracks.length })),
      (s) => s.tiles === 0 && s.tracks === 0,
      { timeoutMs: 10000, what: 'B to drop A after A left' },
    );
    assert.deepEqual(await b.page.evaluate(() => window.weirDemo.errors), [], 'B shows no errors');
  } catch (err) {
    const logs = opened.flatMap((o) => o.logs).join('\n');
    err.message += `\n--- browser console ---\n${logs.split('\n').slice(-30).join('\n')}\n--- ${server.logPath} ---\n${server.logTail(30)}`;
    throw err;
  } finally {
    for (const o of opened) await o.context.close();
  }
});
