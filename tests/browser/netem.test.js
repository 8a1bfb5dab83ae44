'use strict';
// Headless Chromium behind a capped link. The test re-runs itself inside a
// private network namespace (`unshare -rn`: a user and network namespace,
// no privileges needed outside it), brings its loopback up and shapes it
// with `tc` (HTB + a u32 filter): everything Weir's media ports send is
// held to 500 kbit/s, which is the subscriber's downlink (the publisher
// only gets RTCP from those ports). Page A publishes 1280x720 VP8
// simulcast; page B must end up on a layer that fits: never the 1280-wide
// one (over a megabit), the low or middle one depending on what
// Chromium's encoder makes of them (its 640-wide layer often runs at about
// 300 kbit/s, which fits).
//
// Random loss and delay (`tc netem`) are not used: this machine's kernel
// has no sch_netem and no gact action (`tc qdisc add … netem` answers
// "Specified qdisc kind is unknown"), so only rate shaping is available
// here; loss.test.js drops packets at random with nf_tables instead.
// Where `unshare -rn` or `tc` is missing the test is skipped with the
// reason.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const netns = require('./netns.js');

const CAP = '500kbit';
const { INSIDE } = netns;

/** Why this machine cannot run the test, or null. */
function unsupported() {
  return netns.unsupported(
    'ip link set lo up && tc qdisc add dev lo root handle 1: htb default 10 && ' +
      'tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport 9 0xffff flowid 1:20',
    'tc htb/u32',
  );
}

