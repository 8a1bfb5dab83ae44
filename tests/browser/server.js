'use strict';
// Starts weir-server for a test file and waits for it to be healthy; shared
// helpers for polling with a deadline.

const { spawn } = require('node:child_process');
const dgram = require('node:dgram');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const SERVER_BIN = process.env.WEIR_SERVER_BIN || path.resolve(__dirname, '../../target/debug/weir-server');
const ARTIFACTS = path.resolve(__dirname, '../../test-artifacts');

/** Resolves after `ms`; only for spacing polls, never to wait for a condition. */
function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Calls `probe` until `done(value)` is true and returns that value; throws
 * after `timeoutMs` with `what` and the last value seen, or at once if
 * `probe` throws an error marked `fatal`.
 */
async function pollUntil(probe, done, { timeoutMs, intervalMs = 250, what }) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await probe();
      lastError = undefined;
      if (done(last)) return last;
    } catch (err) {
      if (err.fatal) throw err;
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const seen = lastError ? `last error: ${lastError.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${seen}`);
    }
    await pause(intervalMs);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function bindUdp(port) {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      resolve(null);
    });
    socket.bind(port, '0.0.0.0', () => resolve(socket));
  });
}

/** A base port such that `count` consecutive UDP ports were free a moment ago. */
async function freeUdpBase(count) {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * (40000 - count));
    const sockets = [];
    for (let i = 0; i < count; i++) {
      const socket = await bindUdp(base + i);
      if (socket === null) break;
      sockets.push(socket);
    }
    await Promise.all(sockets.map((s) => new Promise((resolve) => s.close(resolve))));
    if (sockets.length === count) return base;
  }
  throw new Error(`found no ${count} consecutive free UDP ports`);
}

/**
 * Starts weir-server on free ports, logging to test-artifacts/server-<name>.log,
 * and resolves once GET /healthz answers 200. `args` are appended to the
 * command line (clustering flags, say); `env` adds to its environment.
 * `host` is the IP the HTTP listener binds and the returned URLs name
 * (127.0.0.1 unless given); `prefix` is a command the server runs under,
 * such as `['nsenter', '-t', pid, '-n']` to start it in another network
 * namespace (it must exec the server, so that signals reach it).
 */
async function startServer(
  name,
  { workers = 2, healthTimeoutMs = 15000, args: extraArgs = [], env = {}, host = '127.0.0.1', prefix = [] } = {},
) {
  if (!fs.existsSync(SERVER_BIN)) {
    throw new Error(
      `weir-server not found at ${SERVER_BIN}: build it with \`cargo build -p weir-signaling --bin weir-server\` or set WEIR_SERVER_BIN`,
    );
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const httpPort = await freeTcpPort();
  // Room for one media port per worker, and a few spare in case the server
  // uses more than one each.
  const mediaPort = await freeUdpBase(workers * 4);
  const args = ['--http', `${host}:${httpPort}`, '--media-port', String(mediaPort), '--workers', String(workers)];
  // scripts/test re-runs the media tests on the mmsg backend this way.
  if (process.env.WEIR_IO_BACKEND) args.push('--io-backend', process.env.WEIR_IO_BACKEND);
  args.push(...extraArgs);
  const logPath = path.join(ARTIFACTS, `server-${name}.log`);
  const log = fs.createWriteStream(logPath);
  log.write(`$ ${[...prefix, SERVER_BIN, ...args].join(' ')}\n`);
  const [command, ...commandArgs] = [...prefix, SERVER_BIN, ...args];
  const child = spawn(command, commandArgs, {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The data plane's debug lines are its allocation changes (a few per
    // test), which is what a failing media test's log tail should show;
    // Chromium's ClientHello makes the DTLS crate warn about extensions
    // it does not know, dozens of lines that would hide them.
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info,dtls=error,weir_dataplane=debug', ...env },
  });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  let exit = null;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const url = `http://${host}:${httpPort}`;
  const logTail = (lines = 40) => {
    const text = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : '';
    return text.split('\n').slice(-lines).join('\n');
  };
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (exit === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    log.end();
  };

  // Dies at once, like a crashed host: no goodbye to clients or peers.
  const kill = async () => {
    process.removeListener('exit', killOnExit);
    if (exit === null) {
      child.kill('SIGKILL');
      await exited;
    }
    log.end();
  };

  try {
    await pollUntil(
      async () => {
        if (exit !== null) throw Object.assign(new Error(`weir-server exited early (${JSON.stringify(exit)})`), { fatal: true });
        const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
        return res.status;
      },
      (status) => status === 200,
      { timeoutMs: healthTimeoutMs, intervalMs: 100, what: `${url}/healthz to answer 200` },
    );
  } catch (err) {
    await stop();
    throw new Error(`${err.message}\n--- ${logPath} ---\n${logTail()}`);
  }
  return { url, wsUrl: `ws://${host}:${httpPort}/ws`, httpPort, mediaPort, logPath, logTail, stop, kill };
}

module.exports = { ARTIFACTS, SERVER_BIN, freeUdpBase, pause, pollUntil, startServer };
