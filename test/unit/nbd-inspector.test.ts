// The passive NBD inspector over constructed conversations: handshake, transmission, errors,
// what it refuses to follow, streams that are not NBD, every way of cutting the bytes, fuzz.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EPERM,
  NBD_EXTENDED_REQUEST_MAGIC,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_OPT_ABORT,
  NBD_OPT_EXTENDED_HEADERS,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_UNSUP,
  NBD_REP_SERVER,
  IHAVEOPT,
  NBDMAGIC,
  NBD_REP_MAGIC,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from '../../src/nbd/constants.js';
import { NbdInspector } from '../../src/nbd/index.js';
import { mulberry32 } from '../harness/prng.js';
import { frozen, observe, observer, type Observation } from './support/nbd-observe.js';
import {
  FLAGS,
  KiB,
  MiB,
  SIZE,
  exportNameSession,
  qemuLikeHandshake,
  simpleSession,
  structuredSession,
} from './support/nbd-scripts.js';
import {
  ack,
  c,
  clientFlags,
  errorChunk,
  feed,
  feedBytes,
  feedCut,
  goData,
  greeting,
  infoExport,
  metaContext,
  metaData,
  offsetData,
  oldstyleGreeting,
  option,
  optionError,
  optionReply,
  randomCuts,
  request,
  runs,
  s,
  scriptLength,
  simpleReply,
  type Script,
} from './support/nbd-wire.js';

const CLIENT_FLAGS = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;

/** Handshake to transmission with simple replies only, export 'd' of `size` bytes. */
function plainHandshake(size = 16 * MiB, flags = NBD_FLAG_HAS_FLAGS): Script {
  return [s(greeting()), c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_GO, goData('d'))), s(infoExport(NBD_OPT_GO, size, flags), ack(NBD_OPT_GO))];
}

function eventNames(o: Observation): string[] {
  return o.events.map((e) => e[0] as string);
}

test('the magics are the spec\'s ASCII and numbers', () => {
  assert.equal(Buffer.from(NBDMAGIC.toString(16), 'hex').toString('latin1'), 'NBDMAGIC');
  assert.equal(Buffer.from(IHAVEOPT.toString(16), 'hex').toString('latin1'), 'IHAVEOPT');
  assert.equal(NBD_REP_MAGIC, 0x3e889045565a9n);
  assert.equal(NBD_REQUEST_MAGIC, 0x25609513);
  assert.equal(NBD_SIMPLE_REPLY_MAGIC, 0x67446698);
  assert.equal(NBD_STRUCTURED_REPLY_MAGIC, 0x668e33ef);
});

test('QEMU-like handshake: export, size, flags, block size, structured replies, meta contexts and their ids', () => {
  const o = observe(qemuLikeHandshake(), feed);
  const st = o.stats;
  assert.equal(st.inspection, 'active');
  assert.equal(st.phase, 'transmission');
  assert.equal(st.handshakeFlags, 3);
  assert.equal(st.clientFlags, 3);
  assert.deepEqual(st.options, ['NBD_OPT_STRUCTURED_REPLY', 'NBD_OPT_SET_META_CONTEXT', 'NBD_OPT_GO']);
  assert.equal(st.exportName, 'vm1-vda');
  assert.equal(st.exportSize, SIZE);
  assert.equal(st.transmissionFlags, FLAGS);
  assert.deepEqual(st.blockSize, { minimum: 1, preferred: 4096, maximum: 32 * MiB });
  assert.equal(st.structuredReplies, true);
  assert.deepEqual(st.metaContexts, [
    { id: 0, name: 'base:allocation' },
    { id: 1, name: 'qemu:dirty-bitmap:bitmap0' },
  ]);
  assert.deepEqual(st.coverage, { bytes: 0, ratio: 0, granularity: 4096 });
  assert.deepEqual(o.events, [
    [
      'negotiated',
      {
        exportName: 'vm1-vda',
        exportSize: SIZE,
        transmissionFlags: FLAGS,
        structuredReplies: true,
        metaContexts: [
          { id: 0, name: 'base:allocation' },
          { id: 1, name: 'qemu:dirty-bitmap:bitmap0' },
        ],
      },
    ],
  ]);
});

