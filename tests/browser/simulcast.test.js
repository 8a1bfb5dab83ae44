'use strict';
// End to end with headless Chromium: page A publishes the fake camera at
// 1280x720 as three simulcast encodings (q, h, f), in VP8 and then H264;
// page B subscribes and switches layers through `setPreferredLayers`: high
// (1280 wide) → low (320) → high again, watching getStats() (no freeze
// longer than 500 ms) and the server's `layersChanged`.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { ARTIFACTS, pollUntil, startServer } = require('./server.js');
const chromium = require('./chromium.js');
const { demoStats: stats, freezes, longestFreezeBound } = chromium;

const MEDIA_TIMEOUT_MS = 20000;
// The publisher's own bandwidth estimate decides when its top layer starts,
// and it reads our transport-cc feedback. With one arrival time per receive
// batch, a loaded server made Chromium take ~20 s in about 1 run in 4; with
// the kernel's receive stamps every run of 50 (load 7-19) had the top layer
// within 130 ms. Issue 7 asks for all three layers within 10 s.
const RAMP_TIMEOUT_MS = 10000;
/** How long a requested switch may take to show in the subscriber's getStats(). */
const SWITCH_TIMEOUT_MS = 5000;
/** Frame widths of the three encodings of a 1280x720 capture, lowest first. */
const WIDTHS = [320, 640, 1280];
/** Longest stall a switch may cause: the bound. */
const MAX_FREEZE_S = 0.5;

let server;
let browser;
let closeBrowser;

before(async () => {
  server = await startServer('simulcast');
  ({ browser, close: closeBrowser } = await chromium.launchChromium());
});

after(async () => {
  await closeBrowser?.();
  await server?.stop();
});

/** Opens the demo in a fresh browser context, recording console output. */
function openDemo(query, label) {
  return chromium.openDemo(browser, `${server.url}/?${new URLSearchParams(query)}`, label);
}

function video(s) {
  return chromium.inbound(s, 'video');
}

