'use strict';
// Tests that shape or drop traffic run themselves a second time inside a
// private network namespace (`unshare -rn`: a user and network namespace,
// no privileges needed outside it), where they may change lo's qdisc or
// nftables rules without touching the machine's own network.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');

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

module.exports = { INSIDE, unsupported, runInside };