if (!INSIDE) {
  const why = unsupported();
  // It passed 7 of 10 runs before issue 7's RTX fixes: after B dropped
  // from the 1280-wide layer, retransmissions of the old layer's lost
  // packets took half the capped link while B waited on a keyframe, and
  // publishers' RTX probe copies were forwarded too. Now NACKs for packets
  // from before the latest keyframe or of a layer being left are not
  // answered, retransmissions get what the estimate leaves beside the
  // media, and copies of packets already received are not forwarded.
  test('B gets a simulcast layer that fits a 500 kbit/s downlink (in a network namespace)', { skip: why ?? false, timeout: 200000 }, () => {
    netns.runInside(__filename, { timeoutMs: 190000, passes: 1 });
  });
} else {
  const chromium = require('./chromium.js');
  const { ARTIFACTS, pollUntil, startServer } = require('./server.js');
  const RAMP_TIMEOUT_MS = 45000;
  const SETTLE_TIMEOUT_MS = 60000;

  let server;
  let browser;
  let closeBrowser;

  const tc = (...args) => execFileSync('tc', args, { encoding: 'utf8' });

  before(async () => {
    execFileSync('ip', ['link', 'set', 'lo', 'up']);
    server = await startServer('netem');
    // Everything leaves through lo: a fast default class, and a capped
    // class for what the server's media ports send (two workers).
    tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10');
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit');
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', CAP, 'ceil', CAP);
    // A router-sized queue (about half a second at the cap): HTB's default
    // leaf queue takes lo's 1000 packets, some 16 s of delay, and ICE
    // consent (answered through the same ports) would expire.
    tc('qdisc', 'add', 'dev', 'lo', 'parent', '1:20', 'handle', '20:', 'pfifo', 'limit', '30');
    for (const port of [server.mediaPort, server.mediaPort + 1]) {
      tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
        'match', 'ip', 'protocol', '17', '0xff', 'match', 'ip', 'sport', String(port), '0xffff', 'flowid', '1:20');
    }
    console.log(`capped media from ports ${server.mediaPort}-${server.mediaPort + 1} to ${CAP}`);
    ({ browser, close: closeBrowser } = await chromium.launchChromium());
  });

  after(async () => {
    await closeBrowser?.();
    await server?.stop();
  });

  async function openDemo(query, label) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const logs = [];
    page.on('console', (msg) => logs.push(`[${label} ${msg.type()}] ${msg.text()}`));
    await page.goto(`${server.url}/?${new URLSearchParams(query)}`, { timeout: 10000 });
    await page.waitForFunction(() => window.weirDemo !== undefined, null, { timeout: 5000 });
    return { context, page, logs, label };
  }

  const stats = (page) => page.evaluate(() => window.weirDemo.stats());
  const video = (s) => s.inbound.find((t) => t.kind === 'video');

  /** The server's per-stream metrics for outbound video, as name → value. */
  async function outboundVideoMetrics() {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const out = {};
    for (const line of text.split('\n')) {
      const m = line.match(/^weir_stream_(\w+)\{direction="out",[^}]*kind="video"\} (\d+)$/);
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  }

  test('B gets a simulcast layer that fits a 500 kbit/s downlink', { timeout: 180000 }, async () => {
    const t0 = Date.now();
    const log = (line) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`);
    const room = `netem-${process.pid}`;
    const opened = [];
    try {
      const a = await openDemo({ room, name: 'A', codec: 'VP8', simulcast: '1', chat: '0', autostart: '1' }, 'A');
      opened.push(a);
      // A's uplink is not capped: its three layers start as its estimate
      // grows (transport-cc feedback from Weir).
      await pollUntil(
        () => stats(a.page),
        (s) => s.outbound.filter((o) => o.kind === 'video' && o.framesEncoded > 0 && o.frameWidth >= 1280).length > 0,
        { timeoutMs: RAMP_TIMEOUT_MS, what: 'A to encode its 1280-wide layer' },
      );
      log('A encodes all layers');
      const b = await openDemo({ room, name: 'B', publish: '0', chat: '0', autostart: '1' }, 'B');
      opened.push(b);
      await pollUntil(() => stats(b.page), (s) => (video(s)?.framesDecoded ?? 0) > 0, {
        timeoutMs: 20000,
        what: 'B to decode A\'s video',
      });
      log(`B decodes ${video(await stats(b.page)).frameWidth} wide`);
      // The estimate toward B falls to what the link carries and the
      // allocator picks the layer that fits.
      let trace = [];
      const low = await pollUntil(
        async () => {
          const x = { v: video(await stats(b.page)), m: await outboundVideoMetrics() };
          trace.push(`${x.v?.frameWidth}w/${x.v?.framesDecoded}f/est ${x.m.bandwidth_estimate_bps}/paused ${x.m.paused}`);
          return x;
        },
        (x) => x.v?.frameWidth < 1280 && x.m.paused === 0 && x.m.target_spatial < 2,
        { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 1000, what: 'B to decode a layer below 1280 wide, not paused' },
      ).catch((err) => {
        err.message += `; trace: ${trace.join(' | ')}`;
        throw err;
      });
      log(`trace: ${trace.join(' | ')}`);
      log(`B on a lower layer: ${JSON.stringify(low.v)}; server: ${JSON.stringify(low.m)}`);
      // It stays there, and frames keep coming.
      const frames = low.v.framesDecoded;
      await new Promise((r) => setTimeout(r, 5000));
      const later = { v: video(await stats(b.page)), m: await outboundVideoMetrics() };
      log(`5 s later: ${JSON.stringify(later.v)}; server: ${JSON.stringify(later.m)}`);
      assert.ok(later.v.frameWidth < 1280, `B stays below the top layer (${later.v.frameWidth} wide)`);
      assert.ok(later.m.target_spatial < 2, 'the server does not target the top layer');
      assert.ok(later.m.allocated_bps <= 500000, `the layer given (${later.m.allocated_bps} bit/s) fits the link`);
      // Not full frame rate: the estimate climbs back slowly after the
      // first overshoot, so the allocator may hold the low layer's lower
      // temporal layers for a while.
      assert.ok(later.v.framesDecoded > frames + 10, `frames keep coming (${frames} → ${later.v.framesDecoded})`);
      assert.equal(later.m.paused, 0, 'video is not paused');
      assert.ok(later.m.bandwidth_estimate_bps <= 600000, `estimate ${later.m.bandwidth_estimate_bps} fits the 500 kbit/s link`);
      // Issue 7: the overshoot must not collapse the estimate far below
      // the link (tail drops are not a sign that less gets through).
      assert.ok(later.m.bandwidth_estimate_bps >= 250000, `estimate ${later.m.bandwidth_estimate_bps} did not collapse`);
    } catch (err) {
      const logs = opened.flatMap((o) => o.logs).join('\n');
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      fs.writeFileSync(path.join(ARTIFACTS, 'browser-netem-console.log'), logs);
      err.message += `\n--- ${server.logPath} ---\n${server.logTail(30)}`;
      throw err;
    } finally {
      for (const o of opened) await o.context.close();
    }
  });
}
