'use strict';
// A room across weir-server processes relayed over QUIC on 127.0.0.1.
//
// Static peers (--relay-peer), three servers: a headless Chromium publisher
// on server A, subscribers on B and C must decode its video. Then A dies
// (SIGKILL): the subscribers on B and C must see its tracks end within 3 s,
// the relay's liveness contract (keep-alive 300 ms, idle timeout 1.8 s).
//
// Redis directory (--cluster-redis), two servers and a private redis-server
// on a free port (skipped, saying so, without redis-server): the servers find
// each other through the room; a subscriber on B decodes A's video; B dies
// and its Redis entries expire.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const net = require('node:net');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const { ARTIFACTS, freeUdpBase, pollUntil, startServer } = require('./server.js');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const MEDIA_TIMEOUT_MS = 30000;
const SECRET = `relay-test-${process.pid}`;
/** How soon a dead origin's tracks must end downstream (docs/relay.md). */
const TRACK_END_MS = 3000;

let browser;
let tmpDir;
const servers = new Map();

before(async () => {
  const version = execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  console.log(`browser: ${version}`);
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-chromium-'));
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
  for (const s of servers.values()) await s.stop();
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

/**
 * Starts one server per id: with `redis`, each registers there; else each
 * lists every other as a --relay-peer.
 */
async function startCluster(ids, { redis } = {}) {
  const relay = new Map();
  for (const id of ids) relay.set(id, `127.0.0.1:${await freeUdpBase(1)}`);
  for (const id of ids) {
    const args = ['--node-id', id, '--relay-addr', relay.get(id)];
    if (redis) args.push('--cluster-redis', redis);
    else for (const other of ids) if (other !== id) args.push('--relay-peer', `${other}=${relay.get(other)}`);
    // The secret through the environment, as a deployment would pass it.
    servers.set(id, await startServer(`relay-${redis ? 'redis-' : ''}${id}`, { args, env: { WEIR_CLUSTER_SECRET: SECRET } }));
  }
}

async function openDemo(server, query, label) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const logs = [];
  page.on('console', (msg) => logs.push(`[${label} ${msg.type()}] ${msg.text()}`));
  page.on('pageerror', (err) => logs.push(`[${label} pageerror] ${err.message}`));
  await page.goto(`${server.url}/?${new URLSearchParams(query)}`, { timeout: 10000 });
  await page.waitForFunction(() => window.weirDemo !== undefined, null, { timeout: 5000 });
  return { context, page, logs, label };
}

function stats(page) {
  return page.evaluate(() => window.weirDemo.stats());
}

function video(s) {
  return s.inbound.find((t) => t.kind === 'video');
}

test('a room across three servers: subscribers on B and C decode A, and see its tracks end when A dies', { timeout: 120000 }, async () => {
  await startCluster(['a', 'b', 'c']);
  const room = `relay-${process.pid}-${Date.now()}`;
  const opened = [];
  try {
    const pub = await openDemo(servers.get('a'), { room, name: 'A', codec: 'VP8', autostart: '1' }, 'A');
    opened.push(pub);
    await pollUntil(() => stats(pub.page), (s) => s.published >= 2, {
      timeoutMs: MEDIA_TIMEOUT_MS,
      what: "server A to report both of the publisher's tracks published",
    });

    const subs = [];
    for (const id of ['b', 'c']) {
      const sub = await openDemo(servers.get(id), { room, name: id.toUpperCase(), publish: '0', autostart: '1' }, id.toUpperCase());
      opened.push(sub);
      subs.push(sub);
    }
    for (const sub of subs) {
      const s = await pollUntil(() => stats(sub.page), (st) => (video(st)?.framesDecoded ?? 0) > 30, {
        timeoutMs: MEDIA_TIMEOUT_MS,
        what: `the subscriber on ${sub.label} to decode 30 frames relayed from A`,
      });
      const v = video(s);
      assert.equal(v.codec?.toLowerCase(), 'video/vp8', `${sub.label} receives ${v.codec}`);
      assert.ok(v.frameWidth > 0 && v.frameHeight > 0, `${sub.label}'s frame size is ${v.frameWidth}x${v.frameHeight}`);
      const tracks = await sub.page.evaluate(() => window.weirDemo.room.remoteTracks.map((t) => t.peerId));
      assert.deepEqual(tracks.sort(), ['relay:a', 'relay:a'], `${sub.label}'s room tracks come from the relay`);
      console.log(`${sub.label}: ${JSON.stringify(v)}`);
    }

    // A dies without a word: the relay notices, the relayed tracks end, and
    // the clients on B and C get trackUnpublished.
    await servers.get('a').kill();
    servers.delete('a');
    const killedAt = Date.now();
    for (const sub of subs) {
      await pollUntil(
        () => sub.page.evaluate(() => window.weirDemo.room.remoteTracks.length),
        (n) => n === 0,
        { timeoutMs: Math.max(0, killedAt + TRACK_END_MS - Date.now()), intervalMs: 100, what: `${sub.label} to see A's tracks end` },
      );
      console.log(`${sub.label} saw A's tracks end ${Date.now() - killedAt} ms after A was killed`);
      assert.deepEqual(await sub.page.evaluate(() => window.weirDemo.errors), [], `${sub.label} shows no errors`);
    }
  } catch (err) {
    const logs = opened.flatMap((o) => o.logs).join('\n');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, 'browser-relay-console.log'), logs);
    const tails = [...servers.values()].map((s) => `--- ${s.logPath} ---\n${s.logTail(20)}`).join('\n');
    err.message += `\n--- browser console ---\n${logs.split('\n').slice(-30).join('\n')}\n${tails}`;
    throw err;
  } finally {
    for (const o of opened) await o.context.close();
  }
});

