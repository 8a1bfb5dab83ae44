'use strict';
// Hostile input over the signaling WebSocket: each bad message must get an
// `error` with the code PROTOCOL.md documents, the socket must stay open,
// and a later valid request on it must still work.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');

const { startServer } = require('./server.js');

const REPLY_TIMEOUT_MS = 5000;

let server;

before(async () => {
  server = await startServer('protocol');
});

after(async () => {
  await server?.stop();
});

/** A raw protocol client: a message inbox plus waits with deadlines. */
class Client {
  static async open(url) {
    const ws = new WebSocket(url);
    const client = new Client(ws);
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no WebSocket connection to ${url} within ${REPLY_TIMEOUT_MS} ms`)), REPLY_TIMEOUT_MS);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    return client;
  }

  constructor(ws) {
    this.ws = ws;
    this.inbox = [];
    this.waiters = [];
    this.nextId = 100;
    this.closed = null;
    ws.on('message', (data, isBinary) => {
      let message;
      try {
        message = JSON.parse(data.toString('utf8'));
      } catch {
        message = { unparsable: data.toString('utf8'), isBinary };
      }
      this.inbox.push(message);
      this.waiters = this.waiters.filter((w) => !w());
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.waiters = this.waiters.filter((w) => !w());
    });
    ws.on('error', () => undefined);
  }

  send(message) {
    this.ws.send(typeof message === 'string' ? message : JSON.stringify(message));
  }

  /** Removes and returns the first message matching `predicate`, waiting for it if needed. */
  expect(predicate, what, timeoutMs = REPLY_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received: ${JSON.stringify(this.inbox)}`));
      }, timeoutMs);
      const check = () => {
        const index = this.inbox.findIndex(predicate);
        if (index >= 0) {
          clearTimeout(timer);
          resolve(this.inbox.splice(index, 1)[0]);
          return true;
        }
        if (this.closed !== null) {
          clearTimeout(timer);
          reject(new Error(`socket closed (${JSON.stringify(this.closed)}) while waiting for ${what}`));
          return true;
        }
        return false;
      };
      if (!check()) this.waiters.push(check);
    });
  }

  /** Sends `message` with a fresh id and resolves with the reply carrying it. */
  request(message) {
    const id = this.nextId++;
    this.send({ ...message, id });
    return this.expect((m) => m.id === id, `the reply to ${message.type} #${id}`);
  }

  /** Expects an `error` with `code` for the request, and the socket still open. */
  async requestFails(message, code) {
    const reply = await this.request(message);
    assert.equal(reply.type, 'error', `${JSON.stringify(message).slice(0, 120)} should fail, got ${JSON.stringify(reply)}`);
    assert.equal(reply.code, code, `${JSON.stringify(message).slice(0, 120)}: ${reply.message}`);
    assert.equal(typeof reply.message, 'string');
    this.assertOpen();
    return reply;
  }

  /** Sends raw text and expects an id-less `error` with `code`. */
  async sendFails(text, code) {
    this.send(text);
    const reply = await this.expect((m) => m.type === 'error', `an error for ${JSON.stringify(text)}`);
    assert.equal(reply.code, code, `${JSON.stringify(text)}: ${reply.message}`);
    this.assertOpen();
  }

  assertOpen() {
    assert.equal(this.closed, null, 'the server closed the socket');
    assert.equal(this.ws.readyState, WebSocket.OPEN);
  }

  async join(room, name = 'tester', extra = {}) {
    const reply = await this.request({ type: 'join', room, name, ...extra });
    assert.equal(reply.type, 'joined', `join ${room}: ${JSON.stringify(reply)}`);
    assert.equal(reply.room, room);
    assert.equal(typeof reply.peerId, 'string');
    assert.ok(Array.isArray(reply.tracks));
    return reply;
  }

  close() {
    this.ws.close();
  }
}

let roomCounter = 0;
function uniqueRoom() {
  roomCounter += 1;
  return `proto-${process.pid}-${roomCounter}`;
}

async function withClient(fn) {
  const client = await Client.open(server.wsUrl);
  try {
    await fn(client);
  } finally {
    client.close();
  }
}