test('structured session: counts and bytes by type, out-of-order chunks matched by cookie, errors, coverage, disconnect', () => {
  const o = observe(structuredSession(), feed);
  const st = o.stats;
  assert.equal(st.inspection, 'active', String(st.stopReason));
  assert.equal(st.phase, 'closed');
  assert.deepEqual(st.requests, {
    READ: { count: 2, bytes: 80 * KiB },
    WRITE: { count: 4, bytes: 1 * MiB + 4 * KiB + 16 * KiB },
    DISC: { count: 1, bytes: 0 },
    FLUSH: { count: 1, bytes: 0 },
    TRIM: { count: 1, bytes: 1 * MiB },
    CACHE: { count: 1, bytes: 1 * MiB },
    WRITE_ZEROES: { count: 1, bytes: 2 * MiB },
    BLOCK_STATUS: { count: 1, bytes: 8 * MiB },
    OTHER: { count: 1, bytes: 0 },
  });
  assert.equal(st.inFlight, 0);
  assert.deepEqual(st.replies, { simple: 5, structuredChunks: 12, unmatched: 0 });
  assert.equal(st.errors.total, 3);
  assert.deepEqual(st.errors.recent, [
    { type: 'WRITE', offset: 16 * MiB, length: 8 * KiB, errno: 'EIO', code: 5, message: 'disk on fire', errorOffset: null },
    { type: 'WRITE', offset: 20 * MiB, length: 8 * KiB, errno: 'EIO', code: 5, message: 'bad sector', errorOffset: 20 * MiB + 4 * KiB },
    { type: 'type 9', offset: 0, length: 0, errno: 'EINVAL', code: 22, message: 'unknown command', errorOffset: null },
  ]);
  // Successful writes only: 1 MiB + 4 KiB written, 2 MiB zeroed, 1 MiB trimmed; the failed writes do not count.
  assert.equal(st.coverage!.bytes, 4 * MiB + 4 * KiB);
  assert.equal(st.coverage!.ratio, (4 * MiB + 4 * KiB) / SIZE);
  assert.deepEqual(eventNames(o), ['negotiated', 'error', 'error', 'error', 'disconnect']);
  assert.deepEqual(o.events.at(-1), ['disconnect', 'NBD_CMD_DISC']);
});

test('simple replies: a READ reply carries the request\'s length of data (even data that looks like a reply); errors carry none', () => {
  const o = observe(simpleSession(), feed);
  const st = o.stats;
  assert.equal(st.inspection, 'active', String(st.stopReason));
  assert.equal(st.structuredReplies, false);
  assert.equal(st.exportName, 'disk0');
  assert.equal(st.exportSize, 1 * MiB);
  assert.deepEqual(st.optionErrors, [{ option: 'NBD_OPT_GO', reply: 'NBD_REP_ERR_UNKNOWN', message: 'no such export' }]);
  assert.deepEqual(st.options, ['NBD_OPT_GO', 'NBD_OPT_GO']);
  assert.deepEqual(st.replies, { simple: 4, structuredChunks: 0, unmatched: 0 });
  assert.deepEqual(
    st.errors.recent.map((e) => [e.type, e.offset, e.length, e.errno]),
    [
      ['WRITE', 4 * KiB, 512, 'EPERM'],
      ['READ', 0, 4 * KiB, 'EIO'],
    ],
  );
  assert.equal(st.coverage!.ratio, 1); // the 1 MiB write succeeded, the 512-byte one was refused
  assert.deepEqual(eventNames(o), ['optionError', 'negotiated', 'error', 'error', 'disconnect']);
});

test('an EPERM to a WRITE is recorded with the request\'s type, offset and length', () => {
  const o = observe(
    [
      ...plainHandshake(16 * MiB, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY),
      c(request(NBD_CMD_WRITE, 0xfeedfacecafebeefn, 12 * MiB, 64 * KiB, { payload: Buffer.alloc(64 * KiB) })),
      c(request(NBD_CMD_WRITE_ZEROES, 0xfeedfacecafebef0n, 0, 1 * MiB), request(NBD_CMD_TRIM, 3, 2 * MiB, 4 * KiB)),
      s(simpleReply(0xfeedfacecafebef0n, NBD_EPERM), simpleReply(0xfeedfacecafebeefn, NBD_EPERM), simpleReply(3, NBD_EPERM)),
    ],
    feed,
  );
  assert.deepEqual(o.stats.errors, {
    total: 3,
    recent: [
      { type: 'WRITE_ZEROES', offset: 0, length: 1 * MiB, errno: 'EPERM', code: NBD_EPERM, message: null, errorOffset: null },
      { type: 'WRITE', offset: 12 * MiB, length: 64 * KiB, errno: 'EPERM', code: NBD_EPERM, message: null, errorOffset: null },
      { type: 'TRIM', offset: 2 * MiB, length: 4 * KiB, errno: 'EPERM', code: NBD_EPERM, message: null, errorOffset: null },
    ],
  });
  assert.equal(o.stats.coverage!.bytes, 0);
  assert.deepEqual(o.events[1], ['error', o.stats.errors.recent[0]]);
});

