// Real QEMU through the tunnel: blockdev-mirror from one qemu-storage-daemon into another's
// NBD export, via the source and destination proxies, verified with qemu-img compare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CLI, jobProgress, NbdClient, run, startRig, spawnChild, waitJobProgress, type JobProgress } from '../harness/index.js';
import { assertIdentical, suiteFolder } from '../harness/suite.js';

const MiB = 1024 * 1024;
const suite = suiteFolder('nbdt-mirror-');
/** The writer case's copy rate: at 8 MiB/s the mirror went from 3% to 29% during the writer's 1.5 s; half that leaves room for a loaded machine. */
const WRITER_CASE_SPEED = 4 * MiB;

const percent = (p: JobProgress): string => `${((100 * p.offset) / p.len).toFixed(0)}%`;

test('one 256 MiB disk with data and zero regions: READY, cancel, COMPLETED, identical', async (t) => {
  const rig = await startRig({ dir: await suite.caseDir('one'), pki: suite.pki, disks: [{ name: 'vm1-vda', size: 256 * MiB, seed: 1 }] });
  try {
    const readyMs = await rig.mirrorAll();
    t.diagnostic(`256 MiB READY after ${readyMs.toFixed(0)} ms (${((256 * MiB) / 1e6 / (readyMs / 1000)).toFixed(0)} MB/s)`);
    assertIdentical(await rig.verify());
    // Quitting the source QEMU disconnects its NBD client: the stream ends cleanly on both sides.
    const closed = await rig.tunnel!.dest.waitForLog((l) => l.msg === 'stream closed' && l.route === 'vm1-vda');
    assert.equal(closed.reason, undefined, `stream closed with an error: ${String(closed.reason)}`);
    assert.ok(Number(closed.bytesToDest) >= 256 * MiB * 0.3, `only ${String(closed.bytesToDest)} bytes carried`);
    // Both proxies followed the NBD conversation: the export QEMU opened, its exact size, full coverage.
    for (const proxy of [rig.tunnel!.source, rig.tunnel!.dest]) {
      const opened = await proxy.waitForLog((l) => l.msg === 'nbd export opened');
      assert.equal(opened.export, 'vm1-vda');
      assert.equal(opened.size, 256 * MiB);
      const summary = await proxy.waitForLog((l) => l.msg === 'stream closed' && l.route === 'vm1-vda');
      const requests = summary.requests as Record<string, number>;
      assert.ok(requests.WRITE > 0 && requests.WRITE_ZEROES > 0, `requests: ${JSON.stringify(requests)}`);
      assert.equal(requests.DISC, 1);
      assert.ok(requests.FLUSH >= 1, 'QEMU flushes the target when the job completes');
      // Every data byte was written; holes went as WRITE_ZEROES or inside larger WRITEs.
      const bytes = summary.requestBytes as Record<string, number>;
      const { dataBytes } = rig.disks[0].content;
      assert.ok(bytes.WRITE >= dataBytes, `WRITE bytes ${bytes.WRITE} < data ${dataBytes}`);
      assert.ok(bytes.WRITE + bytes.WRITE_ZEROES >= 256 * MiB, `WRITE + WRITE_ZEROES bytes ${bytes.WRITE + bytes.WRITE_ZEROES}`);
      assert.equal(summary.nbdErrors, 0);
      assert.equal(summary.coveredPct, 100);
    }
  } finally {
    await rig.stop();
  }
});

test('four disks mirrored at once through the one tunnel', async () => {
  const disks = [0, 1, 2, 3].map((i) => ({ name: `vm2-disk${i}`, size: 64 * MiB, seed: 10 + i }));
  const rig = await startRig({ dir: await suite.caseDir('four'), pki: suite.pki, disks });
  try {
    await rig.mirrorAll();
    const sessions = rig.tunnel!.dest.logs.filter((l) => l.msg === 'session opened');
    assert.equal(sessions.length, 1, 'all four disks share one session');
    const opened = rig.tunnel!.dest.logs.filter((l) => l.msg === 'stream opened').map((l) => l.route);
    assert.deepEqual([...new Set(opened)].sort(), disks.map((d) => d.name));
    assertIdentical(await rig.verify());
  } finally {
    await rig.stop();
  }
});

