// The inspector against real QEMU 7.2 traffic: qemu-nbd behind a recording relay, driven by
// qemu-io, qemu-img and a raw client; the recordings are then fed to inspectors, whole and cut.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_OPT_EXTENDED_HEADERS,
  NBD_OPT_GO,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REPLY_FLAG_DONE,
  NBD_REP_ACK,
  NBD_REP_FLAG_ERROR,
  NBD_SIMPLE_REPLY_MAGIC,
} from '../../src/nbd/constants.js';
import { run } from '../harness/child.js';
import { mulberry32 } from '../harness/prng.js';
import { makeTempDir, removeDir } from '../harness/tmpdir.js';
import { observe } from './support/nbd-observe.js';
import { RawNbdClient, RecordingRelay, startQemuNbd } from './support/nbd-qemu.js';
import { feed, feedBytes, feedCut, goData, metaData, option, randomCuts, request, runs, scriptLength, type Script } from './support/nbd-wire.js';

const KiB = 1024;
const MiB = 1024 * KiB;
// `npm test` installs qemu-nbd and qemu-io (scripts/ensure-qemu.sh): a missing tool fails, never skips.
for (const tool of ['qemu-nbd', 'qemu-io', 'qemu-img']) {
  if (spawnSync(tool, ['--version']).status !== 0) throw new Error(`${tool} is not runnable: run scripts/setup.sh (npm test does)`);
}

/** A qemu-nbd export of a fresh image, behind a recording relay; everything stopped by `cleanup`. */
async function withExport<T>(
  format: 'raw' | 'qcow2',
  prepare: (image: string) => Promise<void>,
  nbdArgs: readonly string[],
  body: (relay: RecordingRelay) => Promise<T>,
): Promise<T> {
  const dir = await makeTempDir('nbdi-');
  let nbd: Awaited<ReturnType<typeof startQemuNbd>> | undefined;
  let relay: RecordingRelay | undefined;
  try {
    const image = join(dir, `disk.${format}`);
    await run('qemu-img', ['create', '-q', '-f', format, image, '64M']);
    await prepare(image);
    nbd = await startQemuNbd(dir, image, 'exp', ['-f', format, ...nbdArgs]);
    relay = await RecordingRelay.start(join(dir, 'relay.sock'), nbd.socket);
    return await body(relay);
  } finally {
    await relay?.close();
    await nbd?.child.stop(); // by PID, escalating to SIGKILL
    await removeDir(dir);
  }
}

/** The same stats and events whatever the chunking: byte by byte, cuts near every recorded boundary, random cuts. */
function assertCutInvariant(name: string, recorded: Script, seed: number): void {
  const script = runs(recorded);
  const whole = observe(script, feed);
  assert.deepEqual(observe(recorded, feed), whole, `${name}: as recorded`);
  assert.deepEqual(observe(script, feedBytes), whole, `${name}: byte by byte`);
  const total = scriptLength(script);
  let at = 0;
  for (const seg of recorded) {
    for (let cut = Math.max(1, at - 40); cut < Math.min(total, at + 40); cut++) {
      assert.deepEqual(observe(script, (i, sc) => feedCut(i, sc, [cut])), whole, `${name}: cut at ${cut}`);
    }
    at += seg.data.length;
  }
  const rand = mulberry32(seed);
  for (let round = 0; round < 100; round++) {
    const cuts = randomCuts(total, rand, [64, 1500, 65536][round % 3]!);
    assert.deepEqual(observe(script, (i, sc) => feedCut(i, sc, cuts)), whole, `${name}: random round ${round}`);
  }
}