test('only the last `recentErrors` errors are kept, all are counted', () => {
  const script = plainHandshake();
  for (let i = 0; i < 50; i++) script.push(c(request(NBD_CMD_TRIM, i, i * 4096, 4096)), s(simpleReply(i, 5)));
  const o = observe(script, feed, { recentErrors: 4 });
  assert.equal(o.stats.errors.total, 50);
  assert.deepEqual(
    o.stats.errors.recent.map((e) => e.offset),
    [46, 47, 48, 49].map((i) => i * 4096),
  );
  assert.equal(o.events.filter((e) => e[0] === 'error').length, 50);
});

test('NBD_OPT_EXPORT_NAME: size and flags, with and without the 124 zero bytes', () => {
  for (const noZeroes of [false, true]) {
    const o = observe(exportNameSession(noZeroes), feed);
    assert.equal(o.stats.inspection, 'active', String(o.stats.stopReason));
    assert.equal(o.stats.exportName, 'legacy');
    assert.equal(o.stats.exportSize, 2 * MiB);
    assert.equal(o.stats.transmissionFlags, NBD_FLAG_HAS_FLAGS);
    assert.equal(o.stats.requests.WRITE.count, 1);
    assert.equal(o.stats.coverage!.ratio, 1);
    assert.equal(o.stats.bytesToSource, 18 + 10 + (noZeroes ? 0 : 124) + 16);
  }
});

test('NBD_OPT_LIST, NBD_OPT_INFO, NBD_OPT_LIST_META_CONTEXT and a failed SET are followed; only GO decides the export', () => {
  const o = observe(
    [
      s(greeting()),
      c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_LIST)),
      s(optionReply(NBD_OPT_LIST, NBD_REP_SERVER, Buffer.from('\0\0\0\x01a')), optionReply(NBD_OPT_LIST, NBD_REP_SERVER, Buffer.from('\0\0\0\x01b')), ack(NBD_OPT_LIST)),
      c(option(NBD_OPT_INFO, goData('a'))),
      s(infoExport(NBD_OPT_INFO, 5 * MiB, 1), ack(NBD_OPT_INFO)),
      c(option(NBD_OPT_STRUCTURED_REPLY)),
      s(ack(NBD_OPT_STRUCTURED_REPLY)),
      c(option(NBD_OPT_LIST_META_CONTEXT, metaData('b', []))),
      s(metaContext(NBD_OPT_LIST_META_CONTEXT, 0, 'base:allocation'), ack(NBD_OPT_LIST_META_CONTEXT)),
      c(option(NBD_OPT_SET_META_CONTEXT, metaData('b', ['base:allocation']))),
      s(metaContext(NBD_OPT_SET_META_CONTEXT, 7, 'base:allocation'), ack(NBD_OPT_SET_META_CONTEXT)),
      c(option(NBD_OPT_SET_META_CONTEXT, metaData('b', ['qemu:nope']))),
      s(optionError(NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_UNSUP)),
      c(option(NBD_OPT_GO, goData('b'))),
      s(infoExport(NBD_OPT_GO, 7 * MiB, 3), ack(NBD_OPT_GO)),
    ],
    feed,
  );
  const st = o.stats;
  assert.equal(st.inspection, 'active', String(st.stopReason));
  assert.equal(st.exportName, 'b');
  assert.equal(st.exportSize, 7 * MiB);
  assert.equal(st.transmissionFlags, 3);
  assert.deepEqual(st.metaContexts, []); // the failed SET replaced the selection
  assert.deepEqual(st.optionErrors, [{ option: 'NBD_OPT_SET_META_CONTEXT', reply: 'NBD_REP_ERR_UNSUP', message: null }]);
  assert.equal(st.options.length, 7);
});

