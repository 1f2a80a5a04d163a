// Wire compatibility of our yamux (src/tunnel) with an independent implementation,
// @chainsafe/libp2p-yamux, joined over an in-memory pipe (see support/libp2p-yamux-link.ts).
// Every transfer is checked by byte count and SHA-256 at both ends, every link's frames are
// audited against the spec, and every link must end without a protocol error on either side.
import './support/with-resolvers.js';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import type { Stream } from '../../src/tunnel/stream.js';
import {
  F_ACK,
  F_FIN,
  F_RST,
  F_SYN,
  SPEC_INITIAL_WINDOW,
  T_DATA,
  T_GO_AWAY,
  T_PING,
  T_WINDOW_UPDATE,
  connectLibp2p,
  libp2pEcho,
  libp2pRead,
  libp2pWrite,
  type Digest,
  type EchoResult,
  type FrameRecord,
  type Link,
  type LinkOptions,
  type YamuxStream,
} from './support/libp2p-yamux-link.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB; // per stream and direction
const OUR_WINDOW = 512 * 1024; // 16 windows per transfer; announced as delta 256 KiB
const LIBP2P_STREAMS = { maxStreamWindowSize: MiB }; // its windows may grow from 256 KiB to 1 MiB
const TIMEOUT = 20_000; // a hang fails the test; a healthy run takes a few seconds

// ---- helpers ----------------------------------------------------------------------

// The pipe re-cuts the byte stream at pseudo-random points; YAMUX_INTEROP_SEED replays or varies
// them ('none': each batch is delivered as one piece).
const SEED_ENV = process.env['YAMUX_INTEROP_SEED'];
const SEED = SEED_ENV === 'none' ? null : Number(SEED_ENV ?? 1);

/** A link closed (and checked) when the test ends, whatever its outcome. */
function link(t: TestContext, options: LinkOptions): Link {
  const l = connectLibp2p({ seed: SEED, ...options });
  t.after(() => l.close());
  return l;
}

/** Ends the link from our side and checks nothing went wrong on it at any point. */
async function closeClean(l: Link): Promise<void> {
  assert.deepEqual(l.libp2pErrors.map((e) => e.message), [], 'libp2p aborted the connection');
  assert.equal(l.session.closed, false, 'our session closed before the test ended it');
  await l.close();
  const reason = await l.sessionClosed;
  assert.equal(reason.message, 'test teardown', `our session closed for another reason: ${reason.message}`);
  assert.deepEqual(l.libp2pErrors.map((e) => e.message), [], 'libp2p aborted the connection');
  assert.deepEqual(l.audit.violations, [], 'spec violations on the wire');
  assert.equal(l.muxer.status, 'closed', 'libp2p did not see the connection end');
}

async function ourWrite(stream: Stream, total: number, options: { end?: boolean } = {}): Promise<Digest> {
  const hash = createHash('sha256');
  let left = total;
  while (left > 0) {
    const n = Math.min(left, 1 + Math.floor(Math.random() * 256 * 1024));
    const chunk = randomBytes(n);
    hash.update(chunk);
    left -= n;
    if (!stream.write(chunk)) await once(stream, 'drain'); // rejects on 'error'
  }
  if (options.end !== false) stream.end();
  return { bytes: total, sha256: hash.digest('hex') };
}

function ourRead(stream: Readable, progress = { bytes: 0 }): Promise<Digest> {
  return new Promise<Digest>((resolve, reject) => {
    const hash = createHash('sha256');
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      progress.bytes += chunk.length;
    });
    stream.once('end', () => resolve({ bytes: progress.bytes, sha256: hash.digest('hex') }));
    stream.once('error', reject);
  });
}

/** Echoes one of our streams back to libp2p, with backpressure; ends when libp2p ends. */
function ourEcho(stream: Stream): Promise<Digest> {
  return new Promise<Digest>((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (!stream.write(chunk)) {
        stream.pause();
        stream.once('drain', () => stream.resume());
      }
    });
    stream.once('end', () => {
      stream.end();
      resolve({ bytes, sha256: hash.digest('hex') });
    });
    stream.once('error', reject);
  });
}

function framesOn(frames: FrameRecord[], streamId: number): FrameRecord[] {
  return frames.filter((f) => f.streamId === streamId);
}

