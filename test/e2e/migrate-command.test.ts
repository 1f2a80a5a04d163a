// `nbd-tunnel migrate` and `dest --vm`: the live guest migrated by the command alone through
// one tunnel session (disks and RAM, or disks only), refusals before anything starts, and a
// failure mid-mirror that leaves both QEMUs as they were.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI, revoke, run, spawnChild, startConnectProxy, startProxy, startTcpRelay, writeCrl, type LogLine, type Proxy, type QmpClient } from '../harness/index.js';
import { GUEST_BLOCK } from '../harness/guest/blocks.js';
import { buildGuest, type GuestBoot } from '../harness/guest/build.js';
import { startMigrationPair, type MigrationPair, type PairLink, type PairLinkFactory } from '../harness/guest/pair.js';
import { DISK_NODE, startGuestVm } from '../harness/guest/vm.js';
import { createBlankImage } from '../harness/images.js';
import { suiteFolder } from '../harness/suite.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 64 * MiB;
const BLOCKS = 256;
const VM = 'vm1';

const suite = suiteFolder('nbdt-migrate-');
let boot: GuestBoot;
before(async () => {
  boot = await buildGuest();
});

/** Only the destination proxy: `migrate` makes its own session. It may drive the destination QEMU as VM vm1. */
function destProxyLink(extraArgs: string[] = []): PairLinkFactory & { proxy(): Proxy } {
  let proxy: Proxy | null = null;
  const factory = async ({ dir, pki }: Parameters<PairLinkFactory>[0]): Promise<PairLink> => {
    proxy = await startProxy(
      ['dest', '--listen', '127.0.0.1:0', '--vm', `${VM}=${join(dir, 'dst-mgmt.sock')}`, '--cert', pki.serverCert, '--key', pki.serverKey, '--ca', pki.caCert, ...extraArgs],
      'listening',
    );
    const running = proxy;
    return { clientSocket: () => '', stop: () => running.stop() };
  };
  return Object.assign(factory, {
    proxy() {
      if (!proxy) throw new Error('the destination proxy has not been started');
      return proxy;
    },
  });
}

interface MigrateRun {
  code: number;
  lines: LogLine[];
  stderr: string;
  summary: LogLine | undefined;
}

function migrateArgs(pair: MigrationPair, port: number, args: string[], vm = VM): string[] {
  const { pki } = suite;
  return [CLI, 'migrate', '--qmp', pair.source.managementSocket, '--connect', `wss://localhost:${port}`, '--vm', vm, '--ca', pki.caCert, '--cert', pki.clientCert, '--key', pki.clientKey, '--log-format', 'json', ...args];
}

async function runMigrate(pair: MigrationPair, port: number, args: string[], vm = VM): Promise<MigrateRun> {
  return parseRun(await run(process.execPath, migrateArgs(pair, port, args, vm), { okCodes: [0, 1, 2] }));
}

function parseRun(result: { code: number; stdout: string; stderr: string }): MigrateRun {
  const lines = result.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
  return { code: result.code, lines, stderr: result.stderr, summary: lines.find((l) => l.msg === 'migrated') };
}

const portOf = (proxy: Proxy): number => Number(proxy.logs.find((l) => l.msg === 'listening')!.port);

async function withPair(name: string, link: PairLinkFactory, body: (pair: MigrationPair) => Promise<void>): Promise<void> {
  const pair = await startMigrationPair({ dir: await suite.caseDir(name), pki: suite.pki, boot, connect: link, diskBytes: DISK_BYTES, seed: 11, blocks: BLOCKS });
  try {
    await pair.source.console.waitLine(new RegExp(`^wrote ${2 * BLOCKS} `));
    await body(pair);
  } finally {
    await pair.stop();
  }
}

/** What a migration leaves in a QEMU, to compare before and after a refusal or an undo. */
async function footprint(qmp: QmpClient): Promise<Record<string, unknown>> {
  const nodes = await qmp.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true });
  const migrate = await qmp.execute<{ status?: string }>('query-migrate');
  return {
    status: (await qmp.execute<{ status: string }>('query-status')).status,
    jobs: await qmp.execute('query-block-jobs'),
    nodes: nodes.map((n) => n['node-name']).sort(),
    exports: await qmp.execute('query-block-exports'),
    // A migration that never started has no status; one cancelled here would say so.
    migration: migrate.status ?? 'none',
  };
}

/** Both QEMUs' footprints. */
async function footprints(pair: MigrationPair): Promise<Record<'source' | 'dest', Record<string, unknown>>> {
  return { source: await footprint(pair.source.qmp), dest: await footprint(pair.dest.qmp) };
}