/** A browser-like publish offer (audio Opus, video VP8) with no candidates. */
function validOffer() {
  const fingerprint = Array.from({ length: 32 }, (_, i) => (i * 7 + 16).toString(16).toUpperCase().padStart(2, '0')).join(':');
  const common = [
    'c=IN IP4 0.0.0.0',
    'a=rtcp:9 IN IP4 0.0.0.0',
    'a=ice-ufrag:wXyZ',
    'a=ice-pwd:weirtestpasswordweirtest',
    'a=ice-options:trickle',
    `a=fingerprint:sha-256 ${fingerprint}`,
    'a=setup:actpass',
  ];
  return [
    'v=0',
    'o=- 4611731400430051336 2 IN IP4 127.0.0.1',
    's=-',
    't=0 0',
    'a=group:BUNDLE 0 1',
    'a=extmap-allow-mixed',
    'a=msid-semantic: WMS stream0',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111',
    ...common,
    'a=mid:0',
    'a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=sendonly',
    'a=msid:stream0 audio0',
    'a=rtcp-mux',
    'a=rtpmap:111 opus/48000/2',
    'a=rtcp-fb:111 transport-cc',
    'a=fmtp:111 minptime=10;useinbandfec=1',
    'a=ssrc:1111 cname:weirtest',
    'a=ssrc:1111 msid:stream0 audio0',
    'm=video 9 UDP/TLS/RTP/SAVPF 96 97',
    ...common,
    'a=mid:1',
    'a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=sendonly',
    'a=msid:stream0 video0',
    'a=rtcp-mux',
    'a=rtcp-rsize',
    'a=rtpmap:96 VP8/90000',
    'a=rtcp-fb:96 goog-remb',
    'a=rtcp-fb:96 transport-cc',
    'a=rtcp-fb:96 ccm fir',
    'a=rtcp-fb:96 nack',
    'a=rtcp-fb:96 nack pli',
    'a=rtpmap:97 rtx/90000',
    'a=fmtp:97 apt=96',
    'a=ssrc-group:FID 2222 3333',
    'a=ssrc:2222 cname:weirtest',
    'a=ssrc:2222 msid:stream0 video0',
    'a=ssrc:3333 cname:weirtest',
    'a=ssrc:3333 msid:stream0 video0',
    '',
  ].join('\r\n');
}

/** The valid request that ends each post-join test: a publish offer gets an answer. */
async function publishWorks(client) {
  const reply = await client.request({ type: 'publish', sdp: validOffer() });
  assert.equal(reply.type, 'answer', `a valid publish after errors: ${JSON.stringify(reply)}`);
  assert.equal(reply.transport, 'publish');
  assert.match(reply.sdp, /^v=0\r?\n/);
}

test('malformed JSON and non-objects get bad_json', async () => {
  await withClient(async (c) => {
    await c.sendFails('{"type": "join", "room": ', 'bad_json');
    await c.sendFails('not json at all', 'bad_json');
    await c.sendFails('[1, 2, 3]', 'bad_json');
    await c.sendFails('"join"', 'bad_json');
    await c.sendFails('null', 'bad_json');
    await c.join(uniqueRoom());
    await c.sendFails('{"type": "subscribe", "trackId": ', 'bad_json');
    await publishWorks(c);
  });
});

test('requests before join get not_joined', async () => {
  await withClient(async (c) => {
    await c.requestFails({ type: 'subscribe', trackId: 'nope' }, 'not_joined');
    await c.requestFails({ type: 'publish', sdp: validOffer() }, 'not_joined');
    await c.requestFails({ type: 'answer', sdp: 'v=0\r\n' }, 'not_joined');
    await c.requestFails({ type: 'unpublish', trackId: 'nope' }, 'not_joined');
    await c.join(uniqueRoom());
  });
});

test('bad room names get bad_room', async () => {
  await withClient(async (c) => {
    for (const room of ['', 'has space', 'slash/room', 'a'.repeat(65), 'ünïcode', 'dot.room']) {
      await c.requestFails({ type: 'join', room }, 'bad_room');
    }
    await c.join(`${'a'.repeat(40)}-${process.pid}`.slice(0, 64));
  });
});

test('missing or mistyped fields and unknown types get bad_message', async () => {
  await withClient(async (c) => {
    await c.requestFails({ type: 'join' }, 'bad_message');
    await c.requestFails({ type: 'join', room: 42 }, 'bad_message');
    await c.join(uniqueRoom());
    await c.sendFails('{"id": 5}', 'bad_message');
    await c.requestFails({ type: 'frobnicate' }, 'bad_message');
    await c.requestFails({ type: 'subscribe' }, 'bad_message');
    await c.requestFails({ type: 'subscribe', trackId: 7 }, 'bad_message');
    await c.requestFails({ type: 'publish' }, 'bad_message');
    await c.requestFails({ type: 'candidate', transport: 'sideways', candidate: null }, 'bad_message');
    await publishWorks(c);
  });
});

test('a second join gets already_joined', async () => {
  await withClient(async (c) => {
    const room = uniqueRoom();
    await c.join(room);
    await c.requestFails({ type: 'join', room }, 'already_joined');
    await c.requestFails({ type: 'join', room: uniqueRoom() }, 'already_joined');
    await publishWorks(c);
  });
});

