// Helpers for the NBD inspector fuzz tests: small conversations to mutate, mutations that keep
// the two directions and their order, and the sanity checks of a snapshot.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_CMD_WRITE,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_OPT_GO,
} from '../../../src/nbd/constants.js';
import type { NbdStreamStats } from '../../../src/nbd/index.js';
import {
  ack,
  blockStatus,
  c,
  chunk,
  clientFlags,
  errorChunk,
  errorOffsetChunk,
  goData,
  greeting,
  infoExport,
  noneChunk,
  offsetData,
  offsetHole,
  option,
  request,
  s,
  simpleReply,
  type Script,
  type Segment,
} from './nbd-wire.js';
import { exportNameSession, FLAGS, qemuLikeHandshake, simpleSession, structuredSession } from './nbd-scripts.js';
import { SOURCE, type Mutation, mutate } from './fuzz-yamux.js';

/** The constructed conversations of nbd-scripts.ts, built once (they hold up to 2 MiB). */
export const BASE_SCRIPTS: readonly Script[] = [
  structuredSession(),
  simpleSession(),
  exportNameSession(true),
  exportNameSession(false),
  qemuLikeHandshake(),
];

export interface Op {
  kind: 'request' | 'simple' | 'chunk' | 'error' | 'errorOffset' | 'none' | 'data' | 'hole' | 'status';
  cmd: number;
  cookie: number;
  offset: number;
  length: number;
  done: boolean;
}

export const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom('request', 'request', 'request', 'simple', 'simple', 'chunk', 'error', 'errorOffset', 'none', 'data', 'hole', 'status'),
  cmd: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 7 }) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
  cookie: fc.integer({ min: 0, max: 40 }),
  offset: fc.oneof({ weight: 6, arbitrary: fc.nat({ max: 8 * 1024 * 1024 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 2 ** 32 - 1, 2 ** 40, Number.MAX_SAFE_INTEGER) }),
  length: fc.oneof({ weight: 8, arbitrary: fc.nat({ max: 3000 }) }, { weight: 1, arbitrary: fc.constantFrom(0, 4096, 65536, 0xffffffff) }),
  done: fc.boolean(),
});

/**
 * A conversation built from random operations after a handshake (structured replies or not):
 * requests (writes carry their payload, up to 3000 bytes), and replies that may or may not
 * match a request (a simple reply to a read carries the read's data).
 */
export function buildConversation(structured: boolean, exportSize: number, ops: readonly Op[]): Script {
  const script: Script = structured
    ? qemuLikeHandshake('fuzz', exportSize, FLAGS)
    : [
        s(greeting()),
        c(clientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES), option(NBD_OPT_GO, goData('fuzz'))),
        s(infoExport(NBD_OPT_GO, exportSize, FLAGS), ack(NBD_OPT_GO)),
      ];
  const reads = new Map<number, number>();
  const small = (n: number): number => Math.min(n, 3000);
  for (const op of ops) {
    const data = SOURCE.subarray(op.offset % 1000, (op.offset % 1000) + small(op.length));
    switch (op.kind) {
      case 'request': {
        const isWrite = op.cmd === NBD_CMD_WRITE;
        const length = isWrite ? small(op.length) : op.length;
        script.push(c(request(op.cmd, op.cookie, op.offset, length, isWrite ? { payload: data.subarray(0, length) } : {})));
        if (op.cmd === NBD_CMD_READ) reads.set(op.cookie, length);
        break;
      }
      case 'simple': {
        const readLength = reads.get(op.cookie);
        const body = readLength !== undefined && op.done && readLength <= 3000 ? SOURCE.subarray(0, readLength) : Buffer.alloc(0);
        script.push(s(simpleReply(op.cookie, op.done ? 0 : op.length % 40, body)));
        break;
      }
      case 'chunk':
        script.push(s(chunk(op.cookie, op.cmd, data.subarray(0, op.length % 64), op.done)));
        break;
      case 'error':
        script.push(s(errorChunk(op.cookie, op.length % 120, 'e'.repeat(op.offset % 50), op.done)));
        break;
      case 'errorOffset':
        script.push(s(errorOffsetChunk(op.cookie, 5, 'bad', op.offset, op.done)));
        break;
      case 'none':
        script.push(s(noneChunk(op.cookie)));
        break;
      case 'data':
        script.push(s(offsetData(op.cookie, op.offset, data, op.done)));
        break;
      case 'hole':
        script.push(s(offsetHole(op.cookie, op.offset, op.length, op.done)));
        break;
      case 'status':
        script.push(s(blockStatus(op.cookie, op.cmd % 3, [[op.length, op.cmd]], op.done)));
        break;
    }
  }
  if (ops.length % 3 === 0) script.push(c(request(NBD_CMD_DISC, 99, 0, 0)));
  return script;
}

export interface ScriptMutation {
  kind: 'bytes' | 'drop' | 'dup' | 'swap' | 'flipdir' | 'truncate';
  seg: number;
  bytes: Mutation[];
}