test('qemu-io through a recording relay: export, exact size, counts, bytes, out-of-order replies, coverage', { timeout: 60_000 }, async () => {
  const commands = ['write -P 0xab 0 1M', 'write -z 1M 1M', 'discard 2M 1M'];
  for (let i = 0; i < 8; i++) commands.push(`aio_write -P 1 ${4096 + i * 256}k 256k`); // 8 in flight
  commands.push('aio_flush', 'read -P 0xab 0 64k', 'read 3M 64k');
  for (let i = 0; i < 4; i++) commands.push(`aio_read -P 1 ${4096 + i * 256}k 256k`);
  commands.push('aio_flush', 'flush');

  const recording = await withExport('raw', async () => {}, [], async (relay) => {
    const uri = `nbd+unix:///exp?socket=${relay.path}`;
    await run('qemu-io', ['-f', 'raw', uri, ...commands.flatMap((cmd) => ['-c', cmd])]);
    assert.equal(relay.connections, 1);
    return relay.recording(0);
  });

  const o = observe(recording, feed);
  const st = o.stats;
  assert.equal(st.inspection, 'active', String(st.stopReason));
  assert.equal(st.phase, 'closed');
  // What QEMU 7.2's client negotiates: structured replies, base:allocation, then NBD_OPT_GO
  // (no extended headers: QEMU has them from 8.1).
  assert.deepEqual(st.options, ['NBD_OPT_STRUCTURED_REPLY', 'NBD_OPT_SET_META_CONTEXT', 'NBD_OPT_GO']);
  assert.equal(st.clientFlags, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  assert.equal(st.exportName, 'exp');
  assert.equal(st.exportSize, 64 * MiB);
  const expected = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
  assert.equal(st.transmissionFlags! & expected, expected);
  assert.equal(st.transmissionFlags! & NBD_FLAG_READ_ONLY, 0);
  assert.equal(st.structuredReplies, true);
  assert.deepEqual(st.metaContexts, [{ id: 0, name: 'base:allocation' }]);
  assert.deepEqual(st.blockSize, { minimum: 1, preferred: 4096, maximum: 32 * MiB });
  assert.deepEqual(
    {
      READ: st.requests.READ,
      WRITE: st.requests.WRITE,
      WRITE_ZEROES: st.requests.WRITE_ZEROES,
      TRIM: st.requests.TRIM,
      DISC: st.requests.DISC,
    },
    {
      READ: { count: 6, bytes: 128 * KiB + 1 * MiB },
      WRITE: { count: 9, bytes: 3 * MiB },
      WRITE_ZEROES: { count: 1, bytes: 1 * MiB },
      TRIM: { count: 1, bytes: 1 * MiB },
      DISC: { count: 1, bytes: 0 },
    },
  );
  // 'flush', and the one QEMU sends when it closes the image (aio_flush only waits).
  assert.equal(st.requests.FLUSH.count, 2);
  for (const other of ['CACHE', 'BLOCK_STATUS', 'OTHER'] as const) assert.equal(st.requests[other].count, 0);
  assert.equal(st.inFlight, 0);
  assert.equal(st.replies.unmatched, 0);
  assert.equal(st.errors.total, 0);
  // 0..3 MiB (write, zeroes, discard) and 4..6 MiB (the eight aio writes).
  assert.deepEqual(st.coverage, { bytes: 5 * MiB, ratio: 5 / 64, granularity: 4096 });
  assert.deepEqual(
    o.events.map((e) => e[0]),
    ['negotiated', 'disconnect'],
  );
  assert.equal(st.bytesToDest + st.bytesToSource, scriptLength(recording));
  assertCutInvariant('qemu-io', recording, 42);
});

test('qemu-img map with a dirty bitmap: the qemu:dirty-bitmap context and its id, BLOCK_STATUS replies matched', { timeout: 60_000 }, async () => {
  const recording = await withExport(
    'qcow2',
    async (image) => {
      await run('qemu-img', ['bitmap', '--add', image, 'b0']);
      await run('qemu-io', ['-f', 'qcow2', image, '-c', 'write 1M 64k']);
    },
    ['-B', 'b0'],
    async (relay) => {
      const opts = `driver=nbd,server.type=unix,server.path=${relay.path},export=exp,x-dirty-bitmap=qemu:dirty-bitmap:b0`;
      await run('qemu-img', ['map', '--output=json', '--image-opts', opts]);
      return relay.recording(0);
    },
  );
  const st = observe(recording, feed).stats;
  assert.equal(st.inspection, 'active', String(st.stopReason));
  assert.equal(st.metaContexts.length, 1);
  assert.equal(st.metaContexts[0]!.name, 'qemu:dirty-bitmap:b0');
  assert.equal(typeof st.metaContexts[0]!.id, 'number');
  assert.ok(st.requests.BLOCK_STATUS.count >= 1);
  assert.equal(st.replies.structuredChunks, st.requests.BLOCK_STATUS.count);
  assert.equal(st.inFlight, 0);
  assertCutInvariant('qemu-img map', recording, 43);
});

test('read-only export (qemu-nbd -r): qemu-io never sends a write; a raw client\'s writes are refused and recorded', { timeout: 60_000 }, async () => {
  await withExport('raw', async () => {}, ['-r'], async (relay) => {
    const uri = `nbd+unix:///exp?socket=${relay.path}`;
    // qemu-io opening read-write fails; read-only, it refuses the write itself.
    const rw = await run('qemu-io', ['-f', 'raw', uri, '-c', 'write 0 4k'], { okCodes: [1] });
    assert.match(rw.stderr, /Permission denied|read-only/);
    const ro = await run('qemu-io', ['-r', '-f', 'raw', uri, '-c', 'write 0 4k'], { okCodes: [1] });
    assert.match(ro.stderr, /read-only/);
    for (let i = 0; i < relay.connections; i++) {
      const st = observe(await relay.recording(i), feed).stats;
      assert.equal(st.inspection, 'active', String(st.stopReason));
      assert.ok(st.transmissionFlags === null || (st.transmissionFlags & NBD_FLAG_READ_ONLY) !== 0);
      assert.equal(st.requests.WRITE.count + st.requests.WRITE_ZEROES.count + st.requests.TRIM.count, 0);
    }
    const before = relay.connections;

    // A raw client, once with structured replies and once without. It also tries extended
    // headers and STARTTLS first, which QEMU 7.2's server refuses (the inspector carries on).
    for (const structured of [true, false]) {
      const client = await RawNbdClient.connect(relay.path);
      await client.read(18);
      client.write(Buffer.from([0, 0, 0, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES]));
      const options: Array<[number, Buffer | undefined]> = [
        [NBD_OPT_EXTENDED_HEADERS, undefined],
        [NBD_OPT_STARTTLS, undefined],
      ];
      if (structured) options.push([NBD_OPT_STRUCTURED_REPLY, undefined], [NBD_OPT_LIST_META_CONTEXT, metaData('exp', ['base:'])]);
      options.push([NBD_OPT_GO, goData('exp')]);
      for (const [opt, data] of options) {
        client.write(option(opt, data));
        for (;;) {
          const reply = await client.readOptionReply();
          if (reply.type === NBD_REP_ACK || (reply.type & NBD_REP_FLAG_ERROR) !== 0) break;
        }
      }
      const requests: Array<[number, bigint, number, number]> = [
        [NBD_CMD_WRITE, 0x1122334455667788n, 4 * KiB, 4 * KiB],
        [NBD_CMD_WRITE_ZEROES, 2n, 8 * KiB, 4 * KiB],
        [NBD_CMD_TRIM, 3n, 0, 64 * KiB],
        [NBD_CMD_READ, 4n, 0, 4 * KiB],
        [NBD_CMD_FLUSH, 5n, 0, 0],
      ];
      for (const [type, cookie, offset, length] of requests) {
        client.write(request(type, cookie, offset, length, type === NBD_CMD_WRITE ? { payload: Buffer.alloc(length, 7) } : {}));
        await readReply(client, type === NBD_CMD_READ ? length : 0);
      }
      client.write(request(NBD_CMD_DISC, 6n, 0, 0));
      await client.close();
    }
    assert.equal(relay.connections, before + 2);

    for (const [index, structured] of [[before, true], [before + 1, false]] as const) {
      const recording = await relay.recording(index);
      const o = observe(recording, feed);
      const st = o.stats;
      assert.equal(st.inspection, 'active', String(st.stopReason));
      assert.equal(st.structuredReplies, structured);
      assert.equal((st.transmissionFlags ?? 0) & NBD_FLAG_READ_ONLY, NBD_FLAG_READ_ONLY);
      assert.deepEqual(st.optionErrors, [
        { option: 'NBD_OPT_EXTENDED_HEADERS', reply: 'NBD_REP_ERR_UNSUP', message: 'Unsupported option 11 (<unknown>)' },
        { option: 'NBD_OPT_STARTTLS', reply: 'NBD_REP_ERR_POLICY', message: 'TLS not configured' },
      ]);
      // QEMU 7.2 answers NBD_EINVAL ("Export is read-only"), where the spec says it SHOULD be NBD_EPERM.
      const message = structured ? 'Export is read-only' : null;
      assert.deepEqual(st.errors.recent, [
        { type: 'WRITE', offset: 4 * KiB, length: 4 * KiB, errno: 'EINVAL', code: NBD_EINVAL, message, errorOffset: null },
        { type: 'WRITE_ZEROES', offset: 8 * KiB, length: 4 * KiB, errno: 'EINVAL', code: NBD_EINVAL, message, errorOffset: null },
        { type: 'TRIM', offset: 0, length: 64 * KiB, errno: 'EINVAL', code: NBD_EINVAL, message, errorOffset: null },
      ]);
      assert.equal(st.coverage!.bytes, 0);
      assert.equal(st.inFlight, 0);
      assert.deepEqual(
        o.events.map((e) => e[0]),
        ['optionError', 'optionError', 'negotiated', 'error', 'error', 'error', 'disconnect'],
      );
      assertCutInvariant(`raw client, structured ${structured}`, recording, 44);
    }
  });
});

/** Reads one reply: a simple reply (plus `readLength` bytes if it succeeded), or structured chunks up to DONE. */
async function readReply(client: RawNbdClient, readLength: number): Promise<void> {
  for (;;) {
    const magic = (await client.read(4)).readUInt32BE(0);
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      const rest = await client.read(12);
      if (rest.readUInt32BE(0) === 0 && readLength > 0) await client.read(readLength);
      return;
    }
    const rest = await client.read(16);
    await client.read(rest.readUInt32BE(12));
    if ((rest.readUInt16BE(0) & NBD_REPLY_FLAG_DONE) !== 0) return;
  }
}