for (const copyMode of ['background', 'write-blocking'] as const) {
  test(`migrate (${copyMode}): disk and RAM through one session; the destination runs the same guest, which verifies every block`, { timeout: 300_000 }, async (t) => {
    const link = destProxyLink();
    await withPair(`live-${copyMode}`, link, async (pair) => {
      const migrated = await runMigrate(pair, portOf(link.proxy()), ['--copy-mode', copyMode]);
      t.diagnostic(`summary: ${JSON.stringify(migrated.summary)}`);
      if (migrated.code !== 0) {
        t.diagnostic(link.proxy().logs.map((l) => JSON.stringify(l)).join('\n'));
        t.diagnostic(migrated.lines.map((l) => JSON.stringify(l)).join('\n'));
        t.diagnostic(pair.dest.child.stderr);
      }
      assert.equal(migrated.code, 0, `migrate exited ${migrated.code}: ${migrated.stderr}`);
      const summary = migrated.summary!;
      assert.equal(summary.destination, 'running');
      const disks = summary.disks as Array<{ node: string; size: number; MBps: number }>;
      assert.deepEqual(disks.map((d) => [d.node, d.size]), [[DISK_NODE, DISK_BYTES]]);
      assert.ok(disks[0].MBps > 0 && (summary.ramMBps as number) >= 0 && typeof summary.downtimeMs === 'number' && (summary.totalMs as number) > 0, JSON.stringify(summary));
      assert.equal(migrated.lines.at(-1)?.msg, 'migrated', 'the summary is the last line');
      assert.equal((await pair.source.qmp.execute<{ status: string }>('query-status')).status, 'postmigrate');
      assert.equal((await pair.dest.qmp.execute<{ status: string }>('query-status')).status, 'running', 'the destination proxy resumed the VM');
      const sourceLast = pair.source.lastProgress();
      assert.ok(sourceLast, 'the source guest printed progress');
      const next = await pair.dest.progress(pair.dest.console.lines.length);
      assert.equal(next.boot, sourceLast.boot, 'same boot id: the guest was not rebooted');
      assert.ok(next.n > sourceLast.n, `counter went on: ${next.n} after the source's ${sourceLast.n}`);
      const verified = await pair.dest.verify();
      assert.ok(verified.ok, verified.line);
      assert.match(verified.line, new RegExp(` blocks ${BLOCKS} boot ${sourceLast.boot}$`), 'every block checked');
      // Nothing of the migration is left on the destination: its NBD server is gone.
      assert.deepEqual(await pair.dest.qmp.execute('query-block-exports'), []);
      const dest = link.proxy();
      assert.deepEqual([...new Set(dest.logs.filter((l) => l.msg === 'stream opened').map((l) => l.route))].sort(), ['migrate.nbd', 'migrate.ram']);
      assert.equal(dest.logs.filter((l) => l.msg === 'session opened').length, 1, 'one session carried the whole migration');
    });
  });
}

test('migrate through a link that is reset mid-mirror: the session resumes, the migration completes, every block verified', { timeout: 300_000 }, async (t) => {
  const link = destProxyLink();
  await withPair('reset', link, async (pair) => {
    const relay = await startTcpRelay({ target: { host: '127.0.0.1', port: portOf(link.proxy()) } });
    try {
      // 16 MB/s: the mirror takes seconds, so the reset lands inside it.
      const child = await spawnChild(process.execPath, migrateArgs(pair, relay.port, ['--speed', '16']));
      try {
        await mirrorCopying(pair.source.qmp);
        relay.resetAll();
        const { code } = await child.exited;
        const migrated = parseRun({ code: code ?? -1, stdout: child.stdout, stderr: child.stderr });
        t.diagnostic(`summary: ${JSON.stringify(migrated.summary)}`);
        assert.equal(migrated.code, 0, `migrate exited ${migrated.code}: ${migrated.stderr}`);
        assert.equal(migrated.lines.filter((l) => l.msg === 'session resumed').length, 1, 'the one session resumed');
        assert.equal(relay.accepted, 2, 'one tunnel connection, plus the one after the reset');
        assert.equal((await pair.dest.qmp.execute<{ status: string }>('query-status')).status, 'running');
        const verified = await pair.dest.verify();
        assert.ok(verified.ok, verified.line);
      } finally {
        await child.stop();
      }
    } finally {
      await relay.close();
    }
  });
});