test('--metrics: /status and /metrics during a real mirror show the exports, sizes and full coverage at READY', async (t) => {
  const disks = [0, 1].map((i) => ({ name: `vm6-disk${i}`, size: (32 + 16 * i) * MiB, seed: 30 + i }));
  const metricsArgs = ['--metrics', '127.0.0.1:0'];
  const rig = await startRig({ dir: await suite.caseDir('metrics'), pki: suite.pki, disks, destArgs: metricsArgs, sourceArgs: metricsArgs });
  try {
    await rig.startMirrors();
    await rig.waitReady();
    for (const proxy of [rig.tunnel!.dest, rig.tunnel!.source]) {
      const ready = await proxy.waitForLog((l) => l.msg === 'listening' || l.msg === 'ready');
      const base = `http://${String(ready.metrics)}`;
      const status = (await (await fetch(`${base}/status`)).json()) as {
        role: string;
        sessions: Array<{ streams: Array<{ route: string; export: string; size: number; coveredRatio: number; bytesToDest: number }> }>;
      };
      assert.equal(status.sessions.length, 1);
      const streams = status.sessions[0].streams.sort((a, b) => a.route.localeCompare(b.route));
      assert.deepEqual(
        streams.map((s) => [s.route, s.export, s.size, s.coveredRatio]),
        disks.map((d) => [d.name, d.name, d.size, 1]),
        `${status.role} /status: ${JSON.stringify(status)}`,
      );
      const metrics = await (await fetch(`${base}/metrics`)).text();
      if (status.role === 'dest') t.diagnostic(JSON.stringify(status));
      if (status.role === 'dest') t.diagnostic(metrics.split('\n').filter((l) => l.startsWith('nbd_tunnel_') && l.includes('disk0')).join('\n'));
      assert.match(metrics, /^nbd_tunnel_sessions_active 1$/m);
      assert.match(metrics, /^nbd_tunnel_streams_active\{route="vm6-disk0"\} 1$/m);
      assert.match(metrics, /^nbd_tunnel_export_covered_ratio\{route="vm6-disk1",export="vm6-disk1"\} 1$/m);
      assert.match(metrics, /^nbd_tunnel_nbd_requests_total\{route="vm6-disk0",export="vm6-disk0",type="WRITE"\} [1-9]/m);
      const toDest = Number(/^nbd_tunnel_bytes_total\{route="vm6-disk0",direction="to_dest"\} (\d+)/m.exec(metrics)?.[1]);
      assert.ok(toDest > 0, 'bytes to the destination counted');
      // The operator's view: `nbd-tunnel status URL --once` prints a row per disk.
      const table = await run(process.execPath, [CLI, 'status', base, '--once']);
      for (const d of disks) {
        const row = table.stdout.split('\n').find((l) => l.includes(` ${d.name} `));
        assert.ok(row, `no row for ${d.name} in:\n${table.stdout}`);
        assert.match(row, new RegExp(`${d.name}\\s+${d.name}\\s+${d.size / MiB}\\.0 MiB\\s+100\\.0%`));
      }
    }
    await rig.completeMirrors();
    assertIdentical(await rig.verify());
  } finally {
    await rig.stop();
  }
});

test('--connections 2 / --workers 2: four disks spread over two tunnel connections and processes', async () => {
  const disks = [0, 1, 2, 3].map((i) => ({ name: `vm5-disk${i}`, size: 32 * MiB, seed: 20 + i }));
  const rig = await startRig({ dir: await suite.caseDir('spread'), pki: suite.pki, disks, destArgs: ['--workers', '2'], sourceArgs: ['--connections', '2'] });
  try {
    await rig.mirrorAll();
    const { dest, source } = rig.tunnel!;
    const sessionPids = new Set(dest.logs.filter((l) => l.msg === 'session opened').map((l) => l.pid));
    assert.equal(sessionPids.size, 2, 'two sessions, served by two destination processes');
    const streamPids = new Set(source.logs.filter((l) => l.msg === 'stream opened').map((l) => l.pid));
    assert.equal(streamPids.size, 2, 'streams opened by both source processes');
    assertIdentical(await rig.verify());
  } finally {
    await rig.stop();
  }
});