test('NBD_OPT_STARTTLS refused: inspection goes on; accepted: it stops, once, with the reason', () => {
  const refused = observe(
    [
      s(greeting()),
      c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_STARTTLS)),
      s(optionError(NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY, 'TLS not configured')),
      ...plainHandshake().slice(1).map((seg) => (seg.dir === 'toDest' ? c(seg.data.subarray(4)) : seg)),
    ],
    feed,
  );
  assert.equal(refused.stats.inspection, 'active', String(refused.stats.stopReason));
  assert.equal(refused.stats.phase, 'transmission');
  assert.deepEqual(refused.stats.optionErrors, [{ option: 'NBD_OPT_STARTTLS', reply: 'NBD_REP_ERR_POLICY', message: 'TLS not configured' }]);

  const accepted = observe(
    [
      s(greeting()),
      c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_STARTTLS)),
      s(ack(NBD_OPT_STARTTLS)),
      c(Buffer.from('160301020001', 'hex'), Buffer.alloc(500, 7)), // a TLS ClientHello, then anything
      s(Buffer.from('160303007a02', 'hex'), Buffer.alloc(500, 9)),
    ],
    feed,
  );
  assert.equal(accepted.stats.inspection, 'stopped');
  assert.match(accepted.stats.stopReason!, /NBD_OPT_STARTTLS/);
  assert.deepEqual(accepted.events, [['stopped', accepted.stats.stopReason, false]]);
  assert.equal(accepted.stats.bytesToDest, 4 + 16 + 6 + 500);
  assert.equal(accepted.stats.bytesToSource, 18 + 20 + 6 + 500);
});

test('extended headers: refused by the server, inspection goes on; acknowledged, it stops', () => {
  const refused = observe(
    [
      s(greeting()),
      c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_EXTENDED_HEADERS)),
      s(optionError(NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_UNSUP, 'Unsupported option 11 (<unknown>)')),
      c(option(NBD_OPT_GO, goData('d'))),
      s(infoExport(NBD_OPT_GO, MiB, 1), ack(NBD_OPT_GO)),
      c(request(NBD_CMD_READ, 1, 0, 512)),
      s(simpleReply(1, 0, Buffer.alloc(512))),
    ],
    feed,
  );
  assert.equal(refused.stats.inspection, 'active', String(refused.stats.stopReason));
  assert.equal(refused.stats.requests.READ.count, 1);

  const acked = observe(
    [
      s(greeting()),
      c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_EXTENDED_HEADERS)),
      s(ack(NBD_OPT_EXTENDED_HEADERS)),
      c(option(NBD_OPT_GO, goData('d'))),
    ],
    feed,
  );
  assert.equal(acked.stats.inspection, 'stopped');
  assert.match(acked.stats.stopReason!, /extended headers/);
  assert.equal(acked.events.length, 1);

  // An extended request header mid-transmission (the negotiation was not seen) also stops it.
  const header = Buffer.alloc(32);
  header.writeUInt32BE(NBD_EXTENDED_REQUEST_MAGIC, 0);
  const midway = observe([...plainHandshake(), c(header)], feed);
  assert.equal(midway.stats.inspection, 'stopped');
  assert.match(midway.stats.stopReason!, /extended request header/);
});

test('oldstyle negotiation is reported as not followed', () => {
  const o = observe([s(oldstyleGreeting(MiB, 1)), c(request(NBD_CMD_READ, 1, 0, 512))], feed);
  assert.equal(o.stats.inspection, 'stopped');
  assert.equal(o.stats.stopReason, 'oldstyle negotiation is not followed');
});

test('NBD_OPT_ABORT closes the handshake with a disconnect event', () => {
  const o = observe([s(greeting()), c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_ABORT)), s(ack(NBD_OPT_ABORT))], feed);
  assert.equal(o.stats.inspection, 'active');
  assert.equal(o.stats.phase, 'closed');
  assert.deepEqual(o.events, [['disconnect', 'NBD_OPT_ABORT']]);
});

test('not NBD: the client speaks first (QEMU migration stream, random bytes), or the server\'s greeting is not NBDMAGIC', () => {
  const qevm = Buffer.concat([Buffer.from('QEVM', 'latin1'), Buffer.from([0, 0, 0, 3]), Buffer.alloc(1000, 1)]);
  const rand = mulberry32(7);
  const random = Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rand() * 256)));
  for (const script of [
    [c(qevm), s(Buffer.alloc(8))],
    [c(random)],
    [c(Buffer.from([0, 0, 0, 3]))], // plausible client flags, but before any greeting
    [s(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')), c(Buffer.from('SSH-2.0-x\r\n'))],
    [s(Buffer.from('NBDMAGIX'))],
    [s(Buffer.from('NBD')), c(Buffer.from([0, 0, 0, 3]))], // the greeting had not finished
  ] as Script[]) {
    for (const feeder of [feed, feedBytes]) {
      const o = observe(script, feeder);
      assert.equal(o.stats.inspection, 'not-nbd', JSON.stringify(o.stats));
      assert.equal(o.events.length, 1);
      assert.equal(o.events[0]![0], 'stopped');
      assert.equal(o.events[0]![2], true);
      assert.equal(o.stats.bytesToDest + o.stats.bytesToSource, scriptLength(script));
    }
  }
  const o = observe([c(qevm)], feed);
  assert.match(o.stats.stopReason!, /client spoke first/);
});

