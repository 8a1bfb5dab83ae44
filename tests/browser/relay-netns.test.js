'use strict';
// A room across three weir-servers, each on its own network stack.
//
// relay.test.js runs its servers side by side on 127.0.0.1; here each one
// lives in a network namespace of its own, so the relay's QUIC really
// crosses links: a path with a 1,500-byte MTU (loopback's is 65,536), a
// router in between, and addresses that are not loopback. The test re-runs
// itself inside `unshare -rn` (a private user and network namespace, no
// privileges needed outside it) and builds, from there:
//
//              hub: this test, redis-server (10.99.x.254), IPv4 forwarding
//          to-a /           | to-b            \ to-c        (veth pairs)
//   ns a: 10.99.1.1    ns b: 10.99.2.1    ns c: 10.99.3.1
//   weir-server A      weir-server B      weir-server C
//   Chromium (publ.)   Chromium (subscr.) Chromium (subscr.)
//
// Each namespace is held by a process (see netns.childNamespace) and
// entered with nsenter: the servers are started under it, and each
// Chromium is launched through a wrapper script that nsenters its
// server's namespace, so each page reaches its server over that
// namespace's own stack and the media between servers goes A → hub → B
// (and → C) over the veths. The servers find each other through Redis
// (--cluster-redis) on the hub and prove the cluster secret.
//
// Two cases, one after the other on the same servers and pages:
//   - the room opens on A, B and C, then A's page publishes: the
//     subscribers on B and C decode its VP8 video (framesDecoded > 30)
//     relayed across the links, which carried it (the hub's veth counters);
//   - 5 % of what A's relay sends to B is dropped at random on the hub's
//     forward hook (nf_tables `numgen`, as loss.test.js does: this kernel
//     has no sch_netem) for 10 s: B forwards its subscriber's NACKs
//     upstream, A's relay answers them from its ring, and B keeps decoding,
//     freezing little more than C, whose link is left alone, does meanwhile.
//
// Skipped, with the reason, where `unshare -rn`, veth pairs, `nsenter`,
// `nft` or redis-server are missing.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const netns = require('./netns.js');

const { INSIDE } = netns;
// WEIR_LOSS_PERCENT overrides the rate, for comparing with 0 (what the
// machine's load alone costs) by hand.
const LOSS_PERCENT = Number(process.env.WEIR_LOSS_PERCENT ?? 5);
// WEIR_PUBLISHER_FIRST=1 has A's publisher join before anyone on B and C,
// the order that found the relay's peer-listing race (see the first case).
const PUBLISHER_FIRST = process.env.WEIR_PUBLISHER_FIRST === '1';

/** Why this machine cannot run the test, or null. */
function unsupported() {
  for (const [bin, arg] of [['redis-server', '--version'], ['redis-cli', '--version'], ['nsenter', '--version']]) {
    try {
      execFileSync(bin, [arg], { stdio: 'ignore' });
    } catch {
      return `${bin} not runnable (Debian packages redis-server, redis-tools, util-linux)`;
    }
  }
  return netns.unsupported(
    'ip link set lo up && echo 1 > /proc/sys/net/ipv4/ip_forward || exit 1; ' +
      'unshare -n sleep 5 & p=$!; i=0; ' +
      'while [ "$(readlink /proc/$p/ns/net)" = "$(readlink /proc/self/ns/net)" ] && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done; ' +
      'ip link add t0 type veth peer name eth0 netns $p && nsenter -t $p -n ip link set eth0 up && ' +
      'nft add table ip t && nft add chain ip t f "{ type filter hook forward priority 0; }" && ' +
      'nft add rule ip t f udp sport 9 numgen random mod 100 "<" 5 drop; s=$?; kill $p; exit $s',
    'child namespaces, veth, nsenter, ip_forward and nft numgen',
  );
}

