#!/usr/bin/env node
// Records the weir-codecs RTP fixtures: headless Chromium publishes the fake camera
// or microphone with one codec and encoding configuration per case; the receiving
// peer is the weir-capture binary (webrtc-rs), which writes the decrypted packets.
//
//   cargo build --release -p weir-capture        (from the repository root)
//   cd tools/capture && npm ci && node capture.js [case ...]
//
// Environment: CAPTURE_BIN (default: $CARGO_TARGET_DIR or ../../target, then
// release/weir-capture), CHROMIUM_BIN (default /usr/bin/chromium), FIXTURES_DIR
// (default ../../codecs/tests/fixtures). See README.md.
'use strict';

const { chromium } = require('playwright-core');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const HERE = __dirname;
const ROOT = path.resolve(HERE, '..', '..');
const FIXTURES = path.resolve(process.env.FIXTURES_DIR || path.join(ROOT, 'codecs', 'tests', 'fixtures'));
const TARGET = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
const BIN = process.env.CAPTURE_BIN || path.join(TARGET, 'release', 'weir-capture');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4 },
  { rid: 'h', scaleResolutionDownBy: 2 },
  { rid: 'f', scaleResolutionDownBy: 1 },
];

// packets: per SSRC (the recording continues to the end of the frame that reaches it).
const CASES = {
  vp8: { kind: 'video', codec: 'VP8', width: 640, height: 360, encodings: [{}], packets: 300 },
  vp8_l1t3: { kind: 'video', codec: 'VP8', width: 640, height: 360, encodings: [{ scalabilityMode: 'L1T3' }], packets: 300 },
  vp8_simulcast: { kind: 'video', codec: 'VP8', width: 1280, height: 720, encodings: SIMULCAST, packets: 120 },
  vp9_l3t3: { kind: 'video', codec: 'VP9', width: 1280, height: 720, encodings: [{ scalabilityMode: 'L3T3_KEY' }], packets: 400 },
  h264: { kind: 'video', codec: 'H264', width: 640, height: 360, encodings: [{}], packets: 300 },
  h264_simulcast: { kind: 'video', codec: 'H264', width: 1280, height: 720, encodings: SIMULCAST, packets: 120 },
  av1_l3t3: { kind: 'video', codec: 'AV1', width: 1280, height: 720, encodings: [{ scalabilityMode: 'L3T3_KEY' }], packets: 400 },
  opus: { kind: 'audio', codec: 'opus', encodings: [{}], packets: 250 },
};