test('malformed streams stop inspection with a reason and never throw; later bytes are still counted', () => {
  const cases: Array<[string, Script, RegExp]> = [
    ['bad request magic mid-transmission', [...plainHandshake(), c(request(NBD_CMD_READ, 1, 0, 512)), c(Buffer.alloc(28, 0xee))], /expected a request.*0xeeeeeeee/],
    ['bad reply magic', [...plainHandshake(), c(request(NBD_CMD_READ, 1, 0, 512)), s(Buffer.alloc(16, 0x42))], /expected a reply/],
    [
      'a truncated request header, then the next request',
      [...plainHandshake(), c(request(NBD_CMD_READ, 1, 0, 512).subarray(0, 20), request(NBD_CMD_READ, 2, 0, 512))],
      /expected a request/,
    ],
    ['bad option magic', [s(greeting()), c(clientFlags(CLIENT_FLAGS), Buffer.alloc(16, 1))], /expected an option/],
    ['bad option reply magic', [s(greeting()), c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_GO, goData('x'))), s(Buffer.alloc(20, 3))], /expected an option reply/],
    ['unknown client flags', [s(greeting()), c(clientFlags(0x80))], /unknown client flags/],
    ['garbage after NBDMAGIC', [s(Buffer.concat([greeting().subarray(0, 8), Buffer.alloc(10, 9)]))], /unknown magic/],
    [
      'simple reply for a cookie not in flight (no structured replies)',
      [...plainHandshake(), s(simpleReply(99))],
      /not in flight/,
    ],
    ['bytes after NBD_CMD_DISC', [...plainHandshake(), c(request(NBD_CMD_DISC, 1, 0, 0), Buffer.alloc(3))], /after NBD_CMD_DISC/],
    [
      'an option without fixed newstyle',
      [s(greeting(0)), c(clientFlags(0), option(NBD_OPT_GO, goData('x')))],
      /without fixed-newstyle/,
    ],
  ];
  for (const [name, script, reason] of cases) {
    for (const feeder of [feed, feedBytes]) {
      const { inspector, events } = observer();
      assert.doesNotThrow(() => feeder(inspector, script), name);
      assert.doesNotThrow(() => inspector.toDest(Buffer.alloc(100, 0x25)));
      assert.doesNotThrow(() => inspector.toSource(Buffer.alloc(100, 0x67)));
      const st = inspector.snapshot();
      assert.equal(st.inspection, 'stopped', name);
      assert.match(st.stopReason!, reason, name);
      assert.deepEqual(events.filter((e) => e[0] === 'stopped'), [['stopped', st.stopReason, false]], name);
      assert.equal(st.bytesToDest + st.bytesToSource, scriptLength(script) + 200, name);
    }
  }
});

test('more requests in flight than maxInFlight: it gives up rather than grow', () => {
  const script = plainHandshake();
  for (let i = 0; i < 5; i++) script.push(c(request(NBD_CMD_FLUSH, i, 0, 0)));
  const o = observe(script, feed, { maxInFlight: 4 });
  assert.equal(o.stats.inspection, 'stopped');
  assert.match(o.stats.stopReason!, /more than 4 requests in flight/);
  // With the default limit, 1024 requests in flight are fine and all are matched.
  const many = plainHandshake();
  for (let i = 0; i < 1024; i++) many.push(c(request(NBD_CMD_FLUSH, BigInt(i) << 40n, 0, 0)));
  for (let i = 1023; i >= 0; i--) many.push(s(simpleReply(BigInt(i) << 40n)));
  const ok = observe(many, feed);
  assert.equal(ok.stats.inspection, 'active', String(ok.stats.stopReason));
  assert.equal(ok.stats.inFlight, 0);
  assert.equal(ok.stats.replies.simple, 1024);
});

