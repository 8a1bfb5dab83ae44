'use strict';
// Data channels end to end with headless Chromium: three pages publish a
// "chat" channel each through weir-server and subscribe to the two others;
// 1,000 text and binary messages from each publisher (some of 256 KiB, the
// largest Weir takes) reach every subscriber, none lost or reordered on the
// reliable ordered channels, with their types. Then closing propagates, and
// the demo page's chat box carries a line from one page to another.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const { ARTIFACTS, pollUntil, startServer } = require('./server.js');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const MESSAGES = 1000;
// 3 × 1,000 messages (some 256 KiB) to two subscribers each: ~35 s against
// a release server on this 2-core machine; the margin is for loaded CI.
const TIMEOUT_MS = 120000;

let server;
let browser;
let tmpDir;

before(async () => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-chromium-'));
  server = await startServer('datachannel');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ['--allow-loopback-in-peer-connection'],
    env: { ...process.env, TMPDIR: tmpDir },
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

/** A page on the server's origin (so `/client/index.js` loads), logging its console. */
async function openPage(label, query = 'autostart=0&chat=0&publish=0') {
  const context = await browser.newContext();
  const page = await context.newPage();
  const logs = [];
  page.on('console', (msg) => logs.push(`[${label} ${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`[${label} pageerror] ${err.message}`));
  await page.goto(`${server.url}/?${query}`, { timeout: 10000 });
  await page.waitForFunction(() => window.weirDemo !== undefined, null, { timeout: 5000 });
  return { context, page, logs, label };
}

async function saveArtifacts(name, pages) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const logs = pages.flatMap((p) => p.logs);
  fs.writeFileSync(path.join(ARTIFACTS, `datachannel-${name}-console.log`), logs.join('\n'));
  for (const p of pages) {
    await p.page.screenshot({ path: path.join(ARTIFACTS, `datachannel-${name}-${p.label}.png`) }).catch(() => {});
  }
}

/**
 * Installs, in a page, the message generator and a recorder: message `i`
 * from `sender` is text when `i` is even, binary when odd; binary messages
 * start with `i` (u32, big endian), and every 250th one (i % 250 === 1) is
 * 256 KiB. A recorded message is a short summary: type, length, index and
 * a checksum of its bytes.
 */
async function installHelpers(page) {
  await page.evaluate(() => {
    const fnv = (bytes) => {
      let h = 0x811c9dc5;
      for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
      return h;
    };
    const make = (sender, i) => {
      if (i % 2 === 0) return `${sender} says ${i} ✓`;
      const len = i % 250 === 1 ? 256 * 1024 : 24 + (i % 7);
      const bytes = new Uint8Array(len);
      new DataView(bytes.buffer).setUint32(0, i);
      for (let k = 4; k < len; k++) bytes[k] = (k * 31 + i) & 0xff;
      return bytes;
    };
    const summary = (data) =>
      typeof data === 'string'
        ? `t:${data}`
        : `b:${data.byteLength}:${new DataView(data).getUint32(0)}:${fnv(new Uint8Array(data))}`;
    const expected = (sender, i) => {
      const m = make(sender, i);
      return typeof m === 'string' ? `t:${m}` : summary(m.buffer);
    };
    window.dc = { make, summary, expected, received: {}, closed: {}, removed: [] };
  });
}

/** Joins `room` with the client library and publishes a reliable ordered "chat" channel. */
async function joinAndPublish(p, wsUrl, room) {
  return p.page.evaluate(
    async ({ wsUrl, room, name }) => {
      const { Room } = await import('/client/index.js');
      const r = await Room.connect(wsUrl, room, name, { requestTimeoutMs: 15000 });
      window.dc.room = r;
      r.on('dataPublisherRemoved', ({ dataId }) => window.dc.removed.push(dataId));
      const pub = await r.publishData('chat', { ordered: true });
      window.dc.pub = pub;
      return { dataId: pub.dataId, peerId: r.peerId, info: pub.info };
    },
    { wsUrl, room, name: p.label },
  );
}

/** Subscribes to each data id and records every message. */
async function subscribeAll(p, ids) {
  return p.page.evaluate(async (ids) => {
    const out = [];
    for (const id of ids) {
      const ch = await window.dc.room.subscribeData(id);
      ch.binaryType = 'arraybuffer';
      const log = [];
      window.dc.received[id] = log;
      window.dc.channels = window.dc.channels ?? {};
      window.dc.channels[id] = ch;
      ch.addEventListener('message', (ev) => log.push(window.dc.summary(ev.data)));
      ch.addEventListener('close', () => {
        window.dc.closed[id] = true;
      });
      out.push({ id, label: ch.label, ordered: ch.ordered, streamId: ch.id, maxRetransmits: ch.maxRetransmits });
    }
    return out;
  }, ids);
}

/** Sends messages 0..n, keeping the channel's buffer under 1 MiB. */
async function sendAll(p, n) {
  await p.page.evaluate(
    async ({ n, sender }) => {
      const ch = window.dc.pub.channel;
      ch.bufferedAmountLowThreshold = 256 * 1024;
      for (let i = 0; i < n; i++) {
        if (ch.bufferedAmount > 1024 * 1024) {
          await new Promise((resolve) => ch.addEventListener('bufferedamountlow', resolve, { once: true }));
        }
        ch.send(window.dc.make(sender, i));
      }
    },
    { n, sender: p.label },
  );
}

/** For each subscribed id: how many arrived and the first mismatch, if any. */
function checkReceived(p, senders, n) {
  return p.page.evaluate(
    ({ senders, n }) =>
      senders.map(({ id, name }) => {
        const log = window.dc.received[id] ?? [];
        let mismatch = null;
        for (let i = 0; i < log.length && mismatch === null; i++) {
          const want = window.dc.expected(name, i);
          if (log[i] !== want) mismatch = { index: i, got: log[i].slice(0, 80), want: want.slice(0, 80) };
        }
        return { from: name, count: log.length, mismatch, done: log.length >= n };
      }),
    { senders, n },
  );
}

test('three pages chat through Weir: every message reaches every subscriber, in order, with its type', { timeout: 240000 }, async () => {
  const pages = [];
  try {
    for (const label of ['ann', 'bob', 'cat']) {
      const p = await openPage(label);
      await installHelpers(p.page);
      pages.push(p);
    }
    const published = [];
    for (const p of pages) published.push(await joinAndPublish(p, server.wsUrl, 'dc-chat'));
    for (const pub of published) {
      assert.equal(pub.info.label, 'chat');
      assert.equal(pub.info.ordered, true);
      assert.equal(pub.info.maxRetransmits, null);
    }
    const others = (i) => published.map((pub, k) => ({ id: pub.dataId, name: pages[k].label })).filter((_, k) => k !== i);
    for (const [i, p] of pages.entries()) {
      const channels = await subscribeAll(p, others(i).map((o) => o.id));
      for (const ch of channels) {
        assert.equal(ch.label, 'chat');
        assert.equal(ch.ordered, true);
        assert.equal(ch.maxRetransmits, null);
        assert.equal(ch.streamId % 2, 1, 'Weir, the DTLS server, opens odd stream ids');
      }
    }
    // Everyone sends at once.
    await Promise.all(pages.map((p) => sendAll(p, MESSAGES)));
    for (const [i, p] of pages.entries()) {
      const senders = others(i);
      const results = await pollUntil(
        () => checkReceived(p, senders, MESSAGES),
        (r) => r.every((x) => x.done || x.mismatch !== null),
        { timeoutMs: TIMEOUT_MS, intervalMs: 500, what: `${p.label} to receive ${MESSAGES} messages from each of the others` },
      );
      for (const r of results) {
        assert.equal(r.mismatch, null, `${p.label} ← ${r.from}: ${JSON.stringify(r.mismatch)}`);
        assert.equal(r.count, MESSAGES, `${p.label} ← ${r.from}: exactly ${MESSAGES} messages`);
      }
    }

    // ann closes her channel: bob's and cat's copies close, and the room says so.
    await pages[0].page.evaluate(() => window.dc.pub.channel.close());
    for (const p of pages.slice(1)) {
      await pollUntil(
        () => p.page.evaluate((id) => ({ closed: window.dc.closed[id] === true, removed: window.dc.removed.includes(id) }), published[0].dataId),
        (s) => s.closed && s.removed,
        { timeoutMs: 15000, what: `${p.label} to see ann's channel close` },
      );
    }
    // bob closes his copy of cat's channel; cat's channel stays open and
    // ann still gets what cat sends.
    const catId = published[2].dataId;
    await pages[1].page.evaluate((id) => window.dc.channels[id].close(), catId);
    await pollUntil(() => pages[1].page.evaluate((id) => window.dc.closed[id] === true, catId), (c) => c, {
      timeoutMs: 15000,
      what: "bob's copy of cat's channel to close",
    });
    await pages[2].page.evaluate(() => window.dc.pub.channel.send('one more'));
    await pollUntil(
      () => pages[0].page.evaluate((id) => window.dc.received[id].length, catId),
      (n) => n === MESSAGES + 1,
      { timeoutMs: 15000, what: "ann to get cat's message after bob left" },
    );
    assert.equal(await pages[2].page.evaluate(() => window.dc.pub.channel.readyState), 'open');
    for (const p of pages) {
      assert.deepEqual(await p.page.evaluate(() => window.weirDemo.errors), [], `${p.label} shows no errors`);
    }
  } finally {
    await saveArtifacts('chat', pages);
    for (const p of pages) await p.context.close();
  }
});

