'use strict';
// Tests that shape or drop traffic run themselves a second time inside a
// private network namespace (`unshare -rn`: a user and network namespace,
// no privileges needed outside it), where they may change lo's qdisc or
// nftables rules without touching the machine's own network.

const assert = require('node:assert/strict');
const { execFileSync, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

/** Whether this process is the copy running inside the namespace. */
const INSIDE = process.env.WEIR_NETNS === '1';

/**
 * Why this machine cannot run a namespace test, or null: runs the shell
 * line `setup` inside a throwaway `unshare -rn` and reports its failure.
 */
function unsupported(setup, what) {
  const probe = spawnSync('unshare', ['-rn', 'sh', '-c', setup], { encoding: 'utf8' });
  if (probe.error) return `unshare not runnable: ${probe.error.message}`;
  if (probe.status !== 0) return `unshare -rn + ${what} failed: ${probe.stderr.trim()}`;
  return null;
}

/**
 * Runs `file` again inside `unshare -rn`, as a plain script (node:test
 * reports and sets the exit code, and without NODE_TEST_CONTEXT it does not
 * mistake itself for a nested run), passes its output through, and asserts
 * that it passed `passes` cases.
 */
function runInside(file, { timeoutMs, passes }) {
  const env = { ...process.env, WEIR_NETNS: '1' };
  delete env.NODE_TEST_CONTEXT;
  const run = spawnSync('unshare', ['-rn', process.execPath, file], { env, encoding: 'utf8', timeout: timeoutMs });
  process.stdout.write(run.stdout ?? '');
  process.stderr.write(run.stderr ?? '');
  assert.equal(run.status, 0, `the run inside the namespace failed (status ${run.status}, signal ${run.signal})`);
  assert.match(run.stdout, new RegExp(`# pass ${passes}\\b`), `all ${passes} inner case(s) ran and passed`);
}

/** The network namespace a process is in, as `net:[inode]`. */
function netnsOf(pid) {
  return fs.readlinkSync(`/proc/${pid}/ns/net`);
}

/**
 * A child network namespace of the one this process runs in (which must be
 * one it is root of, as inside `runInside`), for tests that put servers on
 * separate network stacks. `ip netns add` needs /run/netns, which an
 * unprivileged user namespace cannot mount, so the namespace is held by a
 * process instead: `unshare -n sh -c 'read _'`, which ends when its stdin
 * closes, so it dies with this process however that ends. Commands enter
 * it with `nsenter -t <pid> -n`, which setns()es and execs without
 * forking: a process started under `prefix` is the command itself.
 *
 * Returns `{ pid, prefix, run(cmd, ...args), stop() }`, once the holder
 * really is in its own namespace (a veth moved to its pid before its
 * unshare() would land in ours). Its loopback is up.
 */
async function childNamespace() {
  const holder = spawn('unshare', ['-n', 'sh', '-c', 'read _'], { stdio: ['pipe', 'ignore', 'inherit'] });
  const ours = netnsOf(process.pid);
  const deadline = Date.now() + 5000;
  for (;;) {
    if (holder.exitCode !== null) throw new Error(`unshare -n exited (${holder.exitCode})`);
    let theirs = null;
    try {
      theirs = netnsOf(holder.pid);
    } catch {
      // Not started yet.
    }
    if (theirs !== null && theirs !== ours) break;
    if (Date.now() > deadline) {
      holder.kill('SIGKILL');
      throw new Error('unshare -n did not enter a new network namespace within 5 s');
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  // Not a reason for node to stay up: stop() or this process's end ends it.
  holder.unref();
  holder.stdin.unref();
  const prefix = ['nsenter', '-t', String(holder.pid), '-n'];
  const run = (cmd, ...args) => execFileSync(prefix[0], [...prefix.slice(1), cmd, ...args], { encoding: 'utf8' });
  run('ip', 'link', 'set', 'lo', 'up');
  const stop = () => {
    if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
  };
  return { pid: holder.pid, prefix, run, stop };
}

/**
 * Connects `ns` (from `childNamespace`) to this namespace with a veth
 * pair: `hostIf` here with `hostAddr`, `eth0` there with `nsAddr` (both
 * CIDR, e.g. 10.99.1.254/24 and 10.99.1.1/24) and a default route back
 * through `hostAddr`, so that with forwarding on here (see `route`) the
 * namespaces linked to this one reach each other through it, like hosts
 * behind one router.
 */
function linkNamespace(ns, { hostIf, hostAddr, nsAddr }) {
  const ip = (...args) => execFileSync('ip', args, { encoding: 'utf8' });
  ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(ns.pid));
  ip('addr', 'add', hostAddr, 'dev', hostIf);
  ip('link', 'set', hostIf, 'up');
  ns.run('ip', 'addr', 'add', nsAddr, 'dev', 'eth0');
  ns.run('ip', 'link', 'set', 'eth0', 'up');
  ns.run('ip', 'route', 'add', 'default', 'via', hostAddr.split('/')[0]);
}

/** Lets this namespace forward IPv4 between the namespaces linked to it. */
function route() {
  fs.writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
}

/**
 * Writes an executable script into `dir` that runs `bin` with its
 * arguments inside `ns`: for launchers that take only an executable path
 * (Playwright's `executablePath`). It execs, so the launcher's pipes and
 * signals reach `bin` itself.
 */
function wrapperIn(ns, bin, dir) {
  const file = path.join(dir, `in-netns-${ns.pid}-${path.basename(bin)}`);
  fs.writeFileSync(file, `#!/bin/sh\nexec ${ns.prefix.join(' ')} '${bin}' "$@"\n`, { mode: 0o755 });
  return file;
}

module.exports = { INSIDE, unsupported, runInside, childNamespace, linkNamespace, route, wrapperIn };