test('structured chunks for unknown cookies are counted and skipped', () => {
  const o = observe(
    [...qemuLikeHandshake(), s(offsetData(5, 0, Buffer.alloc(100)), errorChunk(6, 5, 'x'), simpleReply(7)), c(request(NBD_CMD_READ, 1, 0, 10))],
    feed,
  );
  assert.equal(o.stats.inspection, 'active', String(o.stats.stopReason));
  assert.deepEqual(o.stats.replies, { simple: 1, structuredChunks: 2, unmatched: 3 });
  assert.deepEqual(o.stats.errors.recent, [{ type: null, offset: null, length: null, errno: 'EIO', code: 5, message: 'x', errorOffset: null }]);
  assert.equal(o.stats.inFlight, 1);
});

test('a listener that throws does not reach the caller', () => {
  const inspector = new NbdInspector({
    now: frozen,
    listener: {
      negotiated() {
        throw new Error('boom');
      },
      stopped() {
        throw new Error('boom');
      },
    },
  });
  assert.doesNotThrow(() => feed(inspector, [...plainHandshake(), c(Buffer.alloc(28, 1))]));
  assert.equal(inspector.snapshot().inspection, 'stopped');
});

test('write throughput over a sliding window, with an injected clock', () => {
  let now = 1000;
  const { inspector } = observer({ now: () => now, rateWindowMs: 1000 });
  feed(inspector, plainHandshake(64 * MiB, NBD_FLAG_HAS_FLAGS | (1 << 6)));
  now += 100;
  inspector.toDest(request(NBD_CMD_WRITE, 1, 0, 1 * MiB, { payload: Buffer.alloc(MiB) }));
  inspector.toDest(request(NBD_CMD_WRITE_ZEROES, 2, MiB, 3 * MiB));
  inspector.toDest(request(NBD_CMD_READ, 3, 0, 8 * MiB)); // reads do not count
  // 4 MiB in the 100 ms since transmission began.
  assert.equal(inspector.snapshot().writeBytesPerSecond, 40 * MiB);
  now += 400;
  assert.equal(inspector.snapshot().writeBytesPerSecond, 8 * MiB); // 4 MiB over 500 ms
  now += 400;
  assert.equal(inspector.snapshot().writeBytesPerSecond, (4 * MiB) / 0.9); // still inside the 1 s window
  now += 300; // 1.1 s after the writes: they have left the window
  assert.equal(inspector.snapshot().writeBytesPerSecond, 0);
});

test('chunks are read, never modified nor kept: overwriting each chunk after the call changes nothing', () => {
  for (const script of [structuredSession(), simpleSession()]) {
    const copy = script.map((seg) => ({ dir: seg.dir, data: Buffer.from(seg.data) }));
    const whole = observe(script, feed);
    assert.deepEqual(script, copy);
    const scribbled = observe(runs(script), (inspector, sc) => {
      const rand = mulberry32(3);
      for (const { dir, data } of sc) {
        for (let at = 0; at < data.length; ) {
          const n = 1 + Math.floor(rand() * 100);
          const piece = Buffer.from(data.subarray(at, at + n));
          inspector[dir](piece);
          piece.fill(0xee); // a retained view would now read garbage
          at += n;
        }
      }
    });
    assert.deepEqual(scribbled, whole);
  }
});

// ---------------------------------------------------------------- cutting the bytes anywhere

const scripts: Array<[string, () => Script]> = [
  ['QEMU-like handshake', () => qemuLikeHandshake()],
  ['structured session', structuredSession],
  ['simple session', simpleSession],
  ['export name with zeroes', () => exportNameSession(false)],
  ['export name without zeroes', () => exportNameSession(true)],
];

