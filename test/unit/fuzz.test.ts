// Fuzz tests (fast-check, fixed seeds): the yamux frame decoder, a whole Session fed hostile
// bytes, the open-request handshake parser, and the passive NBD inspector.
// Run: node --import tsx --test test/unit/fuzz.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { FLAG_FIN, FLAG_SYN, TYPE_DATA, TYPE_WINDOW_UPDATE } from '../../src/tunnel/const.js';
import { ProtocolError, StreamError } from '../../src/tunnel/errors.js';
import { FrameDecoder } from '../../src/tunnel/frame.js';
import { parseOpenReply, parseOpenRequest, readMessage, Session, type Stream } from '../../src/tunnel/index.js';
import { NbdInspector } from '../../src/nbd/index.js';
import {
  FuzzTransport,
  RecordingSink,
  cut,
  cutSizesArb,
  encodeFrames,
  frameArb,
  mutate,
  mutationArb,
  referenceDecode,
  synFlood,
  type FrameSpec,
  type Mutation,
} from './support/fuzz-yamux.js';
import { BASE_SCRIPTS, buildConversation, checkSnapshot, mutateScript, opArb, scriptMutationArb } from './support/fuzz-nbd.js';
import { feedCut, randomCuts, runs, scriptLength, type Script } from './support/nbd-wire.js';
import { mulberry32 } from '../harness/prng.js';

const WINDOW = 256 * 1024;


// ------------------------------------------------------------------ 1. FrameDecoder

/** Valid-looking frame sequences, mutated; or biased random bytes. */
const wireBytesArb = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.array(frameArb, { maxLength: 12 }), fc.array(mutationArb, { maxLength: 4 })).map(([frames, m]) => mutate(Buffer.concat(encodeFrames(frames)), m)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)) },
  { weight: 1, arbitrary: fc.array(fc.constantFrom(0, 0, 0, 1, 2, 3, 4, 0xff), { maxLength: 200 }).map((a) => Buffer.from(a)) },
);

test('fuzz: FrameDecoder matches a reference decoder, whatever the bytes and however they are cut', (t) => {
  let cases = 0;
  let malformed = 0;
  fc.assert(
    fc.property(wireBytesArb, cutSizesArb, (bytes, sizes) => {
      cases++;
      const sink = new RecordingSink();
      const decoder = new FrameDecoder(sink);
      let thrown: unknown = null;
      for (const piece of cut(bytes, sizes)) {
        try {
          decoder.push(piece);
        } catch (error) {
          thrown = error;
          break;
        }
      }
      const expected = referenceDecode(bytes);
      if (expected.error) {
        malformed++;
        assert.ok(thrown instanceof ProtocolError, `expected a ProtocolError, got ${String(thrown)}`);
        assert.ok(thrown.message.length > 0);
      } else {
        assert.equal(thrown, null, `unexpected throw: ${String(thrown)}`);
      }
      assert.deepEqual(sink.finish(), expected.events);
    }),
    { seed: 0xf4a3e, numRuns: 45_000 },
  );
  t.diagnostic(`FrameDecoder: ${cases} cases (${malformed} with a malformed header)`);
});

// ------------------------------------------------------------------ 1b. Session

interface SessionCase {
  client: boolean;
  maxStreams: number;
  frames: FrameSpec[];
  mutations: Mutation[];
  /** Bytes to send instead of the encoded frames. */
  raw?: Buffer;
  sizes: number[];
  /** Bit i: resume the i-th accepted stream (otherwise it stays paused and buffers). */
  resumeMask: number;
  /** Yield to the event loop after every `yieldEvery` chunks (0: never). */
  yieldEvery: number;
  congested: boolean;
}