/** Whether this Chromium can send and receive `codec` (H264 depends on the build). */
async function supports(codec) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${server.url}/`, { timeout: 10000 });
    return await page.evaluate((mime) => {
      const has = (caps) => (caps?.codecs ?? []).some((c) => c.mimeType.toLowerCase() === mime);
      return has(RTCRtpSender.getCapabilities('video')) && has(RTCRtpReceiver.getCapabilities('video'));
    }, `video/${codec.toLowerCase()}`);
  } finally {
    await context.close();
  }
}

/** A's video encodings: rid → { framesEncoded, width }. */
function encodings(s) {
  return Object.fromEntries(
    s.outbound
      .filter((o) => o.kind === 'video')
      .map((o) => [o.rid ?? '-', { framesEncoded: o.framesEncoded, width: o.frameWidth, height: o.frameHeight, pliCount: o.pliCount }]),
  );
}

/**
 * Why A's encodings are what they are: per rid, Chromium's quality limitation
 * and target bit rate, and the send-side bandwidth estimate.
 */
function publisherDiagnostics(page) {
  return page.evaluate(async () => {
    const report = await window.weirDemo.room.publisher.pc.getStats();
    const out = { availableOutgoingBitrate: null, encodings: {} };
    report.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.encodings[s.rid ?? '-'] = {
          framesEncoded: s.framesEncoded,
          frameWidth: s.frameWidth,
          targetBitrate: s.targetBitrate,
          qualityLimitationReason: s.qualityLimitationReason,
          qualityLimitationDurations: s.qualityLimitationDurations,
          active: s.active,
        };
      }
      if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate !== undefined) {
        out.availableOutgoingBitrate = s.availableOutgoingBitrate;
      }
    });
    return out;
  });
}

for (const codec of ['VP8', 'H264']) test(`B switches A's ${codec} simulcast high → low → high`, { timeout: 120000 }, async (t) => {
  if (!(await supports(codec))) {
    t.skip(`this Chromium cannot send and receive ${codec}`);
    return;
  }
  const tag = codec === 'VP8' ? 'simulcast' : `simulcast-${codec.toLowerCase()}`;
  for (const stale of ['console.log', 'failed-A.png', 'failed-B.png']) {
    fs.rmSync(path.join(ARTIFACTS, `browser-${tag}-${stale}`), { force: true });
  }
  const t0 = Date.now();
  const since = () => `${((Date.now() - t0) / 1000).toFixed(2)} s`;
  const log = (line) => console.log(`[${since()}] ${line}`);
  const room = `${tag}-${process.pid}-${Date.now()}`;
  const opened = [];
  /** Every distinct frame width B decoded, with when it was first seen. */
  const widths = [];
  const sample = async (page) => {
    const s = await stats(page);
    const v = video(s);
    if (v !== undefined && v.frameWidth > 0 && widths[widths.length - 1]?.width !== v.frameWidth) {
      widths.push({ width: v.frameWidth, height: v.frameHeight, at: since() });
      log(`B decodes ${v.frameWidth}x${v.frameHeight} (framesDecoded ${v.framesDecoded}, pliCount ${v.pliCount}, packetsLost ${v.packetsLost}, nackCount ${v.nackCount}, layers ${JSON.stringify(v.layers)})`);
    }
    return s;
  };
  try {
    const a = await openDemo({ room, name: 'A', codec, simulcast: '1', chat: '0', autostart: '1' }, 'A');
    opened.push(a);
    await pollUntil(() => stats(a.page), (s) => s.published >= 2, {
      timeoutMs: MEDIA_TIMEOUT_MS,
      what: 'the server to report both of A\'s tracks published',
    });
    const aStats = await stats(a.page);
    const rids = aStats.outbound.filter((o) => o.kind === 'video').map((o) => o.rid);
    log(`A publishes; video outbound rids ${JSON.stringify(rids)}`);
    assert.deepEqual([...rids].sort(), ['f', 'h', 'q'], 'A sends three encodings: the answer accepted the rids');

    const b = await openDemo({ room, name: 'B', publish: '0', chat: '0', autostart: '1' }, 'B');
    opened.push(b);
    const first = await pollUntil(() => sample(b.page), (s) => (video(s)?.framesDecoded ?? 0) > 0, {
      timeoutMs: MEDIA_TIMEOUT_MS,
      what: 'B to decode A\'s video',
    });
    const trackId = video(first).trackId;
    assert.ok(trackId, `B's video has a room track id: ${JSON.stringify(first)}`);
    log(`B decodes track ${trackId}`);

    // The errors the protocol promises.
    const errors = await b.page.evaluate(async (id) => {
      const code = (p) => p.then(() => 'ok', (e) => e.code);
      const r = window.weirDemo.room;
      return {
        unknown: await code(r.setPreferredLayers('no-such-track', 0, 0)),
        range: await code(r.setPreferredLayers(id, 4, 0)),
        negative: await code(r.setPreferredLayers(id, 0, -1)),
      };
    }, trackId);
    assert.deepEqual(errors, { unknown: 'unknown_track', range: 'bad_message', negative: 'bad_message' });

    // 1. The top layer, once A's bandwidth estimate allows all three.
    const rampStart = Date.now();
    let top;
    try {
      top = await pollUntil(() => sample(b.page), (s) => video(s)?.frameWidth === WIDTHS[2], {
        timeoutMs: RAMP_TIMEOUT_MS,
        what: `B to decode ${WIDTHS[2]} wide frames`,
      });
    } catch (err) {
      const enc = await publisherDiagnostics(a.page);
      throw new Error(
        `this Chromium did not reach the ${WIDTHS[2]}-wide layer within ${RAMP_TIMEOUT_MS / 1000} s: ` +
          `B decoded widths ${JSON.stringify(widths)}; A's encodings ${JSON.stringify(enc)}\n${err.message}`,
      );
    }
    log(`top layer after ${Date.now() - rampStart} ms; A: ${JSON.stringify(await publisherDiagnostics(a.page))}`);
    const active = Object.values(encodings(await stats(a.page))).filter((e) => e.framesEncoded > 0).length;
    assert.equal(active, 3, 'A encodes three layers');

    const switchTo = async (spatial, before) => {
      const started = Date.now();
      const frozeBefore = await freezes(b.page);
      const reply = await b.page.evaluate(([id, s]) => window.weirDemo.layers.set(id, s), [trackId, spatial]);
      assert.equal(reply.spatial, spatial, `preferredLayersSet echoes spatial ${spatial}`);
      let s;
      try {
        s = await pollUntil(() => sample(b.page), (x) => video(x)?.frameWidth === WIDTHS[spatial], {
          timeoutMs: SWITCH_TIMEOUT_MS,
          intervalMs: 100,
          what: `B to decode ${WIDTHS[spatial]} wide frames after asking for spatial ${spatial}`,
        });
      } catch (err) {
        err.message += `; B decoded widths ${JSON.stringify(widths)}; A's encodings ${JSON.stringify(encodings(await stats(a.page)))}`;
        throw err;
      }
      const tookMs = Date.now() - started;
      const v = video(s);
      log(`spatial ${spatial}: ${v.frameWidth}x${v.frameHeight} after ${tookMs} ms (framesDecoded ${v.framesDecoded}, pliCount ${v.pliCount}, freezeCount ${v.freezeCount})`);
      // The server reports the switch it made.
      const layers = await pollUntil(
        () => b.page.evaluate((id) => window.weirDemo.layers.current(id), trackId),
        (l) => l?.spatial === spatial,
        { timeoutMs: SWITCH_TIMEOUT_MS, intervalMs: 100, what: `layersChanged with spatial ${spatial}` },
      );
      log(`layersChanged: ${JSON.stringify(layers)}`);
      // Frames keep coming at the new size.
      const later = await pollUntil(
        () => sample(b.page),
        (x) => (video(x)?.framesDecoded ?? 0) > v.framesDecoded + 15,
        { timeoutMs: SWITCH_TIMEOUT_MS, what: `B's framesDecoded to grow past ${v.framesDecoded + 15} at spatial ${spatial}` },
      );
      assert.ok(video(later).framesDecoded > before.framesDecoded, 'framesDecoded keeps growing');
      assert.equal(video(later).frameWidth, WIDTHS[spatial], `B stays at ${WIDTHS[spatial]} wide`);
      const frozeAfter = await freezes(b.page);
      const longest = longestFreezeBound(frozeBefore, frozeAfter);
      log(`freezes around the switch: ${JSON.stringify({ frozeBefore, frozeAfter })}`);
      assert.ok(longest <= MAX_FREEZE_S, `B froze up to ${longest.toFixed(3)} s at once switching to spatial ${spatial}`);
      return { tookMs, stats: video(later) };
    };

    // 2. Down to the lowest layer, 3. back up to the top.
    const low = await switchTo(0, video(top));
    const high = await switchTo(2, low.stats);

    const final = video(await stats(b.page));
    const history = await b.page.evaluate(() => window.weirDemo.layers.history);
    log(`layersChanged history: ${JSON.stringify(history)}`);
    log(`B decoded widths: ${JSON.stringify(widths)}`);
    log(`switch times: low ${low.tookMs} ms, high ${high.tookMs} ms; final ${JSON.stringify(final)}`);
    // Each switch needs about one keyframe; a PLI storm would be a bug.
    const aPlis = Object.values(encodings(await stats(a.page))).reduce((n, e) => n + e.pliCount, 0);
    log(`PLIs: B sent ${final.pliCount}, A received ${aPlis} (all encodings)`);
    assert.ok(final.pliCount <= 20, `B sent ${final.pliCount} PLIs`);
    assert.ok(aPlis <= 30, `A received ${aPlis} PLIs in a few seconds: keyframe requests are not throttled`);
    assert.deepEqual(await b.page.evaluate(() => window.weirDemo.errors), [], 'B shows no errors');
    assert.ok(
      await b.page.evaluate(() => document.querySelectorAll('.layer-picker select').length === 1),
      'B shows one layer picker',
    );
  } catch (err) {
    const logs = opened.flatMap((o) => o.logs).join('\n');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, `browser-${tag}-console.log`), logs);
    // The server's counters say which side lost or dropped what.
    const metrics = await fetch(`${server.url}/metrics`).then((r) => r.text(), (e) => `metrics unavailable: ${e.message}`);
    fs.writeFileSync(path.join(ARTIFACTS, `browser-${tag}-metrics.txt`), metrics);
    for (const o of opened) {
      await o.page.screenshot({ path: path.join(ARTIFACTS, `browser-${tag}-failed-${o.label}.png`) }).catch(() => undefined);
    }
    err.message += `\n--- browser console ---\n${logs.split('\n').slice(-30).join('\n')}\n--- ${server.logPath} ---\n${server.logTail(30)}`;
    throw err;
  } finally {
    for (const o of opened) await o.context.close();
  }
});
