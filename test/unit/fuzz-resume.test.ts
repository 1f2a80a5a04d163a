// Fuzz of resumption, the one input a resuming peer controls beyond plain yamux: the state
// message and what follows it. A resumable server session with a few streams loses its
// transport, gets a new one, and is fed a random or mutated state message cut anywhere, then
// random frames. It must never throw, must close at most once with a reason, and must send
// well-formed bytes: one state message, then yamux frames.
// Run: node --import tsx --test test/unit/fuzz-resume.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FLAG_SYN, TYPE_DATA, TYPE_WINDOW_UPDATE } from '../../src/tunnel/const.js';
import { Session, type Stream } from '../../src/tunnel/index.js';
import { encodeSessionState, SessionStateReader, type StreamState } from '../../src/tunnel/resume-state.js';
import { encodeFrames, FuzzTransport, frameArb, header, SOURCE } from './support/fuzz-yamux.js';

const WINDOW = 256 * 1024;

/** A FuzzTransport that first takes the session's own state message off what it sends. */
class ResumedTransport extends FuzzTransport {
  private reader: SessionStateReader | null = new SessionStateReader();
  stateMessages = 0;
  override send(chunk: Buffer): void {
    if (!this.reader) return super.send(chunk);
    const message = this.reader.push(chunk); // throws (failing the case) if it is malformed
    if (!message) return;
    this.reader = null;
    this.stateMessages++;
    if (message.rest.length > 0) super.send(message.rest);
  }
}

const offsetArb = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3 * WINDOW }), fc.constant(Number.MAX_SAFE_INTEGER), fc.nat());
const recordArb: fc.Arbitrary<StreamState> = fc.record({
  id: fc.oneof(fc.integer({ min: 1, max: 9 }), fc.nat({ max: 0xffffffff })),
  flags: fc.nat({ max: 0xff }),
  window: fc.oneof(fc.constant(WINDOW), fc.nat({ max: 0xffffffff })),
  received: offsetArb,
  limit: offsetArb,
});
const stateBytesArb = fc.oneof(
  { weight: 4, arbitrary: fc.record({ highestPeerStreamId: fc.nat({ max: 20 }), streams: fc.array(recordArb, { maxLength: 6 }) }).map(encodeSessionState) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.nat({ max: 0xffffffff }), fc.uint8Array({ maxLength: 60 })).map(([length, body]) => {
      const b = Buffer.alloc(4 + body.length);
      b.writeUInt32BE(length, 0);
      Buffer.from(body).copy(b, 4);
      return b;
    }),
  },
);

const caseArb = fc.record({
  opened: fc.integer({ min: 0, max: 4 }),
  sentBefore: fc.nat({ max: 2 * WINDOW }),
  state: stateBytesArb,
  after: fc.array(frameArb, { maxLength: 6 }),
  cuts: fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }),
});

test('fuzz: a resumed session fed random state messages and frames never throws and closes with a reason', async (t) => {
  let cases = 0;
  let closed = 0;
  await fc.assert(
    fc.asyncProperty(caseArb, async (k) => {
      cases++;
      const first = new FuzzTransport();
      const session = new Session(first, { client: false, streamWindow: WINDOW, keepaliveIntervalMs: 0, resumeTimeoutMs: 60_000 });
      const closes: Error[] = [];
      const accepted: Stream[] = [];
      session.on('close', (reason) => closes.push(reason));
      session.on('stream', (stream) => {
        stream.on('error', () => {});
        accepted.push(stream);
      });
      // The peer opened `opened` streams and sent some bytes; we answer on each.
      for (let i = 0; i < k.opened; i++) {
        const id = 2 * i + 1;
        first.inject(header(0, TYPE_WINDOW_UPDATE, FLAG_SYN, id, 0));
        const n = Math.min(k.sentBefore, WINDOW);
        first.inject(Buffer.concat([header(0, TYPE_DATA, 0, id, n), SOURCE.subarray(0, n)]));
      }
      for (const stream of accepted) stream.write(SOURCE.subarray(0, 1000 + stream.id));
      first.handlers!.close(new Error('link reset'));
      assert.ok(session.suspended, 'not suspended after the transport was lost');
      const second = new ResumedTransport();
      session.resume(second);
      const bytes = Buffer.concat([k.state, ...encodeFrames(k.after)]);
      let at = 0;
      for (let i = 0; at < bytes.length; i++) {
        const n = k.cuts[i % k.cuts.length]!;
        second.inject(bytes.subarray(at, at + n)); // must not throw
        at += n;
        assert.ok(closes.length <= 1, 'close emitted more than once');
        assert.equal(second.sendError, null, `malformed frames sent: ${second.sendError?.message}`);
      }
      assert.ok(second.stateMessages <= 1, 'more than one state message');
      if (session.closed) {
        closed++;
        assert.equal(closes.length, 1);
        assert.ok(closes[0]!.message.length > 0);
        assert.doesNotMatch(closes[0]!.message, /^internal error/, `an unexpected exception: ${closes[0]!.message}`);
        assert.equal(session.streamCount, 0);
      }
      session.close();
      assert.equal(closes.length, 1);
      assert.equal(session.streamCount, 0);
    }),
    { seed: 0x7e5, numRuns: 4_000 },
  );
  t.diagnostic(`resume: ${cases} cases, ${closed} closed by the peer's bytes`);
});