const scenarioArb = fc.oneof(
  { weight: 5, arbitrary: fc.array(frameArb, { maxLength: 30 }) },
  // SYN flood (with WindowUpdate or Data), then anything.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 40 }), fc.boolean(), fc.boolean(), fc.array(frameArb, { maxLength: 10 }))
      .map(([n, odd, data, rest]) => [...synFlood(n, odd, data), ...rest]),
  },
  // Fill a stream's window (paused reader), maybe overrun it, then FIN and data after FIN.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.boolean(), fc.integer({ min: 1, max: 5 }), fc.integer({ min: -2, max: 2 }), fc.boolean(), fc.array(frameArb, { maxLength: 6 }))
      .map(([odd, pieces, extra, fin, rest]): FrameSpec[] => {
        const id = odd ? 1 : 2;
        const frames: FrameSpec[] = [{ version: 0, type: TYPE_WINDOW_UPDATE, flags: FLAG_SYN, streamId: id, length: 0, sent: 0 }];
        const each = WINDOW / 4;
        for (let i = 0; i < pieces; i++) {
          const length = i === pieces - 1 ? each + extra : each;
          frames.push({ version: 0, type: TYPE_DATA, flags: 0, streamId: id, length, sent: length });
        }
        if (fin) {
          frames.push({ version: 0, type: TYPE_DATA, flags: FLAG_FIN, streamId: id, length: 1, sent: 1 });
          frames.push({ version: 0, type: TYPE_DATA, flags: 0, streamId: id, length: 3, sent: 3 });
        }
        return [...frames, ...rest];
      }),
  },
);

const sessionCaseArb = fc.record({
  client: fc.boolean(),
  maxStreams: fc.integer({ min: 1, max: 8 }),
  frames: scenarioArb,
  mutations: fc.oneof({ weight: 2, arbitrary: fc.constant<Mutation[]>([]) }, { weight: 3, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 5 }) }),
  sizes: cutSizesArb,
  resumeMask: fc.nat({ max: 0xff }),
  yieldEvery: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 8 }) }),
  congested: fc.boolean(),
});

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function runSessionCase(k: SessionCase, stats: { closed: number; streams: number }): Promise<void> {
  const transport = new FuzzTransport();
  transport.congested = k.congested;
  const session = new Session(transport, { client: k.client, streamWindow: WINDOW, maxStreams: k.maxStreams, keepaliveIntervalMs: 0 });
  const closes: Error[] = [];
  const accepted: Stream[] = [];
  session.on('close', (reason) => closes.push(reason));
  session.on('stream', (stream) => {
    stream.on('error', () => {});
    if ((k.resumeMask >> accepted.length % 8) & 1) stream.resume();
    accepted.push(stream);
  });
  const bytes = k.raw ?? mutate(Buffer.concat(encodeFrames(k.frames)), k.mutations);
  let injected = 0;
  const check = (): void => {
    assert.ok(session.streamCount <= k.maxStreams, `${session.streamCount} streams > maxStreams ${k.maxStreams}`);
    // Unread bytes: at most one window not yet handed to the Readable (the peer is credited
    // only for bytes handed over), plus the Readable's own buffer.
    for (const stream of accepted) {
      const bound = WINDOW + stream.readableHighWaterMark;
      assert.ok(stream.bufferedBytes <= bound, `stream ${stream.id} buffers ${stream.bufferedBytes} bytes > ${bound}`);
      if (!(k.resumeMask >> accepted.indexOf(stream) % 8 & 1)) {
        // Never read: nothing was credited back, so one window at most.
        assert.ok(stream.bufferedBytes <= WINDOW, `paused stream ${stream.id} buffers ${stream.bufferedBytes} bytes > window ${WINDOW}`);
      }
    }
    assert.ok(closes.length <= 1, 'close emitted more than once');
    if (session.closed) {
      assert.equal(closes.length, 1, 'closed without a close event');
      const reason = closes[0]!;
      assert.ok(reason instanceof Error && reason.message.length > 0, 'close reason is not an Error with a message');
      assert.doesNotMatch(reason.message, /^internal error/, 'an exception other than a ProtocolError escaped the decoder');
      assert.equal(session.streamCount, 0, 'streams left after close');
    } else {
      assert.equal(closes.length, 0, 'a close event without session.closed');
    }
    assert.equal(transport.sendError, null, `the session sent malformed frames: ${transport.sendError?.message}`);
    // No amplification: each frame received causes at most one 12-byte frame (+ a GoAway).
    assert.ok(transport.sentBytes <= 2 * injected + 12, `sent ${transport.sentBytes} bytes for ${injected} received`);
  };
  const pieces = cut(bytes, k.sizes);
  for (let i = 0; i < pieces.length; i++) {
    transport.inject(pieces[i]!); // must not throw
    injected += pieces[i]!.length;
    check();
    if (k.yieldEvery > 0 && i % k.yieldEvery === 0) {
      await tick();
      check();
    }
  }
  stats.streams += accepted.length;
  if (session.closed) stats.closed++;
  session.close();
  assert.ok(session.closed);
  assert.equal(closes.length, 1);
  assert.equal(session.streamCount, 0);
  for (const stream of accepted) assert.ok(stream.destroyed || stream.writableFinished || stream.readableEnded, 'stream left alive');
}