test('a guest-like writer changes the source while a write-blocking mirror copies: identical after', async (t) => {
  const caseRoot = await suite.caseDir('writer');
  const writerSocket = join(caseRoot, 'writer.sock');
  const name = 'vm3-vda';
  const jobId = `m-${name}`;
  const rig = await startRig({ dir: caseRoot, pki: suite.pki, disks: [{ name, size: 128 * MiB, seed: 3 }], writerSocket });
  try {
    // 256 writes of 64 KiB with a recognisable pattern spread over the disk, while the mirror runs.
    const offsets = Array.from({ length: 256 }, (_, i) => (i * 499 * MiB) % (128 * MiB - 64 * 1024) & ~4095);
    await rig.startMirrors('write-blocking');
    // The job's own rate limit keeps the background copy going well past the writer's last write
    // (the writer's writes are not held back by it); lifted once the writer is done.
    await rig.source.qmp.execute('block-job-set-speed', { device: jobId, speed: WRITER_CASE_SPEED });
    const before = await waitJobProgress(rig.source, jobId, 0.02);
    assert.ok(before, 'the mirror was at READY before the writer started');
    const writerStarted = performance.now();
    const writer = await run('qemu-io', ['-f', 'raw', `nbd+unix:///${name}?socket=${writerSocket}`, ...offsets.flatMap((o) => ['-c', `write -P 0x5a ${o} 64k`])]);
    const after = await jobProgress(rig.source, jobId);
    t.diagnostic(`mirror at ${percent(before)} when the writer started, ${after ? percent(after) : 'gone'} when it ended ${(performance.now() - writerStarted).toFixed(0)} ms later`);
    assert.ok(after && !after.ready && after.offset > before.offset && after.offset < after.len, `the mirror was not copying all along the writer's run: ${JSON.stringify({ before, after })}`);
    await rig.source.qmp.execute('block-job-set-speed', { device: jobId, speed: 0 });
    assert.equal((writer.stdout.match(/wrote 65536\/65536 bytes/g) ?? []).length, 256, writer.stdout.slice(0, 500));
    await rig.waitReady();
    await rig.completeMirrors();
    const results = await rig.verify();
    assertIdentical(results);
    // The writer's pattern is really on the destination disk, in every block it wrote.
    const check = await run('qemu-io', ['-f', 'raw', '-r', rig.disks[0].destImage, ...offsets.flatMap((o) => ['-c', `read -P 0x5a ${o} 64k`])]);
    assert.equal((check.stdout.match(/read 65536\/65536 bytes/g) ?? []).length, 256, check.stdout.slice(0, 500));
  } finally {
    await rig.stop();
  }
});

test('latency: 4 KiB writes and reads at queue depth 1 through the tunnel, every block and every read checked', async (t) => {
  const name = 'vm4-vda';
  const rig = await startRig({ dir: await suite.caseDir('latency'), pki: suite.pki, disks: [{ name, size: 64 * MiB, seed: 4 }] });
  try {
    const { clientSocket, destImage } = rig.disks[0];
    const count = 2000;
    const BLOCK = 4096;
    const STRIDE = 8192;
    // QEMU's client writes pattern 0xa5 every 8 KiB from offset 0; the blocks between stay zero.
    const expected = Buffer.alloc(count * STRIDE);
    for (let i = 0; i < count; i++) expected.fill(0xa5, i * STRIDE, i * STRIDE + BLOCK);
    let started = process.hrtime.bigint();
    await run('qemu-img', ['bench', '-f', 'raw', '-c', String(count), '-d', '1', '-s', String(BLOCK), '-S', String(STRIDE), '-w', '--pattern=165', `nbd+unix:///${name}?socket=${clientSocket}`]);
    const perRequest = (n: number) => (Number(process.hrtime.bigint() - started) / 1000 / n).toFixed(0);
    t.diagnostic(`write: ${count} x 4 KiB at QD1 (qemu-img bench), ${perRequest(count)} us per request (process start included)`);
    // Reads at QD1 through the tunnel over the whole region, each compared with what was written.
    const client = await NbdClient.connect(clientSocket, name);
    const differ: number[] = [];
    started = process.hrtime.bigint();
    for (let offset = 0; offset < expected.length; offset += BLOCK) {
      const got = await client.read(offset, BLOCK);
      if (!got.equals(expected.subarray(offset, offset + BLOCK))) differ.push(offset);
    }
    t.diagnostic(`read: ${expected.length / BLOCK} x 4 KiB at QD1, checked, ${perRequest(expected.length / BLOCK)} us per request`);
    await client.close();
    assert.deepEqual(differ.slice(0, 10), [], `${differ.length} of ${expected.length / BLOCK} blocks read back differ`);
    // And the destination's image holds them.
    const onDisk = (await readFile(destImage)).subarray(0, expected.length);
    assert.ok(onDisk.equals(expected), 'the destination image differs from what was written');
  } finally {
    await rig.stop();
  }
});

test('the CLI is runnable after the build and says what it needs', async () => {
  const child = await spawnChild(process.execPath, [join(import.meta.dirname, '../../dist/cli.js'), 'source', '--connect', 'wss://x:1']);
  const status = await child.exited;
  assert.equal(status.code, 2);
  assert.match(child.stderr, /^nbd-tunnel: error: .*(--route|--ca)/);
});
