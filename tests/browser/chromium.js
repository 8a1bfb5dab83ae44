'use strict';
// What the browser tests share: starting headless Chromium with the flags
// WebRTC needs here (fake camera and microphone, loopback candidates),
// opening the demo page in a fresh context, and reading freezes out of
// getStats(). See /work/shared/BROWSER-TESTING.md for why each flag is there.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const assert = require('node:assert/strict');
const { chromium } = require('playwright-core');
const { pollUntil } = require('./server.js');

/** The Chromium binary (Debian's package unless CHROMIUM_BIN says otherwise). */
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

/**
 * Chromium counts a freeze only when a frame comes more than 150 ms later
 * than the average frame interval, so each freeze is longer than that.
 */
const MIN_FREEZE_S = 0.15;

/**
 * Launches headless Chromium with a fake camera and microphone. Returns
 * `{ browser, close }`; `close` also removes the TMPDIR Chromium litters
 * (org.chromium.Chromium.* and pulse-* folders). `executablePath` runs
 * another launcher (a wrapper that enters a network namespace, say) and
 * `args` adds flags.
 */
async function launchChromium({ executablePath = CHROMIUM, args = [] } = {}) {
  const version = execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  console.log(`browser: ${version}`);
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-chromium-'));
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 30000,
    args: [
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--autoplay-policy=no-user-gesture-required',
      ...args,
    ],
    env: { ...process.env, TMPDIR: tmpDir },
  });
  const close = async () => {
    await browser.close();
    fs.rmSync(tmpDir, { recursive: true, force: true });
  };
  return { browser, close };
}

/**
 * Opens `url` (the demo page with its query) in a fresh browser context,
 * recording the page's console, and waits for `window.weirDemo`.
 */
async function openDemo(browser, url, label) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const logs = [];
  page.on('console', (msg) => logs.push(`[${label} ${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`[${label} pageerror] ${err.message}`));
  await page.goto(url, { timeout: 10000 });
  await page.waitForFunction(() => window.weirDemo !== undefined, null, { timeout: 5000 }).catch(() => {
    throw new Error(`${url} has no window.weirDemo: does the server embed client/demo/index.html and client/dist/*.js?`);
  });
  return { context, page, logs, label };
}

/** The demo's own summary of both peer connections. */
function demoStats(page) {
  return page.evaluate(() => window.weirDemo.stats());
}

/** The received track of `kind` in a demo summary. */
function inbound(s, kind) {
  return s.inbound.find((t) => t.kind === kind);
}

/**
 * Waits until the demo page `sub` (from `openDemo`) decodes 30 frames of
 * VP8 relayed from server A, and checks that both of its room tracks come
 * from the relay. Returns the video's stats.
 */
async function expectRelayedVideo(sub, timeoutMs) {
  const s = await pollUntil(() => demoStats(sub.page), (st) => (inbound(st, 'video')?.framesDecoded ?? 0) > 30, {
    timeoutMs,
    what: `the subscriber on ${sub.label} to decode 30 frames relayed from A`,
  });
  const v = inbound(s, 'video');
  assert.equal(v.codec?.toLowerCase(), 'video/vp8', `${sub.label} receives ${v.codec}`);
  assert.ok(v.frameWidth > 0 && v.frameHeight > 0, `${sub.label}'s frame size is ${v.frameWidth}x${v.frameHeight}`);
  const tracks = await sub.page.evaluate(() => window.weirDemo.room.remoteTracks.map((t) => t.peerId));
  assert.deepEqual(tracks.sort(), ['relay:a', 'relay:a'], `${sub.label}'s room tracks come from the relay`);
  return v;
}

/**
 * The subscriber's received-video counters that the demo summary leaves
 * out: freezes (it has only their count), frames decoded and NACKs sent.
 */
function freezes(page) {
  return page.evaluate(async () => {
    const report = await window.weirDemo.room.subscriber.pc.getStats();
    let out = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out = {
          freezeCount: s.freezeCount ?? 0,
          totalFreezesDuration: s.totalFreezesDuration ?? 0,
          framesDecoded: s.framesDecoded ?? 0,
          nackCount: s.nackCount ?? 0,
        };
      }
    });
    return out;
  });
}

/**
 * The longest single freeze between two samples (each with `freezeCount`
 * and `totalFreezesDuration`) is at most the added freeze time minus the
 * shortest the other freezes can be.
 */
function longestFreezeBound(before, after) {
  const count = after.freezeCount - before.freezeCount;
  const total = after.totalFreezesDuration - before.totalFreezesDuration;
  return count <= 0 ? 0 : total - (count - 1) * MIN_FREEZE_S;
}

module.exports = {
  CHROMIUM,
  MIN_FREEZE_S,
  launchChromium,
  openDemo,
  demoStats,
  inbound,
  expectRelayedVideo,
  freezes,
  longestFreezeBound,
};
