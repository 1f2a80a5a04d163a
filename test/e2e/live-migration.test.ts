// A real guest live-migrated the way libvirt does it (--live --copy-storage-all), over QMP, with
// the disk mirror and the RAM stream each on its own route through nbd-tunnel: the tiny guest
// keeps writing numbered blocks throughout, then on the destination goes on counting where it
// stopped (same boot) and checks every block it ever wrote.
import assert from 'node:assert/strict';
import { before, test, type TestContext } from 'node:test';
import { countLogs, waitForLogCount, waitJobProgress } from '../harness/fault-tunnel.js';
import { buildGuest, type GuestBoot } from '../harness/guest/build.js';
import { faultPairLink } from '../harness/guest/fault-link.js';
import { revertLastWrite } from '../harness/guest/blocks.js';
import { DISK_ROUTE, RAM_ROUTE, directLink, startMigrationPair, tunnelLink, type MigrationPair, type PairLinkFactory } from '../harness/guest/pair.js';
import { MIRROR_JOB, migrateLikeLibvirt, type SequenceOptions, type SequenceResult } from '../harness/guest/sequence.js';
import { waitRamTransferred } from '../harness/migration.js';
import { suiteFolder } from '../harness/suite.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 64 * MiB;
/** 1 MiB of blocks the guest rewrites over and over; it verifies them in about a second. */
const BLOCKS = 256;

const suite = suiteFolder('nbdt-live-');
let boot: GuestBoot;
before(async () => {
  boot = await buildGuest();
});

interface Case {
  name: string;
  connect: PairLinkFactory;
  copyMode: 'background' | 'write-blocking';
  /** Things to do while the mirror copies and while RAM is sent, once the pair is up. */
  during?: (pair: MigrationPair) => Pick<SequenceOptions, 'duringMirror' | 'duringRam'>;
}

/** Pair up, let the guest rewrite its blocks at least twice, migrate; `then` runs on the paused destination. */
async function migrateCase(t: TestContext, c: Case, then: (pair: MigrationPair, result: SequenceResult) => Promise<void>): Promise<void> {
  const pair = await startMigrationPair({ dir: await suite.caseDir(c.name), pki: suite.pki, boot, connect: c.connect, diskBytes: DISK_BYTES, seed: 7, blocks: BLOCKS });
  try {
    await pair.source.console.waitLine(new RegExp(`^wrote ${2 * BLOCKS} `));
    const result = await migrateLikeLibvirt(pair, { copyMode: c.copyMode, ...c.during?.(pair) });
    report(t, pair, result);
    assert.ok(result.atSwitchover?.identical, `disks differ at switch-over: ${result.atSwitchover?.output}`);
    assert.equal(result.sourceInfo.status, 'completed');
    assert.deepEqual(await pair.source.qmp.execute('query-status'), { status: 'postmigrate', singlestep: false, running: false });
    if (pair.link.tunnel) {
      // Both routes really went through the tunnel.
      const routes = pair.link.tunnel.dest.logs.filter((l) => l.msg === 'stream opened').map((l) => l.route);
      assert.deepEqual([...new Set(routes)].sort(), [RAM_ROUTE, DISK_ROUTE].sort());
    }
    await then(pair, result);
  } finally {
    await pair.stop();
  }
}

/** cont on the destination: the same boot counts on past the source's last value, then verifies. */
async function continueAndVerify(pair: MigrationPair, result: SequenceResult): Promise<void> {
  const { sourceLast } = result;
  assert.ok(sourceLast, 'the source guest printed progress');
  await pair.dest.qmp.execute('cont');
  const first = await pair.dest.progress();
  assert.equal(first.boot, sourceLast.boot, 'same boot id: the guest was not rebooted');
  assert.ok(first.n > sourceLast.n, `counter went on: ${first.n} after the source's ${sourceLast.n}`);
  const verified = await pair.dest.verify();
  assert.ok(verified.ok, verified.line);
  assert.ok(verified.n >= first.n, verified.line);
  assert.match(verified.line, new RegExp(` blocks ${BLOCKS} boot ${sourceLast.boot}$`), 'every block checked');
}