function hasRedis() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
    execFileSync('redis-cli', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A private redis-server on a free port, without persistence. */
async function startRedis() {
  const port = await new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port: p } = s.address();
      s.close(() => resolve(p));
    });
  });
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  const cli = (...args) => execFileSync('redis-cli', ['-p', String(port), ...args], {
      encoding: 'utf8',
      // Refused connections before the server is up are expected.
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  await pollUntil(() => cli('PING'), (r) => r === 'PONG', { timeoutMs: 10000, intervalMs: 100, what: 'redis-server to answer PING' });
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
  };
  return { url: `redis://127.0.0.1:${port}`, cli, stop };
}

test('a room across two servers found through Redis; a dead server\'s entries expire', { timeout: 120000 }, async (t) => {
  if (!hasRedis()) {
    const reason = 'redis-server / redis-cli not installed (apt-get install redis-server)';
    console.log(`skipping: ${reason}`);
    t.skip(reason);
    return;
  }
  for (const s of servers.values()) await s.stop();
  servers.clear();
  const redis = await startRedis();
  const opened = [];
  try {
    await startCluster(['a', 'b'], { redis: redis.url });
    const room = `relay-redis-${process.pid}-${Date.now()}`;
    const pub = await openDemo(servers.get('a'), { room, name: 'A', codec: 'VP8', autostart: '1' }, 'A');
    opened.push(pub);
    await pollUntil(() => stats(pub.page), (s) => s.published >= 2, { timeoutMs: MEDIA_TIMEOUT_MS, what: 'A published' });
    const sub = await openDemo(servers.get('b'), { room, name: 'B', publish: '0', autostart: '1' }, 'B');
    opened.push(sub);
    const s = await pollUntil(() => stats(sub.page), (st) => (video(st)?.framesDecoded ?? 0) > 30, {
      timeoutMs: MEDIA_TIMEOUT_MS,
      what: 'the subscriber on B to decode 30 frames relayed from A',
    });
    console.log(`B via Redis: ${JSON.stringify(video(s))}`);
    assert.deepEqual(redis.cli('SMEMBERS', `weir:room:${room}`).split('\n').sort(), ['a', 'b'], 'both servers host the room');

    // B dies: its node key expires (TTL 3 s) and A drops it from the room.
    await sub.context.close();
    opened.pop();
    await servers.get('b').kill();
    servers.delete('b');
    await pollUntil(() => redis.cli('EXISTS', 'weir:node:b'), (r) => r === '0', { timeoutMs: 15000, what: "B's node key to expire" });
    await pollUntil(() => redis.cli('SMEMBERS', `weir:room:${room}`), (r) => r === 'a', {
      timeoutMs: 15000,
      what: "A to drop dead B from the room's set",
    });
    assert.equal(redis.cli('EXISTS', 'weir:node:a'), '1', "A's heartbeat keeps its key");
  } catch (err) {
    const logs = opened.flatMap((o) => o.logs).join('\n');
    const tails = [...servers.values()].map((sv) => `--- ${sv.logPath} ---\n${sv.logTail(20)}`).join('\n');
    err.message += `\n--- browser console ---\n${logs.split('\n').slice(-30).join('\n')}\n${tails}`;
    throw err;
  } finally {
    for (const o of opened) await o.context.close();
    for (const sv of servers.values()) await sv.stop();
    servers.clear();
    await redis.stop();
  }
});