if (!INSIDE) {
  const why = unsupported();
  test('a room across servers in three network namespaces, with loss on a relay link', { skip: why ?? false, timeout: 110000 }, () => {
    netns.runInside(__filename, { timeoutMs: 100000, passes: 2 });
  });
} else {
  const WebSocket = require('ws');
  const { CHROMIUM, demoStats: stats, expectRelayedVideo, freezes, launchChromium, openDemo: openDemoAt } = require('./chromium.js');
  const { ARTIFACTS, pollUntil, startServer } = require('./server.js');

  const MEDIA_TIMEOUT_MS = 30000;
  /** How long B is watched under loss. */
  const OBSERVE_MS = 10000;
  const SECRET = `relay-netns-${process.pid}`;
  const RELAY_PORT = 7000;
  const REDIS_PORT = 6379;
  const IDS = ['a', 'b', 'c'];
  /** Namespace `id`'s address; the hub is .254 on each link. */
  const addr = (id) => `10.99.${IDS.indexOf(id) + 1}.1`;
  const hubAddr = (id) => `10.99.${IDS.indexOf(id) + 1}.254`;

  // node:test's runner stops this copy with SIGTERM on a timeout: exit, so
  // that the servers' and namespaces' exit handlers run.
  process.once('SIGTERM', () => process.exit(1));

  const namespaces = new Map();
  const servers = new Map();
  const browsers = new Map();
  /** Each browser's close, which also removes its TMPDIR. */
  const closers = [];
  /** Pages still open at the end, for logs on failure. */
  const opened = [];
  let redis;
  let tmpDir;

  const nft = (...args) => execFileSync('nft', args, { encoding: 'utf8' });
  // From `ip`, not /sys/class/net: sysfs still shows the machine's own
  // namespace, as nothing remounted it in ours.
  const linkBytes = (ifName, dir) => JSON.parse(execFileSync('ip', ['-j', '-s', 'link', 'show', 'dev', ifName], { encoding: 'utf8' }))[0].stats64[dir].bytes;

  /** A private redis-server on the hub, reachable from every namespace. */
  async function startRedis() {
    // Not protected mode: it refuses clients from other hosts without a
    // password, and the servers are other hosts here.
    const child = spawn(
      'redis-server',
      ['--port', String(REDIS_PORT), '--bind', '0.0.0.0', '--protected-mode', 'no', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    const kill = () => child.kill('SIGKILL');
    process.once('exit', kill);
    const cli = (...args) =>
      execFileSync('redis-cli', ['-h', hubAddr('a'), '-p', String(REDIS_PORT), ...args], {
        encoding: 'utf8',
        // Refused connections before the server is up are expected.
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    await pollUntil(() => cli('PING'), (r) => r === 'PONG', { timeoutMs: 10000, intervalMs: 100, what: 'redis-server to answer PING' });
    const stop = async () => {
      process.removeListener('exit', kill);
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
    };
    return { url: `redis://${hubAddr('a')}:${REDIS_PORT}`, cli, stop };
  }

  /** Headless Chromium inside namespace `id`: `{ browser, close }`. */
  function launchIn(id) {
    return launchChromium({
      executablePath: netns.wrapperIn(namespaces.get(id), CHROMIUM, tmpDir),
      // The page comes from 10.99.x.1, not localhost: without this it is
      // not a secure context and has no navigator.mediaDevices.
      args: [`--unsafely-treat-insecure-origin-as-secure=${servers.get(id).url}`],
    });
  }

  before(async () => {
    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-relay-netns-'));
    execFileSync('ip', ['link', 'set', 'lo', 'up']);
    netns.route();
    for (const id of IDS) {
      const ns = await netns.childNamespace();
      process.once('exit', ns.stop);
      namespaces.set(id, ns);
      netns.linkNamespace(ns, { hostIf: `to-${id}`, hostAddr: `${hubAddr(id)}/24`, nsAddr: `${addr(id)}/24` });
    }
    console.log(`namespaces: ${IDS.map((id) => `${id} (pid ${namespaces.get(id).pid}) ${addr(id)}`).join(', ')}`);
    redis = await startRedis();
    for (const id of IDS) {
      const args = ['--media-ip', addr(id), '--node-id', id, '--relay-addr', `${addr(id)}:${RELAY_PORT}`, '--cluster-redis', redis.url];
      servers.set(
        id,
        await startServer(`relay-netns-${id}`, {
          host: addr(id),
          prefix: namespaces.get(id).prefix,
          args,
          // The secret through the environment, as a deployment would pass it.
          env: { WEIR_CLUSTER_SECRET: SECRET },
        }),
      );
    }
    const launched = await Promise.all(IDS.map((id) => launchIn(id)));
    IDS.forEach((id, i) => {
      browsers.set(id, launched[i].browser);
      closers.push(launched[i].close);
    });
  });

  after(async () => {
    for (const o of opened) await o.context.close().catch(() => {});
    for (const close of closers) await close().catch(() => {});
    for (const s of servers.values()) await s.stop();
    await redis?.stop();
    for (const ns of namespaces.values()) ns.stop();
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  });

  /** The demo page of server `id` with `query`, in its own Chromium; its console joins a failure's logs. */
  async function openDemo(id, query, label) {
    const o = await openDemoAt(browsers.get(id), `${servers.get(id).url}/?${new URLSearchParams(query)}`, label);
    opened.push(o);
    return o;
  }

  /**
   * A member of `room` on server `id` that only signals (a WebSocket, no
   * media, subscribing to nothing): it keeps the room open there. Returns
   * `{ close }`.
   */
  async function joinSignalingOnly(id, room) {
    const ws = new WebSocket(servers.get(id).wsUrl);
    const reply = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply to join on ${servers.get(id).wsUrl} within 10 s`)), 10000);
      ws.on('message', (data) => {
        const m = JSON.parse(data.toString('utf8'));
        if (m.id === 1) {
          clearTimeout(timer);
          resolve(m);
        }
      });
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    ws.once('open', () => ws.send(JSON.stringify({ type: 'join', id: 1, room, name: `${id.toUpperCase()}0` })));
    const joined = await reply;
    assert.equal(joined.type, 'joined', JSON.stringify(joined));
    return { close: () => ws.close() };
  }

  /** Server `id`'s relay counters (`weir_relay_*`), as name → value. */
  async function relayMetrics(id) {
    const text = await (await fetch(`${servers.get(id).url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const out = {};
    for (const line of text.split('\n')) {
      const m = line.match(/^weir_relay_(\w+) (\d+)$/);
      if (m) out[m[1].replace(/_total$/, '')] = Number(m[2]);
    }
    return out;
  }

  /**
   * Whether server `id`'s allocator has its (one) subscriber's video
   * paused now, from its per-stream metrics.
   */
  async function videoOutPaused(id) {
    const text = await (await fetch(`${servers.get(id).url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    return text.split('\n').some((l) => /^weir_stream_paused\{direction="out",[^}]*kind="video"\} 1$/.test(l));
  }

  /** Adds the pages' console and the servers' log tails to a failure. */
  function withLogs(err) {
    const logs = opened.flatMap((o) => o.logs).join('\n');
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, 'browser-relay-netns-console.log'), logs);
    const tails = [...servers.values()].map((s) => `--- ${s.logPath} ---\n${s.logTail(20)}`).join('\n');
    err.message += `\n--- browser console ---\n${logs.split('\n').slice(-30).join('\n')}\n${tails}`;
    return err;
  }

  const room = `relay-netns-${process.pid}`;
  /** The subscribers' pages, by server id, for the second case. */
  const subs = new Map();

  test('subscribers on B and C, each in its own network namespace, decode A\'s video relayed over veth links', { timeout: 45000 }, async () => {
    try {
      const linkBefore = { a: linkBytes('to-a', 'rx'), b: linkBytes('to-b', 'tx'), c: linkBytes('to-c', 'tx') };
      // The room first spans the three servers, and only then does A's
      // publisher come. The other order (publisher first, subscribers
      // joining B and C later; WEIR_PUBLISHER_FIRST=1 runs it) lost B's
      // pull in 2 runs of 20 here, until the relay listed a peer before
      // reading from it (B's control reader reported A's track snapshot
      // before B's endpoint listed A in `peers()`, where the server's
      // catalog follower looked it up and skipped the event); 5 of 5
      // since. relay.test.js's Redis case runs that order on loopback.
      const joinSubscribers = async () => {
        for (const id of ['b', 'c']) {
          subs.set(id, await openDemo(id, { room, name: id.toUpperCase(), publish: '0', autostart: '1' }, id.toUpperCase()));
        }
      };
      let pub;
      const publish = async () => {
        pub = await openDemo('a', { room, name: 'A', codec: 'VP8', autostart: '1' }, 'A');
        await pollUntil(() => stats(pub.page), (s) => s.published >= 2, {
          timeoutMs: MEDIA_TIMEOUT_MS,
          what: "server A to report both of the publisher's tracks published",
        });
      };
      if (PUBLISHER_FIRST) {
        await publish();
        await joinSubscribers();
      } else {
        const watcher = await joinSignalingOnly('a', room);
        await joinSubscribers();
        await pollUntil(() => Promise.all(IDS.map(async (id) => (await relayMetrics(id)).live_peers)), (n) => n.every((p) => p === 2), {
          timeoutMs: 15000,
          what: 'every server to be connected to the other two',
        });
        await publish();
        watcher.close();
      }
      for (const [id, sub] of subs) {
        const v = await expectRelayedVideo(sub, MEDIA_TIMEOUT_MS);
        console.log(`${sub.label} (ns ${id}): ${JSON.stringify(v)}`);
      }

      // The directory lists every server with its address on its own link.
      assert.deepEqual(redis.cli('SMEMBERS', `weir:room:${room}`).split('\n').sort(), IDS, 'all three servers host the room');
      for (const id of IDS) assert.equal(redis.cli('GET', `weir:node:${id}`), `${addr(id)}:${RELAY_PORT}`, `${id}'s relay address`);

      const m = Object.fromEntries(await Promise.all(IDS.map(async (id) => [id, await relayMetrics(id)])));
      console.log(`relay counters: ${JSON.stringify(Object.fromEntries(IDS.map((id) => [id, m[id]])))}`);
      assert.ok(m.a.rtp_sent > 0, 'A counts relayed RTP sent');
      assert.equal(m.a.datagram_too_large, 0, 'every RTP packet fits a datagram on a 1,500-byte path');
      // B and C asked for keyframes as their subscribers started; the
      // requests crossed the links back to A's relay and reached the
      // publisher (A has no local subscriber to ask), as FIRs: Chromium
      // negotiates `ccm fir`, which Weir then prefers to PLI (the demo's
      // summary counts PLIs only).
      const requests = await pub.page.evaluate(async () => {
        const report = await window.weirDemo.room.publisher.pc.getStats();
        let out = null;
        report.forEach((s) => {
          if (s.type === 'outbound-rtp' && s.kind === 'video') out = { firCount: s.firCount ?? 0, pliCount: s.pliCount ?? 0 };
        });
        return out;
      });
      console.log(`keyframe requests: A's relay passed ${m.a.keyframe_requests}; the publisher got ${JSON.stringify(requests)}`);
      assert.ok(m.a.keyframe_requests > 0, "B's and C's keyframe requests reached A's relay");
      assert.ok(requests.firCount + requests.pliCount > 0, 'the publisher was asked for a keyframe');
      for (const id of ['b', 'c']) {
        assert.ok(m[id].rtp_received > 0, `${id.toUpperCase()} counts relayed RTP received`);
        assert.ok(m[id].live_pulled_tracks >= 2, `${id.toUpperCase()} pulls A's two tracks`);
        assert.equal(m[id].auth_refused, 0, `${id.toUpperCase()} refused no peer`);
      }
      // What the relay carried crossed the links: out of A's, into B's and C's.
      const link = { a: linkBytes('to-a', 'rx') - linkBefore.a, b: linkBytes('to-b', 'tx') - linkBefore.b, c: linkBytes('to-c', 'tx') - linkBefore.c };
      console.log(`bytes over the links: from A ${link.a}, to B ${link.b}, to C ${link.c}; A relayed ${m.a.rtp_bytes_sent} RTP bytes`);
      assert.ok(link.a >= m.a.rtp_bytes_sent, 'the relayed RTP left A over its link');
      for (const id of ['b', 'c']) assert.ok(link[id] > 50000, `${link[id]} bytes reached ${id.toUpperCase()} over its link`);
    } catch (err) {
      throw withLogs(err);
    }
  });

  test(`${LOSS_PERCENT} % random loss on the A → B link: B's relay NACKs upstream, A retransmits, B keeps decoding`, { timeout: 30000 }, async (t) => {
    if (subs.size !== 2) {
      t.skip('the first case did not get its subscribers going');
      return;
    }
    try {
      const b = subs.get('b');
      const c = subs.get('c');
      nft('add', 'table', 'ip', 'weir');
      nft('add', 'chain', 'ip', 'weir', 'relay_loss', '{ type filter hook forward priority 0; }');
      // Every UDP packet A's relay sends toward B, whatever it carries:
      // QUIC encrypts datagrams and stream frames alike. A → C is left
      // alone: C's page, on the same machine at the same time, shows what
      // the machine's load alone costs.
      nft('add', 'rule', 'ip', 'weir', 'relay_loss', 'ip', 'saddr', addr('a'), 'ip', 'daddr', addr('b'), 'udp', 'sport', String(RELAY_PORT),
        'numgen', 'random', 'mod', '100', '<', String(LOSS_PERCENT), 'counter', 'drop');
      const sample = async () => ({
        a: await relayMetrics('a'),
        b: await relayMetrics('b'),
        vb: await freezes(b.page),
        vc: await freezes(c.page),
        at: Date.now(),
      });
      const first = await sample();
      const samples = [];
      /** Servers that paused their subscriber's video during the window. */
      const paused = new Set();
      while (Date.now() - first.at < OBSERVE_MS) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const v = { b: await freezes(b.page), c: await freezes(c.page) };
        for (const id of ['b', 'c']) if (await videoOutPaused(id)) paused.add(id);
        samples.push(`${v.b.framesDecoded}/${v.c.framesDecoded}`);
      }
      const last = await sample();
      const dropped = Number(nft('list', 'chain', 'ip', 'weir', 'relay_loss').match(/counter packets (\d+)/)[1]);
      const delta = (side, name) => last[side][name] - first[side][name];
      const seconds = (last.at - first.at) / 1000;
      const frozen = { b: delta('vb', 'totalFreezesDuration'), c: delta('vc', 'totalFreezesDuration') };
      const frames = { b: delta('vb', 'framesDecoded'), c: delta('vc', 'framesDecoded') };
      console.log(
        `over ${seconds.toFixed(1)} s: ${dropped} packets dropped A → B; A: nacks_received +${delta('a', 'nacks_received')}, ` +
          `retransmits_sent +${delta('a', 'retransmits_sent')}, retransmit_misses +${delta('a', 'retransmit_misses')}; ` +
          `B: rtp_received +${delta('b', 'rtp_received')}, feedback_sent +${delta('b', 'feedback_sent')}; ` +
          `pages B/C: frames +${frames.b}/+${frames.c} (each second: ${samples.join(', ')}), ` +
          `nackCount +${delta('vb', 'nackCount')}/+${delta('vc', 'nackCount')}, frozen ${frozen.b.toFixed(2)}/${frozen.c.toFixed(2)} s; ` +
          `paused by the allocator: ${[...paused].join(', ') || 'none'}`,
      );
      if (LOSS_PERCENT > 0) {
        assert.ok(dropped > 0, 'the rule dropped packets');
        assert.ok(delta('b', 'feedback_sent') > 0, 'B sent feedback upstream');
        assert.ok(delta('a', 'nacks_received') > 0, "A's relay received NACKs from B");
        assert.ok(delta('a', 'retransmits_sent') > 0, "A's relay retransmitted from its ring");
      }
      // Frames keep coming: at least a few a second on average (the fake
      // camera gives about 20), and B freezes little more than C does
      // (unrepaired, 5 % loss would freeze B most of the time). Unless
      // server B paused B's video: on a loaded machine Chromium reads
      // late, the delay-based estimate sees overuse and the allocator
      // pauses the single VP8 layer for seconds (seen at load 12, on C,
      // without loss). That is the B ↔ server B leg, not the relay; the
      // counters above still tell whether the relay repaired the loss.
      if (paused.has('b')) {
        console.log(`skipping the frame checks: server B paused B's video (machine load: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')})`);
      } else {
        assert.ok(frames.b > 5 * seconds, `B decoded ${frames.b} frames in ${seconds.toFixed(1)} s under loss`);
        assert.ok(
          frozen.b - frozen.c < seconds * 0.3,
          `B froze ${frozen.b.toFixed(2)} s of ${seconds.toFixed(1)} s, C (no loss) ${frozen.c.toFixed(2)} s`,
        );
      }
      assert.deepEqual(await b.page.evaluate(() => window.weirDemo.errors), [], 'B shows no errors');
    } catch (err) {
      throw withLogs(err);
    }
  });
}