test('fuzz: a Session fed random and mutated frames never throws, stays bounded, closes with a reason', async (t) => {
  let cases = 0;
  const stats = { closed: 0, streams: 0 };
  await fc.assert(
    fc.asyncProperty(sessionCaseArb, async (k) => {
      cases++;
      await runSessionCase(k, stats);
    }),
    { seed: 0x5e55, numRuns: 6_000 },
  );
  t.diagnostic(`Session: ${cases} cases (${stats.closed} closed by the peer's bytes, ${stats.streams} streams accepted)`);
});

test('fuzz: a Session fed uniformly random bytes', async (t) => {
  let cases = 0;
  const stats = { closed: 0, streams: 0 };
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 12, maxLength: 400, size: 'max' }), fc.boolean(), cutSizesArb, async (bytes, client, sizes) => {
      cases++;
      // A version byte of 0 first, so that random bytes get past the first header now and then.
      const b = Buffer.from(bytes);
      if (b.length > 0 && b[0]! < 200) b[0] = 0;
      await runSessionCase({ client, maxStreams: 4, frames: [], mutations: [], raw: b, sizes, resumeMask: 0x55, yieldEvery: 0, congested: false }, stats);
    }),
    { seed: 0xb17e5, numRuns: 5_000 },
  );
  t.diagnostic(`Session (random bytes): ${cases} cases (${stats.closed} closed by the peer's bytes)`);
});

// ------------------------------------------------------------------ 2. open request

function framed(json: Buffer, declared = json.length): Buffer {
  const b = Buffer.allocUnsafe(4 + json.length);
  b.writeUInt32BE(declared >>> 0, 0);
  json.copy(b, 4);
  return b;
}

const openBytesArb = fc.oneof(
  // A well-framed message (valid JSON or not), maybe followed by more bytes.
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.oneof(fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null'), fc.string({ maxLength: 40 })), fc.uint8Array({ maxLength: 20 }))
      .map(([text, trail]) => ({ msg: framed(Buffer.from(text)), trail: Buffer.from(trail) })),
  },
  // Edge lengths: just under/at/over the limit, huge, with whatever follows.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(0, 1, 4095, 4096, 4097, 65536, 0x7fffffff, 0xffffffff), fc.nat({ max: 5000 }))
      .map(([declared, have]) => ({ msg: framed(Buffer.alloc(Math.min(have, declared + 3), 0x20), declared), trail: Buffer.alloc(0) })),
  },
  // A big valid JSON string of exactly the limit, or one byte over.
  { weight: 1, arbitrary: fc.integer({ min: 4090, max: 4100 }).map((n) => ({ msg: framed(Buffer.from(JSON.stringify('x'.repeat(Math.max(0, n - 2))))), trail: Buffer.alloc(0) })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 60 }).map((a) => ({ msg: Buffer.from(a), trail: Buffer.alloc(0) })) },
);

/**
 * Guards `stream.unshift` against re-entry: readMessage unshifts the bytes after the message
 * while its 'data' listener is still attached, so (on a flowing stream) it is handed those bytes
 * again, re-reads the message and unshifts more, doubling until Buffer.concat throws (at 4 GiB).
 * The guard stops that after one level and records it.
 */
function guardUnshift(stream: PassThrough): { reentered: boolean } {
  const state = { reentered: false };
  let depth = 0;
  const original = stream.unshift.bind(stream);
  stream.unshift = (chunk: unknown, encoding?: BufferEncoding): void => {
    if (depth > 0) {
      state.reentered = true;
      return;
    }
    depth++;
    try {
      original(chunk, encoding);
    } finally {
      depth--;
    }
  };
  return state;
}

type Outcome = { value: unknown; rest: Buffer } | { code: string };

/** What readMessage must do with `bytes`, then end (or not). */
function expectedOutcome(bytes: Buffer, ended: boolean): Outcome {
  if (bytes.length >= 4) {
    const length = bytes.readUInt32BE(0);
    if (length > 4096) return { code: 'EOPENTOOLARGE' };
    if (bytes.length >= 4 + length) {
      try {
        return { value: JSON.parse(bytes.subarray(4, 4 + length).toString('utf8')), rest: bytes.subarray(4 + length) };
      } catch {
        return { code: 'EOPENMALFORMED' };
      }
    }
  }
  return { code: ended ? 'EOPENEOF' : 'EOPENTIMEOUT' };
}