const PAGE_URL = 'http://127.0.0.1/weir-capture.html';

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`timeout: ${what} after ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

// Runs in the page: publishes one track and returns the offer, or {skip: reason}.
async function publish(c) {
  const caps = RTCRtpSender.getCapabilities(c.kind).codecs;
  const mime = `${c.kind}/${c.codec}`.toLowerCase();
  let codecs = caps.filter((x) => x.mimeType.toLowerCase() === mime);
  if (c.codec === 'H264') {
    codecs = codecs.filter((x) => /packetization-mode=1/.test(x.sdpFmtpLine || '') && /profile-level-id=42e01f/.test(x.sdpFmtpLine || ''));
  }
  if (c.codec === 'VP9') codecs = codecs.filter((x) => /profile-id=0/.test(x.sdpFmtpLine || ''));
  if (codecs.length === 0) return { skip: `this Chromium cannot send ${c.codec}` };
  codecs = codecs.slice(0, 1);
  const constraints = c.kind === 'video'
    ? { video: { width: { exact: c.width }, height: { exact: c.height }, frameRate: 30 } }
    : { audio: true };
  const stream = await navigator.mediaDevices.getUserMedia(constraints);
  const track = stream.getTracks()[0];
  const pc = new RTCPeerConnection();
  window.pc = pc;
  let tr;
  try {
    tr = pc.addTransceiver(track, { direction: 'sendonly', sendEncodings: c.encodings });
    tr.setCodecPreferences(codecs);
  } catch (e) {
    // Chromium rejects a scalabilityMode it cannot produce (getCapabilities does not list them).
    return { skip: `this Chromium rejects ${c.codec} with ${JSON.stringify(c.encodings)}: ${e.name}: ${e.message}` };
  }
  if (c.kind === 'video') {
    // Keep the configured resolutions: without this, CPU adaptation (libaom on two
    // cores) scales the input down and drops the top spatial layer.
    const params = tr.sender.getParameters();
    params.degradationPreference = 'maintain-resolution';
    await tr.sender.setParameters(params);
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    setTimeout(resolve, 3000);
  });
  return { offer: pc.localDescription.sdp, codec: codecs[0] };
}

async function outboundStats() {
  const out = [];
  (await window.pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp') {
      out.push({
        ssrc: s.ssrc, rid: s.rid, scalabilityMode: s.scalabilityMode, encoder: s.encoderImplementation,
        frames: s.framesEncoded, keyFrames: s.keyFramesEncoded, width: s.frameWidth, height: s.frameHeight,
        packets: s.packetsSent, pli: s.pliCount,
      });
    }
  });
  return out;
}

// Chromium also gathers the machine's other addresses; the receiver only ever uses 127.0.0.1.
function loopbackOnly(sdp) {
  return sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') || / 127\.0\.0\.1 /.test(l)).join('\r\n');
}

async function runCase(browser, name, c, chromiumVersion) {
  const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
  const page = await context.newPage();
  page.on('console', (m) => console.error(`[page ${name}] ${m.text()}`));
  await page.route(PAGE_URL, (route) => route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>weir-capture</title>' }));
  await page.goto(PAGE_URL);
  try {
    const pub = await withTimeout(page.evaluate(publish, c), 10000, 'publish');
    if (pub.skip) return { name, skipped: pub.skip };
    const encoding = c.encodings.map((e) => [e.rid && `rid=${e.rid}`, e.scaleResolutionDownBy && `scaleResolutionDownBy=${e.scaleResolutionDownBy}`, e.scalabilityMode && `scalabilityMode=${e.scalabilityMode}`].filter(Boolean).join(' ') || 'default').join('; ');
    const req = {
      case: name,
      codec: c.codec,
      streams: c.encodings.length,
      packets: c.packets,
      warmupMs: c.kind === 'video' ? 4000 : 1500,
      timeoutMs: 30000,
      out: path.join(FIXTURES, `${name}.rtpdump`),
      meta: path.join(FIXTURES, `${name}.meta`),
      chromium: chromiumVersion,
      encoding: `${c.kind === 'video' ? `${c.width}x${c.height} ` : ''}${pub.codec.mimeType} ${pub.codec.sdpFmtpLine || ''} | ${encoding}`.trim(),
      offer: loopbackOnly(pub.offer),
    };
    const child = spawn(BIN, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines = readline.createInterface({ input: child.stdout });
    const iter = lines[Symbol.asyncIterator]();
    const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    child.stdin.write(`${JSON.stringify(req)}\n`);
    const next = async (what) => {
      const r = await withTimeout(iter.next(), 40000, what);
      if (r.done) throw new Error(`weir-capture exited (status ${await exited}) before ${what}`);
      return JSON.parse(r.value);
    };
    const { answer } = await next('the answer');
    await page.evaluate((sdp) => window.pc.setRemoteDescription({ type: 'answer', sdp }), answer);
    const done = await next('the recording');
    const stats = await page.evaluate(outboundStats);
    const code = await withTimeout(exited, 10000, 'weir-capture exit');
    if (code !== 0) throw new Error(`weir-capture exited with ${code}`);
    // What the sender really did (Chromium may pick its own defaults, e.g. L1T3 per
    // VP8 simulcast layer), for the record; the test does not read these lines.
    const senderLines = stats.map((s) => `sender ssrc=${s.ssrc} rid=${s.rid || '-'} encoder=${s.encoder || '-'} scalabilityMode=${s.scalabilityMode || '-'}${s.width ? ` size=${s.width}x${s.height}` : ''}\n`);
    fs.appendFileSync(req.meta, senderLines.join(''));
    for (const [i, e] of c.encodings.entries()) {
      const s = stats.find((x) => (e.rid ? x.rid === e.rid : true));
      if (e.scalabilityMode && s && s.scalabilityMode !== e.scalabilityMode) {
        throw new Error(`encoding ${i}: asked for ${e.scalabilityMode}, Chromium used ${s.scalabilityMode}`);
      }
    }
    return { name, done, stats };
  } finally {
    await context.close();
  }
}

async function main() {
  const wanted = process.argv.slice(2);
  const names = wanted.length ? wanted : Object.keys(CASES);
  for (const n of names) if (!CASES[n]) throw new Error(`unknown case ${n}; cases: ${Object.keys(CASES).join(' ')}`);
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} not found: cargo build --release -p weir-capture (or set CAPTURE_BIN)`);
  fs.mkdirSync(FIXTURES, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'weir-capture-'));
  process.env.TMPDIR = tmp;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    env: { ...process.env, TMPDIR: tmp },
    args: [
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--allow-loopback-in-peer-connection',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
  const version = browser.version();
  console.log(`Chromium ${version}`);
  let failed = 0;
  try {
    for (const n of names) {
      try {
        const r = await runCase(browser, n, CASES[n], version);
        if (r.skipped) console.log(`${n}: SKIPPED: ${r.skipped}`);
        else console.log(`${n}: ${JSON.stringify(r.done)}\n  sender: ${JSON.stringify(r.stats)}`);
      } catch (e) {
        failed += 1;
        console.log(`${n}: FAILED: ${e.message}`);
      }
    }
  } finally {
    await browser.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => { console.error(e); process.exit(1); });