test('the demo page chat box carries a line between two pages', { timeout: 60000 }, async () => {
  const pages = [];
  try {
    const query = (name) => `room=demo-chat&name=${name}&publish=0&chat=1&autostart=1`;
    pages.push(await openPage('A', query('A')));
    pages.push(await openPage('B', query('B')));
    for (const p of pages) {
      await pollUntil(
        () => p.page.evaluate(() => ({ ready: window.weirDemo.chat.ready(), receiving: window.weirDemo.chat.receiving() })),
        (s) => s.ready && s.receiving === 1,
        { timeoutMs: 20000, what: `${p.label} to publish its chat and receive the other's` },
      );
    }
    await pages[0].page.fill('#chat-input', 'hello from A');
    await pages[0].page.click('#chat-send');
    const lines = await pollUntil(
      () => pages[1].page.evaluate(() => window.weirDemo.chat.lines),
      (l) => l.length > 0,
      { timeoutMs: 10000, what: 'B to show the line' },
    );
    assert.deepEqual(lines, [{ from: 'A', text: 'hello from A', binary: false }]);
    assert.match(await pages[1].page.textContent('#chat-log'), /A: hello from A/);
    for (const p of pages) assert.deepEqual(await p.page.evaluate(() => window.weirDemo.errors), []);
  } finally {
    await saveArtifacts('demo', pages);
    for (const p of pages) await p.context.close();
  }
});