async function readMessageProperty(t: { diagnostic(m: string): void }, name: string, sameChunk: boolean, seed: number, numRuns: number): Promise<void> {
  let cases = 0;
  const outcomes: Record<string, number> = {};
  await fc.assert(
    fc.asyncProperty(
      openBytesArb,
      cutSizesArb,
      fc.oneof({ weight: 12, arbitrary: fc.constant('end') }, { weight: 1, arbitrary: fc.constant('open') }, { weight: 2, arbitrary: fc.constant('destroy') }),
      fc.boolean(),
      async ({ msg, trail }, sizes, finish, slow) => {
        cases++;
        const bytes = Buffer.concat([msg, trail]);
        const stream = new PassThrough();
        const guard = guardUnshift(stream);
        stream.on('error', () => {}); // the caller's own listener (readMessage removes its own when done)
        // All bytes are written before the event loop turns, so the short timeout only fires
        // when the message is incomplete and the stream stays open; with `slow`, the bytes
        // come one turn at a time, and the stream always ends.
        const promise = readMessage(stream, slow ? 5_000 : 3);
        const settled = promise.then(
          (value) => ({ ok: true as const, value }),
          (error: unknown) => ({ ok: false as const, error }),
        );
        const injected = new Error('injected');
        const pieceSizes = sizes.map((n) => (n === 0 ? 0 : 1 + (n % 600)));
        // The bytes after the message come in later chunks; with `sameChunk`, the chunk that
        // completes the message also carries what follows.
        const pieces = sameChunk && trail.length > 0 ? [bytes] : [...cut(msg, pieceSizes), ...cut(trail, pieceSizes)];
        for (const piece of pieces) {
          stream.write(piece);
          if (slow) await new Promise((resolve) => setImmediate(resolve));
        }
        if (finish === 'end' || (slow && finish === 'open')) stream.end();
        else if (finish === 'destroy') stream.destroy(injected);
        const result = await settled;
        assert.equal(guard.reentered, false, 'readMessage was handed the bytes it had just unshifted (re-entrant data event)');
        const ended = finish !== 'open' || slow;
        const expected = expectedOutcome(bytes, ended);
        if (finish === 'destroy') {
          // Destroying may discard buffered bytes: any legitimate outcome, nothing else.
          if (!result.ok) {
            const e = result.error;
            assert.ok(e === injected || (e instanceof StreamError && /^EOPEN/.test(e.code)), `unexpected rejection ${String(e)}`);
          }
          outcomes.destroy = (outcomes.destroy ?? 0) + 1;
          return;
        }
        if ('code' in expected) {
          assert.ok(!result.ok, `expected ${expected.code}, resolved with ${JSON.stringify(result.ok ? result.value : null)}`);
          assert.ok(result.error instanceof StreamError, `expected a StreamError, got ${String(result.error)}`);
          assert.equal(result.error.code, expected.code);
          outcomes[expected.code] = (outcomes[expected.code] ?? 0) + 1;
        } else {
          assert.ok(result.ok, `expected a value, got ${String(!result.ok && result.error)}`);
          assert.deepEqual(result.value, expected.value);
          // The bytes after the message are still there, in order.
          const rest: Buffer[] = [];
          for (let chunk: Buffer | null; (chunk = stream.read() as Buffer | null) !== null; ) rest.push(chunk);
          assert.deepEqual(Buffer.concat(rest), Buffer.from(expected.rest));
          outcomes.value = (outcomes.value ?? 0) + 1;
        }
        stream.destroy();
      },
    ),
    { seed, numRuns },
  );
  t.diagnostic(`${name}: ${cases} cases ${JSON.stringify(outcomes)}`);
}

test('fuzz: readMessage settles with the message or a StreamError code, and leaves the rest unread', (t) =>
  readMessageProperty(t, 'readMessage', false, 0x09e4, 6_000));

test(
  'fuzz: readMessage with bytes after the message in the same chunk',
  (t) => readMessageProperty(t, 'readMessage (same chunk)', true, 0x59c4, 500),
);