test('bad SDP in publish gets bad_sdp and the publish transport stays usable', async () => {
  await withClient(async (c) => {
    await c.join(uniqueRoom());
    await c.requestFails({ type: 'publish', sdp: 'this is not an SDP' }, 'bad_sdp');
    await c.requestFails({ type: 'publish', sdp: '' }, 'bad_sdp');
    await c.requestFails({ type: 'publish', sdp: 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF\r\n' }, 'bad_sdp');
    await publishWorks(c);
  });
});

test('unknown track ids get unknown_track', async () => {
  await withClient(async (c) => {
    await c.join(uniqueRoom());
    await c.requestFails({ type: 'subscribe', trackId: 'no-such-track' }, 'unknown_track');
    await c.requestFails({ type: 'unsubscribe', trackId: 'no-such-track' }, 'unknown_track');
    await c.requestFails({ type: 'unpublish', trackId: 'no-such-track' }, 'unknown_track');
    await publishWorks(c);
  });
});

test('an answer with no pending offer gets no_pending_offer', async () => {
  await withClient(async (c) => {
    await c.join(uniqueRoom());
    await c.requestFails({ type: 'answer', sdp: validOffer().replace('a=setup:actpass', 'a=setup:active') }, 'no_pending_offer');
    await publishWorks(c);
  });
});

test('an unparsable candidate gets bad_candidate; a valid one and end-of-candidates get no reply', async () => {
  await withClient(async (c) => {
    await c.join(uniqueRoom());
    await c.requestFails({ type: 'candidate', transport: 'publish', candidate: { candidate: 'garbage', sdpMid: '0', sdpMLineIndex: 0 } }, 'bad_candidate');
    await publishWorks(c);
    // Neither of these has a reply; the error-free publish after them shows they were accepted.
    c.send({ type: 'candidate', transport: 'publish', candidate: { candidate: 'candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0', sdpMid: '0', sdpMLineIndex: 0 } });
    c.send({ type: 'candidate', transport: 'publish', candidate: null });
    const reply = await c.request({ type: 'unpublish', trackId: 'no-such-track' });
    assert.equal(reply.code, 'unknown_track', `expected only the unpublish error, got ${JSON.stringify(reply)}`);
    assert.deepEqual(c.inbox.filter((m) => m.type === 'error'), [], 'the valid candidates got errors');
  });
});

test('hidden members are neither announced nor listed', async () => {
  const room = uniqueRoom();
  const a = await Client.open(server.wsUrl);
  const viewer = await Client.open(server.wsUrl);
  const b = await Client.open(server.wsUrl);
  try {
    const joinedA = await a.join(room, 'visible');
    const joinedV = await viewer.join(room, 'viewer', { hidden: true });
    assert.deepEqual(joinedV.peers.map((p) => p.peerId), [joinedA.peerId], 'a hidden member sees the others');
    const joinedB = await b.join(room, 'late');
    assert.deepEqual(joinedB.peers.map((p) => p.peerId), [joinedA.peerId], 'but is not listed to them');
    // A hears of B, not of the viewer; the viewer hears of B too.
    const seen = await a.expect((m) => m.type === 'peerJoined', 'A to hear that B joined');
    assert.equal(seen.peerId, joinedB.peerId);
    await viewer.expect((m) => m.type === 'peerJoined' && m.peerId === joinedB.peerId, 'the viewer to hear that B joined');
    await a.requestFails({ type: 'join', room: uniqueRoom(), hidden: 'yes' }, 'bad_message');
    viewer.send({ type: 'leave' });
    b.send({ type: 'leave' });
    const left = await a.expect((m) => m.type === 'peerLeft', 'A to hear that B left');
    assert.equal(left.peerId, joinedB.peerId, 'the viewer leaves unannounced');
    assert.deepEqual(
      a.inbox.filter((m) => (m.type === 'peerJoined' || m.type === 'peerLeft') && m.peerId === joinedV.peerId),
      [],
      'A never heard of the viewer',
    );
  } finally {
    a.close();
    viewer.close();
    b.close();
  }
});

test('the room survives a hostile member: others still join and see each other', async () => {
  const room = uniqueRoom();
  const a = await Client.open(server.wsUrl);
  const b = await Client.open(server.wsUrl);
  try {
    const joinedA = await a.join(room, 'hostile');
    await a.sendFails('{{{{', 'bad_json');
    await a.requestFails({ type: 'publish', sdp: 'garbage' }, 'bad_sdp');
    const joinedB = await b.join(room, 'friendly');
    const seen = await a.expect((m) => m.type === 'peerJoined', 'A to hear that B joined');
    assert.equal(seen.peerId, joinedB.peerId);
    assert.equal(seen.name, 'friendly');
    b.send({ type: 'leave' });
    const left = await a.expect((m) => m.type === 'peerLeft', 'A to hear that B left');
    assert.equal(left.peerId, joinedB.peerId);
    assert.notEqual(joinedA.peerId, joinedB.peerId);
    await publishWorks(a);
  } finally {
    a.close();
    b.close();
  }
});