const has = (flags: number, flag: number): boolean => (flags & flag) === flag;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The data transfers of a test. A deadlock fails here with a message instead of letting the
 * event loop run dry (node:test's own timeout timer does not keep the process alive).
 */
function transfers<T>(promise: Promise<T>): Promise<T> {
  return withTimeout(promise, 10_000, 'the transfers (a flow-control or close deadlock?)');
}

/** Resolves once `predicate` holds, polling; fails after `ms`. */
async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// ---- the harness can fail ---------------------------------------------------------

test('harness self-check: an over-window Data frame is caught by libp2p, by the wire audit and by our session', { timeout: TIMEOUT }, async (t) => {
  const l = link(t, { session: { client: true, keepaliveIntervalMs: 0 } });
  const stream = l.session.open(); // stream 1
  stream.on('error', () => {});
  // libp2p's receive window on a new stream is 256 KiB: one byte more is a protocol error.
  // Sent raw, as if our session had sent it.
  const header = Buffer.alloc(12);
  header.writeUInt8(T_DATA, 1);
  header.writeUInt32BE(stream.id, 4);
  header.writeUInt32BE(SPEC_INITIAL_WINDOW + 1, 8);
  l.sendRaw('toLibp2p', Buffer.concat([header, Buffer.alloc(SPEC_INITIAL_WINDOW + 1)]));
  const reason = await withTimeout(l.sessionClosed, 5_000, 'our session to close');
  assert.match(reason.message, /GoAway\(protocol error\)/, 'libp2p told us why');
  assert.equal(l.libp2pErrors.length, 1);
  assert.equal(l.libp2pErrors[0]!.name, 'ReceiveWindowExceededError');
  assert.equal(l.audit.violations.length, 1);
  assert.match(l.audit.violations[0]!, /exceeds the receive window by 1 bytes/);
  assert.ok(stream.destroyed);
});

// ---- 1. we are the client ---------------------------------------------------------

test('our client, libp2p server: 4 concurrent 8 MiB echoes, with half-close', { timeout: TIMEOUT }, async (t) => {
  const l = link(t, { session: { client: true, streamWindow: OUR_WINDOW, keepaliveIntervalMs: 0 }, libp2p: { streamOptions: LIBP2P_STREAMS } });
  const HOLD_BACK = MiB; // libp2p sends the last 1 MiB of each echo only after our FIN
  const echoes = new Map<number, Promise<EchoResult>>();
  l.muxer.addEventListener('stream', (evt) => {
    echoes.set(evt.detail.streamId, libp2pEcho(evt.detail, { holdBack: HOLD_BACK }));
  });

  const streams = Array.from({ length: 4 }, () => l.session.open());
  assert.deepEqual(streams.map((s) => s.id), [1, 3, 5, 7], 'the client opens odd ids');

  const results = await transfers(Promise.all(streams.map(async (stream) => {
    const progress = { bytes: 0 };
    let receivedAtFinish = -1;
    stream.once('finish', () => (receivedAtFinish = progress.bytes));
    const closed = once(stream, 'close');
    const [sent, echoed] = await Promise.all([ourWrite(stream, SIZE), ourRead(stream, progress)]);
    await closed;
    return { stream, sent, echoed, receivedAtFinish };
  })));

  for (const { stream, sent, echoed, receivedAtFinish } of results) {
    assert.equal(echoed.bytes, SIZE, `stream ${stream.id}: echo length`);
    assert.equal(echoed.sha256, sent.sha256, `stream ${stream.id}: echo checksum`);
    const atLibp2p = await echoes.get(stream.id)!;
    assert.equal(atLibp2p.bytes, SIZE, `stream ${stream.id}: bytes libp2p received`);
    assert.equal(atLibp2p.sha256, sent.sha256, `stream ${stream.id}: checksum at libp2p`);
    assert.equal(atLibp2p.bytesAtFin, SIZE, `stream ${stream.id}: our FIN came after all our data`);
    // Half-close: after our writable end finished, the last >= 1 MiB of the echo still arrived.
    assert.ok(receivedAtFinish >= 0 && receivedAtFinish <= SIZE - HOLD_BACK, `stream ${stream.id}: had ${receivedAtFinish} bytes at finish`);
    assert.equal(stream.bytesSent, SIZE);
    assert.equal(stream.bytesReceived, SIZE);
  }

  // Wire: how each stream opened and closed.
  const ours = l.audit.sentBy('ours');
  const theirs = l.audit.sentBy('libp2p');
  for (const { stream } of results) {
    const mine = framesOn(ours, stream.id);
    assert.deepEqual(mine[0], { direction: 'toLibp2p', type: T_WINDOW_UPDATE, flags: F_SYN, streamId: stream.id, length: OUR_WINDOW - SPEC_INITIAL_WINDOW },
      'opens with WindowUpdate(SYN, window - 256 KiB)');
    assert.equal(mine.filter((f) => has(f.flags, F_SYN)).length, 1, 'one SYN');
    assert.equal(mine.filter((f) => has(f.flags, F_FIN)).length, 1, 'one FIN');
    const peer = framesOn(theirs, stream.id);
    assert.ok(has(peer[0]!.flags, F_ACK), 'libp2p acknowledged the stream on its first frame');
    assert.equal(peer.filter((f) => has(f.flags, F_FIN)).length, 1, 'libp2p closed once');
    assert.ok(peer.filter((f) => f.type === T_WINDOW_UPDATE).length >= 8, 'many windows crossed');
    assert.ok(mine.filter((f) => f.type === T_WINDOW_UPDATE).length >= 8, 'many windows crossed');
  }
  assert.equal(l.audit.frames.filter((f) => has(f.flags, F_RST)).length, 0, 'no resets');
  assert.equal(l.session.streamCount, 0, 'our session forgot the closed streams');
  await until(() => l.muxer.streams.length === 0, 2_000, 'libp2p to drop the closed streams');
  await closeClean(l);
});

// ---- 2. libp2p is the client --------------------------------------------------------

test('libp2p client, our server: 4 streams towards us, verified and answered', { timeout: TIMEOUT }, async (t) => {
  // libp2p's own defaults (windows that grow up to 16 MiB once it has measured an RTT, hence the
  // keepalive: its first ping goes out at once).
  const l = link(t, { session: { client: false, streamWindow: OUR_WINDOW, keepaliveIntervalMs: 0 }, libp2p: { enableKeepAlive: true } });
  const REPLY = 6 * MiB;
  const atOurs = new Map<number, Promise<{ received: Digest; reply: Digest }>>();
  l.session.on('stream', (stream) => {
    atOurs.set(stream.id, (async () => {
      // Reply while still receiving; then append the SHA-256 of what we received, and end.
      const [received, reply] = await Promise.all([ourRead(stream), ourWrite(stream, REPLY, { end: false })]);
      stream.end(Buffer.from(received.sha256, 'hex'));
      return { received, reply };
    })());
  });

  const streams = await Promise.all(Array.from({ length: 4 }, () => l.muxer.createStream()));
  const results = await transfers(Promise.all(streams.map(async (stream) => {
    const [sent, answer] = await Promise.all([libp2pWrite(stream, SIZE), libp2pRead(stream, 32)]);
    return { stream, sent, answer };
  })));

  const ids = results.map((r) => r.stream.streamId).sort((a, b) => a - b);
  assert.deepEqual(ids, [1, 3, 5, 7], 'libp2p (client) opens odd ids');
  for (const { stream, sent, answer } of results) {
    const ours = await atOurs.get(stream.streamId)!;
    assert.equal(ours.received.bytes, SIZE, `stream ${stream.streamId}: bytes we received`);
    assert.equal(ours.received.sha256, sent.sha256, `stream ${stream.streamId}: checksum we received`);
    assert.equal(answer.bytes, REPLY + 32, `stream ${stream.streamId}: reply length at libp2p`);
    assert.equal(answer.tail.toString('hex'), sent.sha256, `stream ${stream.streamId}: our digest of it, read by libp2p`);
    assert.equal(answer.sha256, ours.reply.sha256, `stream ${stream.streamId}: checksum of our reply at libp2p`);
  }

  const mine = l.audit.sentBy('ours');
  for (const { stream } of results) {
    assert.deepEqual(framesOn(mine, stream.streamId)[0], { direction: 'toLibp2p', type: T_WINDOW_UPDATE, flags: F_ACK, streamId: stream.streamId, length: OUR_WINDOW - SPEC_INITIAL_WINDOW },
      'accepts at once with WindowUpdate(ACK, window - 256 KiB)');
  }
  assert.equal(l.audit.frames.filter((f) => has(f.flags, F_RST)).length, 0, 'no resets');
  await until(() => l.session.streamCount === 0 && l.muxer.streams.length === 0, 2_000, 'both sides to drop the closed streams');
  await closeClean(l);
});

// ---- 3. both directions at once ---------------------------------------------------

test('both sides open streams at once on one session: 3 + 3 concurrent 8 MiB echoes', { timeout: TIMEOUT }, async (t) => {
  const l = link(t, { session: { client: true, streamWindow: OUR_WINDOW, keepaliveIntervalMs: 0 }, libp2p: { streamOptions: LIBP2P_STREAMS } });
  const libp2pEchoes = new Map<number, Promise<EchoResult>>();
  l.muxer.addEventListener('stream', (evt) => libp2pEchoes.set(evt.detail.streamId, libp2pEcho(evt.detail)));
  const ourEchoes = new Map<number, Promise<Digest>>();
  l.session.on('stream', (stream) => ourEchoes.set(stream.id, ourEcho(stream)));

  const outgoing = Array.from({ length: 3 }, async () => {
    const stream = l.session.open();
    const [sent, echoed] = await Promise.all([ourWrite(stream, SIZE), ourRead(stream)]);
    return { id: stream.id, sent, echoed, remote: await libp2pEchoes.get(stream.id)! };
  });
  const incoming = Array.from({ length: 3 }, async () => {
    const stream = await l.muxer.createStream();
    const [sent, echoed] = await Promise.all([libp2pWrite(stream, SIZE), libp2pRead(stream)]);
    return { id: stream.streamId, sent, echoed, remote: await ourEchoes.get(stream.streamId)! };
  });
  const [ours, theirs] = await transfers(Promise.all([Promise.all(outgoing), Promise.all(incoming)]));

  assert.deepEqual(ours.map((r) => r.id).sort((a, b) => a - b), [1, 3, 5], 'our streams: odd ids');
  assert.deepEqual(theirs.map((r) => r.id).sort((a, b) => a - b), [2, 4, 6], 'libp2p (server) streams: even ids');
  for (const { id, sent, echoed, remote } of [...ours, ...theirs]) {
    assert.equal(remote.bytes, SIZE, `stream ${id}: bytes at the echoing side`);
    assert.equal(remote.sha256, sent.sha256, `stream ${id}: checksum at the echoing side`);
    assert.equal(echoed.bytes, SIZE, `stream ${id}: echo length`);
    assert.equal(echoed.sha256, sent.sha256, `stream ${id}: echo checksum`);
  }
  // The two directions' transfers really overlapped (not one after the other).
  const dataFrames = l.audit.frames.filter((f) => f.type === T_DATA && f.length > 0);
  const positions = (id: number): number[] => dataFrames.flatMap((f, i) => (f.streamId === id ? [i] : []));
  const started = (ids: number[]): number => Math.max(...ids.map((id) => positions(id)[0]!)); // all have begun
  const ending = (ids: number[]): number => Math.min(...ids.map((id) => positions(id).at(-1)!)); // none has finished
  assert.ok(started([2, 4, 6]) < ending([1, 3, 5]) && started([1, 3, 5]) < ending([2, 4, 6]), 'transfers overlapped');
  assert.equal(l.audit.frames.filter((f) => has(f.flags, F_RST)).length, 0, 'no resets');
  await until(() => l.session.streamCount === 0 && l.muxer.streams.length === 0, 2_000, 'both sides to drop the closed streams');
  await closeClean(l);
});

// ---- 4. resets ----------------------------------------------------------------------

test('libp2p resets one stream mid-transfer: ours is destroyed with ECONNRESET, the others complete', { timeout: TIMEOUT }, async (t) => {
  const l = link(t, { session: { client: true, streamWindow: OUR_WINDOW, keepaliveIntervalMs: 0 }, libp2p: { streamOptions: LIBP2P_STREAMS } });
  const VICTIM = 3;
  const echoes = new Map<number, Promise<EchoResult>>();
  l.muxer.addEventListener('stream', (evt) => {
    const stream: YamuxStream = evt.detail;
    const onProgress = stream.streamId !== VICTIM ? undefined : (received: number): void => {
      if (received >= MiB && stream.status === 'open') stream.abort(new Error('test: libp2p aborts this stream'));
    };
    const echo = libp2pEcho(stream, { onProgress });
    echo.catch(() => {}); // the victim's rejection is asserted below, after the transfers
    echoes.set(stream.streamId, echo);
  });

  const streams = Array.from({ length: 3 }, () => l.session.open());
  assert.deepEqual(streams.map((s) => s.id), [1, VICTIM, 5]);
  const outcomes = await transfers(Promise.all(streams.map(async (stream) => {
    const errored = once(stream, 'error').then(([error]) => error as Error & { code?: string });
    const progress = { bytes: 0 };
    const settled = await Promise.allSettled([ourWrite(stream, SIZE), ourRead(stream, progress)]);
    return { stream, settled, progress, errored };
  })));

  for (const { stream, settled, progress, errored } of outcomes) {
    if (stream.id === VICTIM) {
      const error = await withTimeout(errored, 2_000, 'the error event');
      assert.equal(error.name, 'StreamError');
      assert.equal(error.code, 'ECONNRESET');
      assert.match(error.message, /reset by the peer/);
      assert.ok(stream.destroyed);
      assert.ok(settled.some((s) => s.status === 'rejected'), 'the transfer failed');
      assert.ok(progress.bytes < SIZE, `the echo stopped early (${progress.bytes} bytes)`);
      await assert.rejects(echoes.get(VICTIM)!, /libp2p aborts this stream/);
      continue;
    }
    assert.deepEqual(settled.map((s) => s.status), ['fulfilled', 'fulfilled'], `stream ${stream.id} completed`);
    const [sent, echoed] = settled.map((s) => (s as PromiseFulfilledResult<Digest>).value) as [Digest, Digest];
    assert.equal(echoed.bytes, SIZE);
    assert.equal(echoed.sha256, sent.sha256, `stream ${stream.id}: echo checksum`);
    const remote = await echoes.get(stream.id)!;
    assert.equal(remote.sha256, sent.sha256, `stream ${stream.id}: checksum at libp2p`);
  }

  const resets = l.audit.frames.filter((f) => has(f.flags, F_RST));
  assert.deepEqual(resets.map((f) => [f.direction, f.streamId]), [['toOurs', VICTIM]], 'one RST, from libp2p; none back');
  assert.equal(l.session.closed, false, 'the session survives a stream reset');
  assert.equal(l.session.streamCount, 0);
  await closeClean(l);
});

test('we reset a stream mid-transfer, and refuse a stream we have no handler for: libp2p sees both as resets', { timeout: TIMEOUT }, async (t) => {
  const l = link(t, { session: { client: true, streamWindow: OUR_WINDOW, keepaliveIntervalMs: 0 }, libp2p: { streamOptions: LIBP2P_STREAMS } });
  const closes = new Map<number, Promise<{ error?: Error; local?: boolean; bytes: number }>>();
  const echoes = new Map<number, Promise<EchoResult>>();
  l.muxer.addEventListener('stream', (evt) => {
    const stream: YamuxStream = evt.detail;
    let bytes = 0;
    echoes.set(stream.streamId, libp2pEcho(stream, { onProgress: (n) => (bytes = n) }));
    echoes.get(stream.streamId)!.catch(() => {});
    closes.set(stream.streamId, new Promise((resolve) => stream.addEventListener('close', (e) => resolve({ error: e.error, local: e.local, bytes }), { once: true })));
  });

  const victim = l.session.open();
  const healthy = l.session.open();
  const healthyDone = Promise.all([ourWrite(healthy, SIZE), ourRead(healthy)]);
  victim.on('error', () => {});
  victim.on('data', () => {});
  victim.write(randomBytes(2 * MiB));
  await until(() => victim.bytesReceived >= MiB, 5_000, 'part of the echo');
  victim.destroy(); // no error: a plain local reset

  const atLibp2p = await withTimeout(closes.get(victim.id)!, 2_000, 'libp2p to see the reset');
  assert.equal(atLibp2p.error?.name, 'StreamResetError', 'libp2p saw a remote reset');
  assert.equal(atLibp2p.local, false);
  assert.ok(atLibp2p.bytes >= MiB && atLibp2p.bytes <= 2 * MiB);
  const ourResets = l.audit.sentBy('ours').filter((f) => has(f.flags, F_RST));
  assert.deepEqual(ourResets, [{ direction: 'toLibp2p', type: T_WINDOW_UPDATE, flags: F_RST, streamId: victim.id, length: 0 }]);

  // Our session has no 'stream' listener: a stream libp2p opens is refused with RST.
  const refused = await l.muxer.createStream();
  const refusal = new Promise<Error | undefined>((resolve) => refused.addEventListener('close', (e) => resolve(e.error), { once: true }));
  refused.send(Buffer.from('anyone there?'));
  const refusalError = await withTimeout(refusal, 2_000, 'the refusal');
  assert.equal(refusalError?.name, 'StreamResetError');
  assert.equal(refused.streamId % 2, 0, 'libp2p (server) opened an even id');
  assert.deepEqual(l.audit.sentBy('ours').filter((f) => f.streamId === refused.streamId).map((f) => [f.type, f.flags, f.length]), [[T_WINDOW_UPDATE, F_RST, 0]]);

  const [sent, echoed] = await transfers(healthyDone);
  assert.equal(echoed.sha256, sent.sha256, 'the other stream completed');
  assert.equal((await echoes.get(healthy.id)!).sha256, sent.sha256);
  await closeClean(l);
});

// ---- 5. pings -----------------------------------------------------------------------

test('pings both ways: libp2p ping() and keepalive answered by us; our keepalive answered by libp2p', { timeout: TIMEOUT }, async (t) => {
  const l = link(t, {
    session: { client: false, keepaliveIntervalMs: 50 },
    libp2p: { enableKeepAlive: true, keepAliveInterval: 40 },
  });
  const rtts: number[] = [];
  l.session.on('rtt', (ms) => rtts.push(ms));

  // libp2p's explicit ping API: resolves with the round-trip time once we have answered.
  for (let i = 0; i < 3; i++) {
    const rtt = await withTimeout(l.muxer.ping(), 2_000, 'libp2p ping()');
    assert.ok(Number.isFinite(rtt) && rtt >= 0 && rtt < 2_000, `rtt ${rtt}`);
  }
  assert.ok(l.muxer.getRTT() >= 0);
  await until(() => rtts.length >= 4, 3_000, 'our keepalive to measure four rtts');
  // And a little more traffic, so libp2p's 40 ms keepalive runs several times too.
  await new Promise((resolve) => setTimeout(resolve, 200));
  for (const ms of rtts) assert.ok(Number.isFinite(ms) && ms >= 0 && ms < 2_000, `rtt ${ms}`);

  const pings = l.audit.frames.filter((f) => f.type === T_PING);
  const requests = (from: 'ours' | 'libp2p'): number[] => pings.filter((f) => f.direction === (from === 'ours' ? 'toLibp2p' : 'toOurs') && f.flags === F_SYN).map((f) => f.length);
  const answers = (from: 'ours' | 'libp2p'): number[] => pings.filter((f) => f.direction === (from === 'ours' ? 'toLibp2p' : 'toOurs') && f.flags === F_ACK).map((f) => f.length);
  const libp2pAsked = requests('libp2p');
  const weAsked = requests('ours');
  assert.ok(libp2pAsked.length >= 5, `libp2p pinged ${libp2pAsked.length} times`);
  assert.ok(weAsked.length >= 4, `we pinged ${weAsked.length} times`);
  // Every ping answered with its own opaque value, in order; none answered twice.
  assert.deepEqual(answers('ours').slice(0, libp2pAsked.length - 1), libp2pAsked.slice(0, -1), 'our answers echo libp2p\'s values');
  assert.deepEqual(answers('libp2p').slice(0, weAsked.length - 1), weAsked.slice(0, -1), 'libp2p\'s answers echo ours');
  assert.deepEqual(weAsked.slice(0, 4), [1, 2, 3, 4], 'our ping ids count up');
  assert.ok(pings.every((f) => f.streamId === 0 && (f.flags === F_SYN || f.flags === F_ACK)));
  assert.equal(l.muxer.status, 'open');
  await closeClean(l);
});

// ---- 6. session termination ---------------------------------------------------------

test('GoAway both ways: libp2p close() stops our new streams; our close() ends libp2p', { timeout: TIMEOUT }, async (t) => {
  // libp2p goes away first.
  const a = link(t, { session: { client: true, keepaliveIntervalMs: 0 } });
  await a.muxer.close();
  await until(() => a.audit.sentBy('libp2p').some((f) => f.type === T_GO_AWAY), 2_000, 'libp2p\'s GoAway');
  assert.deepEqual(a.audit.sentBy('libp2p').filter((f) => f.type === T_GO_AWAY).map((f) => f.length), [0], 'GoAway(normal)');
  assert.throws(() => a.session.open(), (e: Error & { code?: string }) => e.code === 'EGOAWAY');
  assert.equal(a.session.closed, false, 'a normal GoAway does not tear our session down by itself');
  await a.close();
  assert.equal((await a.sessionClosed).message, 'test teardown');
  assert.deepEqual(a.libp2pErrors, []);

  // We go away first.
  const b = link(t, { session: { client: false, keepaliveIntervalMs: 0 } });
  b.session.close(new Error('test teardown'));
  await b.pipeClosed;
  assert.deepEqual(b.audit.sentBy('ours').filter((f) => f.type === T_GO_AWAY).map((f) => f.length), [0], 'GoAway(normal)');
  assert.equal(b.muxer.status, 'closed');
  await assert.rejects(b.muxer.createStream(), /closed/i);
  assert.deepEqual(b.libp2pErrors, []);
  assert.deepEqual(b.audit.violations, []);

  // We go away with an error: a (faked) libp2p frame breaks the protocol, a Data frame on
  // stream 0; our GoAway(protocol error) makes libp2p abort its streams.
  const c = link(t, { session: { client: true, keepaliveIntervalMs: 0 } });
  c.session.on('stream', (stream) => stream.on('error', () => {})); // accepted, so no RST ends it
  const pending = await c.muxer.createStream();
  const aborted = new Promise<Error | undefined>((resolve) => pending.addEventListener('close', (e) => resolve(e.error), { once: true }));
  c.sendRaw('toOurs', Buffer.from([0, T_DATA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
  const reason = await withTimeout(c.sessionClosed, 2_000, 'our session to close');
  assert.equal(reason.name, 'ProtocolError');
  assert.match((await withTimeout(aborted, 2_000, 'libp2p to abort its stream'))?.message ?? '', /GoAway/, 'libp2p aborted on our GoAway');
  assert.deepEqual(c.audit.sentBy('ours').filter((f) => f.type === T_GO_AWAY).map((f) => f.length), [1], 'GoAway(protocol error)');
  assert.equal(c.muxer.status, 'closed');
});

// ---- 7. edge cases ------------------------------------------------------------------

test('empty and one-byte streams, opened by either side, close cleanly', { timeout: TIMEOUT }, async (t) => {
  const l = link(t, { session: { client: true, keepaliveIntervalMs: 0 } });
  const libp2pEchoes = new Map<number, Promise<EchoResult>>();
  l.muxer.addEventListener('stream', (evt) => libp2pEchoes.set(evt.detail.streamId, libp2pEcho(evt.detail)));
  const ourEchoes = new Map<number, Promise<Digest>>();
  l.session.on('stream', (stream) => ourEchoes.set(stream.id, ourEcho(stream)));
  const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
  const payloads = [Buffer.alloc(0), Buffer.from([0x42])];

  const outgoing = payloads.map(async (payload) => {
    const stream = l.session.open();
    const echoed = ourRead(stream);
    stream.end(payload);
    return { id: stream.id, payload, echoed: await echoed, remote: await libp2pEchoes.get(stream.id)! };
  });
  const incoming = payloads.map(async (payload) => {
    const stream = await l.muxer.createStream();
    const echoed = libp2pRead(stream);
    if (payload.length > 0) stream.send(payload);
    await stream.close();
    return { id: stream.streamId, payload, echoed: await echoed, remote: await ourEchoes.get(stream.streamId)! };
  });
  for (const { id, payload, echoed, remote } of await transfers(Promise.all([...outgoing, ...incoming]))) {
    assert.deepEqual([remote.bytes, remote.sha256], [payload.length, sha(payload)], `stream ${id}: at the echoing side`);
    assert.deepEqual([echoed.bytes, echoed.sha256], [payload.length, sha(payload)], `stream ${id}: echo`);
  }
  assert.equal(l.audit.frames.filter((f) => has(f.flags, F_RST)).length, 0, 'no resets');
  await until(() => l.session.streamCount === 0 && l.muxer.streams.length === 0, 2_000, 'both sides to drop the closed streams');
  await closeClean(l);
});