/** JSON text objects shaped like open requests and replies, with fields of any JSON type. */
function jsonValueArb(hostileKeys: boolean): fc.Arbitrary<unknown> {
  const key = hostileKeys
    ? fc.constantFrom('ok', 'code', 'message', 'route', 'probe', 'socket', 'toString', 'valueOf', '__proto__', 'constructor')
    : fc.constantFrom('ok', 'code', 'message', 'route', 'migrate', 'probe', 'socket', 'identity', 'x', '');
  const leaf = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom(true, false, null, 0, '', 'vm1-vda'));
  const { value } = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('object'), fc.array(tie('value'), { maxLength: 3 })),
    object: fc.dictionary(key, tie('value'), { maxKeys: 5 }),
  }));
  // Through JSON text, as readMessage produces them (JSON.parse makes "__proto__" an own key).
  return value.map((v) => JSON.parse(JSON.stringify(v) ?? 'null') as unknown);
}

/** What parseOpenRequest must make of `v`: the first of route, migrate, probe that is a string. */
function expectedRequest(v: Record<string, unknown>): Record<string, string> | null {
  for (const key of ['route', 'migrate', 'probe']) if (typeof v[key] === 'string') return { [key]: v[key] };
  return null;
}

function checkParsers(value: unknown): void {
  const v = value as Record<string, unknown> | null;
  const isObject = typeof value === 'object' && value !== null;
  const wanted = isObject ? expectedRequest(v!) : null;
  try {
    const request = parseOpenRequest(value);
    assert.ok(wanted, 'accepted a request without a string route, migrate or probe');
    assert.deepEqual(request, wanted);
  } catch (error) {
    if (error instanceof assert.AssertionError) throw error;
    assert.ok(error instanceof StreamError && error.code === 'EOPENMALFORMED', `parseOpenRequest threw ${String(error)}`);
    assert.equal(wanted, null, 'refused a valid request');
  }
  try {
    const reply = parseOpenReply(value);
    assert.ok(isObject && (v!.ok === true || v!.ok === false), 'accepted a reply without a boolean ok');
    // A yes keeps a probe's findings when they are strings, and nothing else.
    const findings = Object.fromEntries(['socket', 'identity'].filter((k) => typeof v![k] === 'string').map((k) => [k, v![k]]));
    if (reply.ok) assert.deepEqual(reply, { ok: true, ...findings });
    else {
      assert.equal(v!.ok, false);
      assert.equal(typeof reply.code, 'string');
      assert.equal(typeof reply.message, 'string');
    }
  } catch (error) {
    if (error instanceof assert.AssertionError) throw error;
    assert.ok(error instanceof StreamError && error.code === 'EOPENMALFORMED', `parseOpenReply threw ${String(error)}`);
    assert.ok(!(isObject && (v!.ok === true || v!.ok === false)), 'refused a well-formed reply');
  }
}

test('fuzz: parseOpenRequest / parseOpenReply return a typed value or throw EOPENMALFORMED', (t) => {
  let cases = 0;
  fc.assert(
    fc.property(jsonValueArb(false), (value) => {
      cases++;
      checkParsers(value);
    }),
    { seed: 0x0e9, numRuns: 25_000 },
  );
  t.diagnostic(`parseOpenRequest/parseOpenReply: ${cases} cases`);
});

test(
  'fuzz: parseOpenReply with keys such as "toString" in code/message',
  (t) => {
    let cases = 0;
    fc.assert(
      fc.property(jsonValueArb(true), (value) => {
        cases++;
        checkParsers(value);
      }),
      { seed: 0x70517, numRuns: 5_000 },
    );
      t.diagnostic(`parse functions, hostile keys: ${cases} cases`);
  },
);

// ------------------------------------------------------------------ 3. NbdInspector

function snapshotWithoutClock(inspector: NbdInspector): unknown {
  const { writeBytesPerSecond: _, ...rest } = inspector.snapshot();
  return rest;
}

interface NbdRun {
  final: unknown;
  stopped: number;
}