function report(t: TestContext, pair: MigrationPair, r: SequenceResult): void {
  const { ram, downtime } = r.sourceInfo;
  const mirrorMBps = DISK_BYTES / 1e6 / (r.mirrorReadyMs / 1000);
  const ramMBps = ram ? ram.mbps / 8 : NaN;
  t.diagnostic(
    `boot ${(pair.bootMs / 1000).toFixed(1)} s; mirror ${DISK_BYTES / MiB} MiB READY in ${r.mirrorReadyMs.toFixed(0)} ms (${mirrorMBps.toFixed(0)} MB/s); ` +
      `RAM ${((ram?.transferred ?? 0) / MiB).toFixed(0)} MiB at ${ramMBps.toFixed(0)} MB/s in ${r.sourceInfo['total-time']} ms; ` +
      `downtime ${downtime} ms (includes the pause at pre-switchover: mirror completion and the image compare)`,
  );
}

test('through the tunnel, background mirror: identical at switch-over, the guest goes on on the destination and verifies every block', async (t) => {
  await migrateCase(t, { name: 'bg', connect: tunnelLink, copyMode: 'background' }, continueAndVerify);
});

test('through the tunnel, write-blocking mirror: the same', async (t) => {
  await migrateCase(t, { name: 'wb', connect: tunnelLink, copyMode: 'write-blocking' }, continueAndVerify);
});

test('negative control: one block of the destination put back to its previous write before cont is caught by the guest', async (t) => {
  await migrateCase(t, { name: 'neg', connect: tunnelLink, copyMode: 'background' }, async (pair) => {
    const reverted = await revertLastWrite(pair.destImage, BLOCKS);
    // Asked while still paused, so the guest checks before its writes come round to that block.
    const verifying = pair.dest.verify();
    await pair.dest.qmp.execute('cont');
    const verified = await verifying;
    assert.equal(verified.ok, false, `the reverted block ${reverted.block} went unnoticed: ${verified.line}`);
    assert.equal(verified.block, reverted.block, verified.line);
  });
});

test('baseline without nbd-tunnel (QEMU sockets direct): the same sequence', async (t) => {
  await migrateCase(t, { name: 'direct', connect: directLink, copyMode: 'background' }, continueAndVerify);
});

test('a tunnel reset during the mirror and another during the RAM phase: both resumed, the migration completes, every block verified', async (t) => {
  // Throttled so that each phase lasts seconds and the resets land inside it.
  const link = faultPairLink({ relay: { rateBytesPerSecond: 16e6 } });
  const resets: string[] = [];
  const resetAndResume = async (phase: string): Promise<void> => {
    const ft = link.tunnel();
    ft.relay!.resetAll();
    resets.push(phase);
    for (const proxy of [ft.source, ft.dest]) await waitForLogCount(proxy, (l) => l.msg === 'session resumed', resets.length, 30_000);
  };
  const during = (pair: MigrationPair): Pick<SequenceOptions, 'duringMirror' | 'duringRam'> => ({
    async duringMirror() {
      const at = await waitJobProgress(pair.source, MIRROR_JOB, 0.3);
      assert.ok(at, 'the mirror was READY before the reset');
      await resetAndResume(`mirror at ${((100 * at.offset) / at.len).toFixed(0)}%`);
    },
    async duringRam() {
      const at = await waitRamTransferred(pair.source.qmp, 16 * MiB);
      assert.ok(at, 'RAM was sent before the reset');
      await resetAndResume(`RAM at ${((at.ram?.transferred ?? 0) / MiB).toFixed(0)} MiB`);
    },
  });
  await migrateCase(t, { name: 'resets', connect: link.connect, copyMode: 'background', during }, async (pair, result) => {
    t.diagnostic(`resets: ${resets.join(', ')}`);
    const ft = link.tunnel();
    assert.equal(ft.relay!.accepted, 3, 'one tunnel connection per reset, plus the first');
    for (const proxy of [ft.source, ft.dest]) {
      // QEMU kept its two connections: no stream was closed and reopened.
      for (const route of [DISK_ROUTE, RAM_ROUTE]) assert.equal(countLogs(proxy, (l) => l.msg === 'stream opened' && l.route === route), 1, route);
    }
    await continueAndVerify(pair, result);
  });
});