test('migrate --storage-only: the disk mirrored to a consistent copy, the source guest keeps running, nothing left on either QEMU', { timeout: 300_000 }, async (t) => {
  const link = destProxyLink();
  await withPair('storage', link, async (pair) => {
    const before = await footprints(pair);
    const migrated = await runMigrate(pair, portOf(link.proxy()), ['--storage-only']);
    t.diagnostic(`summary: ${JSON.stringify(migrated.summary)}`);
    assert.equal(migrated.code, 0, `migrate exited ${migrated.code}: ${migrated.stderr}`);
    assert.equal(migrated.summary!.ramMBps, null);
    assert.deepEqual(await footprints(pair), before, 'both QEMUs as before, the copy apart');
    const running = await pair.source.progress(pair.source.console.lines.length);
    t.diagnostic(`source guest still writing: ${running.n}`);
    // Crash-consistent: the guest writes its blocks round-robin, so a copy taken at one moment
    // holds generation G+1 up to some block and G after it; the rest of the disk is the source's.
    const [copy, source] = await Promise.all([readFile(pair.destImage), readFile(pair.sourceImage)]);
    const gens = Array.from({ length: BLOCKS }, (_, b) => {
      const head = /^nbdt block (\d+) gen (\d+) line 0 boot (\w+)/.exec(copy.toString('ascii', b * GUEST_BLOCK, b * GUEST_BLOCK + 64));
      assert.ok(head && Number(head[1]) === b && head[3] === running.boot, `block ${b} of the copy is not one the guest wrote`);
      assert.ok(copy.subarray(b * GUEST_BLOCK, (b + 1) * GUEST_BLOCK).toString('ascii').split('\n').slice(0, 64).every((line) => line.includes(`gen ${head[2]} line`)), `block ${b} is torn`);
      return Number(head[2]);
    });
    const drops = gens.filter((g, b) => b > 0 && g !== gens[b - 1]);
    assert.ok(drops.length <= 1 && gens.every((g) => g === gens[0] || g === gens[0] - 1), `not one moment's copy: generations ${JSON.stringify(gens)}`);
    assert.ok(copy.subarray(BLOCKS * GUEST_BLOCK).equals(source.subarray(BLOCKS * GUEST_BLOCK)), 'the rest of the disk differs');
  });
});

test('migrate refuses before anything starts: unknown disk node, a VM not named by --vm, a client not allowed, disk sizes that differ, a proxy refusing CONNECT, a --crl revoking the destination', { timeout: 300_000 }, async (t) => {
  const link = destProxyLink();
  await withPair('refusals', link, async (pair) => {
    const dir = join(suite.dir, 'refusals');
    const before = await footprints(pair);
    const port = portOf(link.proxy());
    const refusals: Array<[string, MigrateRun, RegExp]> = [
      ['unknown disk', await runMigrate(pair, port, ['--disk', 'nope']), /^nbd-tunnel: error: migration of VM 'vm1' failed: disk node 'nope' does not exist on the source$/],
      ['VM not named', await runMigrate(pair, port, [], 'vm9'), /^nbd-tunnel: error: migration of VM 'vm9' failed: the destination refused the migration: VM 'vm9' is not one the destination may migrate into \(dest --vm NAME=QMP_SOCKET\)$/],
    ];
    // The same QEMU behind a destination that allows another client only.
    const strict = await startProxy(
      ['dest', '--listen', '127.0.0.1:0', '--vm', `${VM}=${join(dir, 'dst-mgmt.sock')}`, '--allow', `${VM}=other.example.org`, '--cert', suite.pki.serverCert, '--key', suite.pki.serverKey, '--ca', suite.pki.caCert],
      'listening',
    );
    try {
      refusals.push(['client not allowed', await runMigrate(pair, portOf(strict), []), /the destination refused the migration: client 'hv1.example.org' is not allowed to migrate into VM 'vm1' \(--allow vm1=…\)$/]);
    } finally {
      await strict.stop();
    }
    // A destination QEMU whose disk is half the size.
    const small = join(dir, 'small.img');
    await createBlankImage(small, DISK_BYTES / 2);
    const smallVm = await startGuestVm({ dir, name: 'small', boot, image: small, blocks: BLOCKS, incoming: true });
    const smallDest = await startProxy(
      ['dest', '--listen', '127.0.0.1:0', '--vm', `${VM}=${smallVm.managementSocket}`, '--cert', suite.pki.serverCert, '--key', suite.pki.serverKey, '--ca', suite.pki.caCert],
      'listening',
    );
    try {
      refusals.push(['sizes differ', await runMigrate(pair, portOf(smallDest), []), /failed: VM 'vm1': disk 'disk0' is 33554432 bytes on the destination and 67108864 on the source$/]);
      assert.deepEqual(await smallVm.qmp.execute('query-block-exports'), [], 'the small destination serves nothing');
    } finally {
      await smallDest.stop();
      await smallVm.stop();
    }
    // No tunnel at all: the proxy refuses CONNECT; the destination's certificate is revoked by --crl.
    const refusing = await startConnectProxy({ refuse: true });
    try {
      const refused = await runMigrate(pair, port, ['--proxy', refusing.url]);
      assert.equal(refused.lines.find((l) => l.msg === 'migration starting')?.proxy, `${refusing.url} (--proxy)`);
      refusals.push(['proxy refuses', refused, new RegExp(`failed: --connect wss://localhost:${port}/: the proxy refused CONNECT to localhost:${port}: 403 Forbidden \\(--proxy ${refusing.url}\\)$`)]);
    } finally {
      await refusing.close();
    }
    await revoke(suite.pki.ca, suite.pki.serverCert);
    const crl = await writeCrl(suite.pki.ca, join(dir, 'ca.crl'));
    const revoked = `destination certificate refused: serial [0-9A-F]+ is revoked by --crl ${crl} \\(revoked [-0-9T:]+Z\\)$`;
    refusals.push(['destination revoked', await runMigrate(pair, port, ['--crl', crl]), new RegExp(`failed: --connect wss://localhost:${port}/: cannot connect to wss://localhost:${port}/: ${revoked}`)]);
    for (const [what, refused, message] of refusals) {
      t.diagnostic(`${what}: ${refused.stderr.trim()}`);
      assert.equal(refused.code, 1, `${what}: exit status`);
      assert.match(refused.stderr.trim(), message, what);
    }
    assert.deepEqual(await footprints(pair), before, 'both QEMUs untouched');
  });
});