/** Feeds `script` cut at `cuts`, checking the inspector after every chunk. */
function feedChecked(script: Script, cuts: readonly number[], maxInFlight: number, recentErrors: number, throwing: boolean): NbdRun {
  let stopped = 0;
  const fail = (): void => {
    if (throwing) throw new Error('listener failure');
  };
  const inspector = new NbdInspector({
    maxInFlight,
    recentErrors,
    now: () => 0,
    listener: {
      negotiated: fail,
      error: fail,
      optionError: fail,
      disconnect: fail,
      stopped: () => {
        stopped++;
        fail();
      },
    },
  });
  const fed = { toDest: 0, toSource: 0 };
  const limits = { maxInFlight, recentErrors };
  let wasActive = true;
  let errorsTotal = 0;
  const wrapped = {
    toDest: (chunk: Buffer) => {
      inspector.toDest(chunk);
      fed.toDest += chunk.length;
      after();
    },
    toSource: (chunk: Buffer) => {
      inspector.toSource(chunk);
      fed.toSource += chunk.length;
      after();
    },
  };
  function after(): void {
    const snap = inspector.snapshot();
    checkSnapshot(snap, fed, limits);
    assert.equal(inspector.inspecting, snap.inspection === 'active');
    if (!wasActive) assert.notEqual(snap.inspection, 'active', 'inspection resumed after it stopped');
    wasActive = snap.inspection === 'active';
    assert.ok(snap.errors.total >= errorsTotal, 'error count went down');
    errorsTotal = snap.errors.total;
    assert.ok(stopped <= 1, 'stopped reported more than once');
    assert.equal(stopped, wasActive ? 0 : 1, 'stopped reported iff inspection stopped');
  }
  feedCut(wrapped as unknown as NbdInspector, script, cuts);
  return { final: snapshotWithoutClock(inspector), stopped };
}

const nbdCaseArb = fc.record({
  base: fc.oneof(
    { weight: 1, arbitrary: fc.nat({ max: BASE_SCRIPTS.length - 1 }).map((i) => BASE_SCRIPTS[i]!) },
    {
      weight: 5,
      arbitrary: fc
        .tuple(fc.boolean(), fc.oneof(fc.nat({ max: 16 * 1024 * 1024 }), fc.constantFrom(0, 1, 2 ** 53, 2 ** 64 - 2 ** 11)), fc.array(opArb, { maxLength: 40 }))
        .map(([structured, size, ops]) => buildConversation(structured, size, ops)),
    },
  ),
  mutations: fc.oneof({ weight: 1, arbitrary: fc.constant([]) }, { weight: 4, arbitrary: fc.array(scriptMutationArb, { minLength: 1, maxLength: 4 }) }),
  cutSeed: fc.nat(),
  maxPiece: fc.constantFrom(1, 7, 64, 4096, 100_000),
  maxInFlight: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant(1024)),
  recentErrors: fc.constantFrom(0, 1, 3, 32),
  throwing: fc.boolean(),
});

test('fuzz: NbdInspector on mutated conversations never throws, stays sane, ignores chunking', (t) => {
  let cases = 0;
  const inspection: Record<string, number> = {};
  fc.assert(
    fc.property(nbdCaseArb, (k) => {
      cases++;
      const script = mutateScript(k.base, k.mutations);
      const total = scriptLength(script);
      // At most a few thousand chunks (a snapshot is checked after each one).
      const cuts = randomCuts(total, mulberry32(k.cutSeed), Math.max(k.maxPiece, Math.ceil(total / 1000)));
      const a = feedChecked(script, cuts, k.maxInFlight, k.recentErrors, k.throwing);
      // The same bytes in the same order, each run of one direction in one chunk: same result.
      const b = feedChecked(runs(script), [], k.maxInFlight, k.recentErrors, false);
      assert.deepEqual(a.final, b.final, 'the result depends on how the bytes were cut');
      const state = (a.final as { inspection: string }).inspection;
      inspection[state] = (inspection[state] ?? 0) + 1;
    }),
    { seed: 0x4bd, numRuns: 5_000 },
  );
  t.diagnostic(`NbdInspector (mutated): ${cases} cases ${JSON.stringify(inspection)}`);
});

test('fuzz: NbdInspector on random bytes in both directions', (t) => {
  let cases = 0;
  const greetingPrefix = BASE_SCRIPTS[1]![0]!.data; // a server greeting, to get past it
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 64 })), { maxLength: 20 }),
      fc.boolean(),
      fc.nat(),
      (segments, prefix, cutSeed) => {
        cases++;
        const script: Script = segments.map(([toDest, data]) => ({ dir: toDest ? 'toDest' : 'toSource', data: Buffer.from(data) }));
        if (prefix) script.unshift({ dir: 'toSource', data: greetingPrefix });
        const cuts = randomCuts(scriptLength(script), mulberry32(cutSeed), 16);
        feedChecked(script, cuts, 4, 2, true);
      },
    ),
    { seed: 0x7a5d, numRuns: 12_000 },
  );
  t.diagnostic(`NbdInspector (random): ${cases} cases`);
});