test('every single cut point gives the same stats and events (small conversations)', () => {
  const smallScripts: Array<[string, Script]> = [
    ['QEMU-like handshake', qemuLikeHandshake()],
    [
      'small transmission with every reply kind',
      [
        ...qemuLikeHandshake(),
        c(request(NBD_CMD_WRITE, 1, 0, 40, { payload: Buffer.alloc(40, 0x25) }), request(NBD_CMD_READ, 2, 0, 64), request(NBD_CMD_TRIM, 3, 512, 512)),
        s(offsetData(2, 0, Buffer.from(simpleReply(1)))),
        s(errorChunk(3, NBD_EPERM, 'read-only')),
        s(simpleReply(1), offsetData(2, 16, Buffer.alloc(48), true)),
        c(request(NBD_CMD_DISC, 4, 0, 0)),
      ],
    ],
    [
      'simple replies with read data',
      [
        ...plainHandshake(),
        c(request(NBD_CMD_READ, 1, 0, 40), request(NBD_CMD_WRITE, 2, 0, 16, { payload: Buffer.from(simpleReply(9)) })),
        s(simpleReply(1, 0, Buffer.concat([simpleReply(2), Buffer.alloc(24)])), simpleReply(2, NBD_EPERM)),
      ],
    ],
    ['STARTTLS accepted', [s(greeting()), c(clientFlags(CLIENT_FLAGS), option(NBD_OPT_STARTTLS)), s(ack(NBD_OPT_STARTTLS)), c(Buffer.alloc(50, 0x16))]],
    ['export name', exportNameSession(false).map((seg) => (seg.data.length > 1000 ? { ...seg, data: seg.data.subarray(0, 100) } : seg))],
  ];
  for (const [name, script] of smallScripts) {
    const whole = observe(script, feed);
    const bytes = observe(script, feedBytes);
    assert.deepEqual(bytes, whole, `${name}: byte by byte`);
    const total = scriptLength(script);
    const merged = runs(script);
    for (let cut = 1; cut < total; cut++) {
      const o = observe(merged, (i, sc) => feedCut(i, sc, [cut]));
      assert.deepEqual(o, whole, `${name}: cut at ${cut}`);
    }
  }
});

test('random multi-cuts (seeded) give the same stats and events (larger conversations)', () => {
  const rand = mulberry32(0x5eed);
  for (const [name, make] of scripts) {
    const original = make();
    const script = runs(original);
    const whole = observe(script, feed);
    assert.equal(whole.stats.inspection, 'active', `${name}: ${whole.stats.stopReason}`);
    assert.deepEqual(observe(script, feedBytes), whole, `${name}: byte by byte`);
    const total = scriptLength(script);
    for (let round = 0; round < 150; round++) {
      // Coarse cuts everywhere, and fine ones around the messages' boundaries, where headers are.
      const cuts = randomCuts(total, rand, [300, 4096, 70_000][round % 3]!);
      let at = 0;
      for (const seg of original) {
        for (let k = 0; k < 6; k++) cuts.push(at + Math.floor((rand() - 0.5) * 80));
        at += seg.data.length;
      }
      const sorted = [...new Set(cuts.filter((x) => x > 0 && x < total))].sort((a, b) => a - b);
      assert.deepEqual(observe(script, (i, sc) => feedCut(i, sc, sorted)), whole, `${name}: round ${round}`);
    }
  }
});

// ---------------------------------------------------------------- fuzz

test('fuzz: random and mutated streams never throw, never hang, and keep memory bounded', () => {
  const rand = mulberry32(0xf022);
  const bases = [...scripts.map(([, make]) => runs(make())), runs(plainHandshake())].map((sc) =>
    // Keep the fuzz quick: cap the big payload runs.
    sc.map((seg) => ({ ...seg, data: seg.data.length > 8192 ? seg.data.subarray(0, 8192) : seg.data })),
  );
  let stopped = 0;
  for (let round = 0; round < 4000; round++) {
    let script: Script;
    const kind = round % 4;
    if (kind === 0) {
      // Random bytes in both directions, starting with a valid greeting half the time.
      script = [];
      if (rand() < 0.5) script.push(s(greeting()), c(clientFlags(CLIENT_FLAGS)));
      const n = 1 + Math.floor(rand() * 8);
      for (let i = 0; i < n; i++) {
        const data = Buffer.alloc(1 + Math.floor(rand() * 200));
        for (let j = 0; j < data.length; j++) data[j] = Math.floor(rand() * 256);
        script.push(rand() < 0.5 ? c(data) : s(data));
      }
    } else {
      // A valid conversation with some bytes flipped, dropped, or duplicated.
      const base = bases[Math.floor(rand() * bases.length)]!;
      script = base.map((seg) => ({ dir: seg.dir, data: Buffer.from(seg.data) }));
      const mutations = 1 + Math.floor(rand() * 4);
      for (let m = 0; m < mutations; m++) {
        const seg = script[Math.floor(rand() * script.length)]!;
        if (seg.data.length === 0) continue;
        const at = Math.floor(rand() * seg.data.length);
        const what = rand();
        if (what < 0.5) seg.data[at] = Math.floor(rand() * 256);
        else if (what < 0.7) seg.data = Buffer.concat([seg.data.subarray(0, at), seg.data.subarray(at + 1 + Math.floor(rand() * 8))]);
        else if (what < 0.85) seg.data = Buffer.concat([seg.data.subarray(0, at), seg.data.subarray(at, at + 12), seg.data.subarray(at)]);
        else {
          // A huge length field: skipping it must be arithmetic, not memory.
          if (at + 4 <= seg.data.length) seg.data.writeUInt32BE(0xffffffff - Math.floor(rand() * 16), at);
        }
      }
    }
    const { inspector, events } = observer();
    const cuts = randomCuts(scriptLength(script), rand, 64);
    assert.doesNotThrow(() => feedCut(inspector, script, cuts));
    const st = inspector.snapshot();
    if (st.inspection !== 'active') stopped++;
    assert.ok(events.filter((e) => e[0] === 'stopped').length <= 1);
    assert.ok(st.errors.recent.length <= 32);
    assert.ok(st.options.length <= 32 && st.optionErrors.length <= 16 && st.metaContexts.length <= 64);
    assert.ok(st.inFlight <= 1024);
    assert.equal(st.bytesToDest + st.bytesToSource, scriptLength(script));
    // Memory bounded: what it holds is at most a unit being assembled, however long the lengths.
    assert.ok(inspector.bufferedBytes <= 2 * (4096 + 32), `${inspector.bufferedBytes} bytes buffered`);
  }
  assert.ok(stopped > 1000, `only ${stopped} of 4000 fuzz cases stopped`);
});