/** Waits until the migration's mirror has copied something and is not done. */
async function mirrorCopying(qmp: QmpClient): Promise<void> {
  let job: { offset: number; len: number } | undefined;
  for (let i = 0; i < 200 && !(job && job.offset > 0); i++) {
    await sleep(50);
    job = (await qmp.execute<Array<{ offset: number; len: number }>>('query-block-jobs'))[0];
  }
  assert.ok(job && job.offset > 0 && job.offset < job.len, `the mirror was copying: ${JSON.stringify(job)}`);
}

test('Ctrl-C mid-mirror is undone on both sides: exit 1, jobs, nodes, exports and migration as before, the source running', { timeout: 300_000 }, async (t) => {
  const link = destProxyLink();
  await withPair('interrupt', link, async (pair) => {
    const before = await footprints(pair);
    const child = await spawnChild(process.execPath, migrateArgs(pair, portOf(link.proxy()), ['--speed', '4']));
    try {
      await mirrorCopying(pair.source.qmp);
      child.proc.kill('SIGINT');
      const { code } = await child.exited;
      const interrupted = parseRun({ code: code ?? -1, stdout: child.stdout, stderr: child.stderr });
      t.diagnostic(`migrate: exit ${interrupted.code}: ${interrupted.stderr.trim()}`);
      assert.equal(interrupted.code, 1);
      assert.match(interrupted.stderr.trim(), /^nbd-tunnel: error: migration of VM 'vm1' failed: interrupted by SIGINT: the migration was undone$/);
      assert.deepEqual(await footprints(pair), before, 'both QEMUs as before');
    } finally {
      await child.stop();
    }
  });
});

test('a failure mid-mirror (the destination NBD server stopped) is undone on both sides: jobs, nodes, exports and migration as before, the source running', { timeout: 300_000 }, async (t) => {
  const link = destProxyLink();
  await withPair('failure', link, async (pair) => {
    const before = await footprints(pair);
    // Slow enough (4 MB/s) that the mirror is still copying when the server goes.
    const migrating = runMigrate(pair, portOf(link.proxy()), ['--speed', '4']);
    await mirrorCopying(pair.source.qmp);
    await pair.dest.qmp.execute('nbd-server-stop');
    const failed = await migrating;
    t.diagnostic(`migrate: exit ${failed.code}: ${failed.stderr.trim()}`);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr.trim(), /^nbd-tunnel: error: migration of VM 'vm1' failed: mirror of disk 'disk0' ended before it was READY: .+/);
    assert.ok(failed.lines.some((l) => l.msg === 'migration failed: undoing'), 'the undo was logged');
    assert.deepEqual(await footprints(pair), before, 'both QEMUs as before');
    await pair.source.progress(pair.source.console.lines.length); // the guest still writes
  });
});