export const scriptMutationArb: fc.Arbitrary<ScriptMutation> = fc.record({
  kind: fc.constantFrom('bytes', 'bytes', 'bytes', 'drop', 'dup', 'swap', 'flipdir', 'truncate'),
  seg: fc.nat(),
  bytes: fc.array(
    fc.record({
      kind: fc.constantFrom('flip', 'set', 'truncate', 'insert', 'dup', 'u32', 'delete') as fc.Arbitrary<Mutation['kind']>,
      pos: fc.nat(),
      val: fc.nat({ max: 0xffffffff }),
    }),
    { minLength: 1, maxLength: 3 },
  ),
});

/** Segment-level and byte-level mutations; the base script is not modified. */
export function mutateScript(script: Script, mutations: readonly ScriptMutation[]): Script {
  let out: Segment[] = script.slice();
  for (const m of mutations) {
    if (out.length === 0) break;
    const i = m.seg % out.length;
    const seg = out[i]!;
    switch (m.kind) {
      case 'bytes':
        out[i] = { dir: seg.dir, data: mutate(seg.data, m.bytes) };
        break;
      case 'drop':
        out.splice(i, 1);
        break;
      case 'dup':
        out.splice(i, 0, seg);
        break;
      case 'swap':
        if (i + 1 < out.length) [out[i], out[i + 1]] = [out[i + 1]!, seg];
        break;
      case 'flipdir':
        out[i] = { dir: seg.dir === 'toDest' ? 'toSource' : 'toDest', data: seg.data };
        break;
      case 'truncate':
        out = out.slice(0, i + 1);
        out[i] = { dir: seg.dir, data: seg.data.subarray(0, (m.bytes[0]?.pos ?? 0) % (seg.data.length + 1)) };
        break;
    }
  }
  return out;
}

const COMMANDS = ['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES', 'BLOCK_STATUS', 'OTHER'] as const;

function count(value: number, what: string): void {
  assert.ok(Number.isSafeInteger(value) && value >= 0, `${what} = ${value}: not a non-negative integer`);
}

/** Sanity of a snapshot, and its consistency with what was fed. */
export function checkSnapshot(
  snap: NbdStreamStats,
  fed: { toDest: number; toSource: number },
  limits: { maxInFlight: number; recentErrors: number },
): void {
  assert.ok(['active', 'stopped', 'not-nbd'].includes(snap.inspection), `inspection ${snap.inspection}`);
  assert.ok(['greeting', 'handshake', 'transmission', 'closed'].includes(snap.phase), `phase ${snap.phase}`);
  assert.equal(snap.stopReason === null, snap.inspection === 'active', 'a stop reason exactly when stopped');
  if (snap.stopReason !== null) {
    assert.ok(snap.stopReason.length > 0, 'empty stop reason');
    assert.doesNotMatch(snap.stopReason, /internal error/, 'the inspector caught an exception of its own');
  }
  assert.equal(snap.bytesToDest, fed.toDest);
  assert.equal(snap.bytesToSource, fed.toSource);
  count(snap.inFlight, 'inFlight');
  assert.ok(snap.inFlight <= limits.maxInFlight, `inFlight ${snap.inFlight} > maxInFlight ${limits.maxInFlight}`);
  for (const name of COMMANDS) {
    count(snap.requests[name].count, `requests.${name}.count`);
    assert.ok(Number.isFinite(snap.requests[name].bytes) && snap.requests[name].bytes >= 0, `requests.${name}.bytes`);
  }
  count(snap.replies.simple, 'replies.simple');
  count(snap.replies.structuredChunks, 'replies.structuredChunks');
  count(snap.replies.unmatched, 'replies.unmatched');
  assert.ok(snap.replies.unmatched <= snap.replies.simple + snap.replies.structuredChunks, 'more unmatched replies than replies');
  count(snap.errors.total, 'errors.total');
  assert.ok(snap.errors.recent.length <= limits.recentErrors, 'recent errors over the limit');
  assert.ok(snap.errors.recent.length <= snap.errors.total, 'more recent errors than errors');
  assert.ok(snap.options.length <= 32, 'options kept');
  assert.ok(snap.optionErrors.length <= 16, 'option errors kept');
  assert.ok(snap.metaContexts.length <= 64, 'meta contexts kept');
  assert.ok(Number.isFinite(snap.writeBytesPerSecond) && snap.writeBytesPerSecond >= 0, `writeBytesPerSecond ${snap.writeBytesPerSecond}`);
  if (snap.exportSize !== null) assert.ok(Number.isFinite(snap.exportSize) && snap.exportSize >= 0, `exportSize ${snap.exportSize}`);
  if (snap.coverage !== null) {
    const { bytes, ratio, granularity } = snap.coverage;
    assert.ok(ratio >= 0 && ratio <= 1, `coverage ratio ${ratio}`);
    assert.ok(Number.isFinite(bytes) && bytes >= 0, `coverage bytes ${bytes}`);
    assert.ok(snap.exportSize === null || bytes <= snap.exportSize, `coverage ${bytes} > export size ${snap.exportSize}`);
    assert.ok(granularity >= 4096 && Number.isInteger(Math.log2(granularity)), `granularity ${granularity}`);
  }
}