/**
 * Pushes `total` bytes through `send` in odd-sized chunks cut from one reused buffer (4 GiB is
 * generated, not allocated), asserting after every chunk that the inspector holds no more than
 * it did before the first.
 */
function streamThrough(inspector: NbdInspector, send: (chunk: Buffer) => void, total: number, what: string): void {
  const chunk = Buffer.alloc(MiB + 3, 0x5c);
  const held = inspector.bufferedBytes;
  for (let sent = 0, n = 0; sent < total; n++) {
    const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
    piece.writeUInt32BE(n, 0); // each chunk differs from the last
    send(piece);
    sent += piece.length;
    if (inspector.bufferedBytes !== held) assert.fail(`${what}: ${inspector.bufferedBytes} bytes buffered after ${sent} of ${total}, ${held} before`);
  }
}

const FOUR_GIB = 0xffffffff;

test('hostile lengths are skipped, not buffered: a 4 GiB option, a 4 GiB write and a 4 GiB read reply, streamed whole', () => {
  const inspector = new NbdInspector();
  feed(inspector, [s(greeting()), c(clientFlags(CLIENT_FLAGS))]);
  const header = option(NBD_OPT_GO);
  header.writeUInt32BE(FOUR_GIB, 12);
  inspector.toDest(header);
  streamThrough(inspector, (b) => inspector.toDest(b), FOUR_GIB, 'option data');
  // The skip ended exactly at the option's end: the next option header is read as one.
  inspector.toDest(option(NBD_OPT_LIST));
  assert.deepEqual(inspector.snapshot().options, ['NBD_OPT_GO', 'NBD_OPT_LIST']);
  assert.equal(inspector.snapshot().inspection, 'active');

  const transmitting = new NbdInspector();
  feed(transmitting, plainHandshake());
  transmitting.toDest(request(NBD_CMD_WRITE, 1, 0, FOUR_GIB));
  streamThrough(transmitting, (b) => transmitting.toDest(b), FOUR_GIB, 'write payload');
  transmitting.toDest(request(NBD_CMD_READ, 2, 0, FOUR_GIB));
  transmitting.toSource(simpleReply(1, 0));
  transmitting.toSource(simpleReply(2, 0));
  streamThrough(transmitting, (b) => transmitting.toSource(b), FOUR_GIB, 'read reply payload');
  transmitting.toDest(request(NBD_CMD_FLUSH, 3, 0, 0));
  transmitting.toSource(simpleReply(3, 0));
  const st = transmitting.snapshot();
  assert.equal(st.inspection, 'active', String(st.stopReason));
  assert.deepEqual([st.requests.WRITE, st.requests.READ, st.requests.FLUSH], [
    { count: 1, bytes: FOUR_GIB },
    { count: 1, bytes: FOUR_GIB },
    { count: 1, bytes: 0 },
  ]);
  // Each reply matched its request: the payloads were skipped to the byte.
  assert.deepEqual([st.replies.simple, st.replies.unmatched, st.inFlight], [3, 0, 0]);
});
