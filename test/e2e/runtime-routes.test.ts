// Routes at run time, through the real CLI: the source's control socket (`nbd-tunnel route
// add|remove|list`), the destination's --route-dir with sockets that appear after it started, and
// a --config file that SIGHUP re-reads. Real QEMU mirrors, verified with qemu-img compare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CLI,
  compareImages,
  createBlankImage,
  createTestImage,
  run,
  startCountingServer,
  startProxy,
  startStorageDaemon,
  type Proxy,
  type StorageDaemon,
} from '../harness/index.js';
import { suiteFolder } from '../harness/suite.js';

const MiB = 1024 * 1024;
const TIMEOUT_MS = 120_000;
const suite = suiteFolder('nbdt-rr-');

const destTls = () => ['--cert', suite.pki.serverCert, '--key', suite.pki.serverKey, '--ca', suite.pki.caCert];
const sourceTls = () => ['--cert', suite.pki.clientCert, '--key', suite.pki.clientKey, '--ca', suite.pki.caCert];

/** `nbd-tunnel route …`, run to its exit. */
async function route(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, 'route', ...args], { okCodes: [0, 1, 2] });
}

async function startDest(args: string[]): Promise<{ dest: Proxy; port: number }> {
  const dest = await startProxy(['dest', '--listen', '127.0.0.1:0', ...destTls(), ...args], 'listening');
  return { dest, port: Number(dest.logs.find((l) => l.msg === 'listening')!.port) };
}

const gone = (path: string) => assert.rejects(lstat(path), { code: 'ENOENT' }, `${path} is left behind`);

/** Runs `body` with what it starts pushed on `started`, stopped (last first) whatever happens. */
async function withParts(body: (started: Array<{ stop(): Promise<void> }>) => Promise<void>): Promise<void> {
  const started: Array<{ stop(): Promise<void> }> = [];
  try {
    await body(started);
  } finally {
    for (const part of started.reverse()) await part.stop().catch(() => {});
  }
}

/** A case folder with a destination --route-dir in which a counting server plays QEMU for `route`. */
async function countingCase(name: string, route: string, started: Array<{ stop(): Promise<void> }>) {
  const dir = await suite.caseDir(name);
  const qemuDir = join(dir, 'qemu');
  await mkdir(qemuDir);
  const target = await startCountingServer(join(qemuDir, `${route}.sock`));
  started.push({ stop: () => target.close() });
  return { dir, qemuDir, target };
}

test('no routes at start: route add two, mirror two disks, remove one while READY (its mirror goes on), add it again elsewhere, list', async () => {
  const dir = await suite.caseDir('runtime');
  const qemuDir = join(dir, 'qemu'); // the destination's --route-dir: QEMU's sockets appear here later
  const tunnelDir = join(dir, 'tunnel'); // the source's --route-dir
  await mkdir(qemuDir);
  await mkdir(tunnelDir);
  const control = join(dir, 'control.sock');
  const vms = ['vm7', 'vm8'].map((vm, i) => ({
    vm,
    route: `${vm}-nbd`, // one NBD socket per VM, as libvirt's --disks-uri
    disk: `${vm}-vda`,
    sourceImage: join(dir, `${vm}-src.img`),
    destImage: join(dir, `${vm}-dst.img`),
    seed: 70 + i,
  }));
  const started: Array<{ stop(): Promise<void> }> = [];
  try {
    const { dest, port } = await startDest(['--route-dir', qemuDir]);
    started.push(dest);
    const source = await startProxy(['source', '--connect', `wss://localhost:${port}`, '--route-dir', tunnelDir, '--control', control, ...sourceTls()], 'ready');
    started.push(source);
    assert.deepEqual(source.logs.find((l) => l.msg === 'ready')!.routes, {}, 'no routes at start');
    assert.equal((await lstat(control)).mode & 0o777, 0o600, 'the control socket is owner-only');

    // Destination QEMUs (one per VM) listen in the destination's --route-dir after it started.
    const destDaemons: StorageDaemon[] = [];
    for (const v of vms) {
      await createTestImage(v.sourceImage, 32 * MiB, v.seed);
      await createBlankImage(v.destImage, 32 * MiB);
      const daemon = await startStorageDaemon(dir, `dest-${v.vm}`);
      started.push(daemon);
      destDaemons.push(daemon);
      await daemon.addRawImage(`${v.disk}-dst`, v.destImage);
      await daemon.startNbdServer(join(qemuDir, `${v.route}.sock`));
      await daemon.exportNbd(`${v.disk}-dst`, v.disk, true);
    }

    // Bad requests are refused with one line; nothing is left listening.
    const badName = await route(['add', '../vm7', '--control', control]);
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /^nbd-tunnel: error: route name "\.\.\/vm7" is not valid: route name must match .*\n$/);

    const sockets: Record<string, string> = {};
    for (const v of vms) {
      const added = await route(['add', v.route, '--control', control]);
      assert.equal(added.code, 0, added.stderr);
      sockets[v.route] = join(tunnelDir, `${v.route}.sock`);
      assert.equal(added.stdout, `${sockets[v.route]}\n`, 'route add prints the socket');
      assert.equal((await lstat(sockets[v.route])).mode & 0o777, 0o660, "the source's --socket-mode applies");
    }
    const taken = await route(['add', 'vm7-nbd', join(dir, 'other.sock'), '--control', control]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /^nbd-tunnel: error: route 'vm7-nbd' already exists \(socket .*vm7-nbd\.sock\); remove it first or pick another name\n$/);
    const inUse = await route(['add', 'vm9-nbd', sockets['vm7-nbd'], '--control', control]);
    assert.equal(inUse.code, 1);
    assert.match(inUse.stderr, /route 'vm7-nbd' already listens on this socket/);
    const missing = await route(['remove', 'vm9-nbd', '--control', control]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^nbd-tunnel: error: no route 'vm9-nbd' on this source/);

    // The source QEMU: both disks, a writer export for vm8, a mirror per disk through the routes.
    const sourceDaemon = await startStorageDaemon(dir, 'source');
    started.push(sourceDaemon);
    const writerSocket = join(dir, 'writer.sock');
    await sourceDaemon.startNbdServer(writerSocket);
    for (const v of vms) {
      await sourceDaemon.addRawImage(`${v.disk}-src`, v.sourceImage);
      await sourceDaemon.exportNbd(`${v.disk}-src`, v.disk, true);
      await sourceDaemon.addNbdClient(`${v.disk}-tgt`, sockets[v.route], v.disk);
      await sourceDaemon.mirror({ jobId: `m-${v.disk}`, device: `${v.disk}-src`, target: `${v.disk}-tgt` });
    }
    await Promise.all(vms.map((v) => sourceDaemon.waitJobReady(`m-${v.disk}`, TIMEOUT_MS)));
    let list = await route(['list', '--control', control]);
    assert.equal(list.stdout, `vm7-nbd\t${sockets['vm7-nbd']}\t1\nvm8-nbd\t${sockets['vm8-nbd']}\t1\n`);

    // Remove vm8's route while its mirror is READY: the socket goes, the open stream stays.
    const removed = await route(['remove', 'vm8-nbd', '--control', control]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, '');
    await gone(sockets['vm8-nbd']);
    list = await route(['list', '--control', control]);
    assert.equal(list.stdout, `vm7-nbd\t${sockets['vm7-nbd']}\t1\n`);
    // The guest writes on: the mirror carries the writes through the removed route's stream.
    await run('qemu-io', ['-f', 'raw', `nbd+unix:///vm8-vda?socket=${writerSocket}`, '-c', 'write -P 0x5a 1M 64k', '-c', 'write -P 0x5b 20M 64k']);
    await sleep(500);
    const jobs = await sourceDaemon.qmp.execute<Array<{ device: string; status: string }>>('query-block-jobs');
    assert.equal(jobs.find((j) => j.device === 'm-vm8-vda')?.status, 'ready', JSON.stringify(jobs));

    // Add it again under another socket; its old stream still counts for the route name.
    const again = join(dir, 'vm8-again.sock');
    const readded = await route(['add', 'vm8-nbd', again, '--socket-mode', '0600', '--control', control]);
    assert.equal(readded.code, 0, readded.stderr);
    assert.equal(readded.stdout, `${again}\n`);
    assert.equal((await lstat(again)).mode & 0o777, 0o600);
    list = await route(['list', '--control', control]);
    assert.equal(list.stdout, `vm7-nbd\t${sockets['vm7-nbd']}\t1\nvm8-nbd\t${again}\t1\n`);

    // Cancel (complete) both mirrors; then read vm8's destination disk through the new socket.
    for (const v of vms) await sourceDaemon.cancelJob(`m-${v.disk}`);
    await Promise.all(vms.map((v) => sourceDaemon.waitJobCompleted(`m-${v.disk}`, TIMEOUT_MS)));
    const read = await run('qemu-io', ['-f', 'raw', '-r', `nbd+unix:///vm8-vda?socket=${again}`, '-c', 'read -P 0x5a 1M 64k', '-c', 'read -P 0x5b 20M 64k']);
    assert.equal((read.stdout.match(/read 65536\/65536 bytes/g) ?? []).length, 2, read.stdout);
    assert.ok(dest.logs.some((l) => l.msg === 'stream opened' && l.route === 'vm8-nbd' && l.socket === join(qemuDir, 'vm8-nbd.sock')));

    await sourceDaemon.quit();
    for (const daemon of destDaemons) await daemon.quit();
    for (const v of vms) {
      const { identical, output } = await compareImages(v.sourceImage, v.destImage);
      assert.ok(identical, `${v.vm}: images differ: ${output}`);
    }
    const vm8Closed = source.logs.filter((l) => l.msg === 'stream closed' && l.route === 'vm8-nbd');
    assert.ok(vm8Closed.length >= 1 && vm8Closed.every((l) => l.reason === undefined), JSON.stringify(vm8Closed));

    // A drain removes the runtime routes' sockets and the control socket.
    await source.stop();
    assert.deepEqual(await source.child.exited, { code: 0, signal: null });
    for (const path of [control, sockets['vm7-nbd'], again]) await gone(path);
  } finally {
    for (const part of started.reverse()) await part.stop().catch(() => {});
  }
});

test('SIGHUP re-reads --config: a new allow rule (a route pattern) applies to new streams without a restart; a broken file keeps it', () =>
  withParts(async (started) => {
    const { dir, qemuDir, target } = await countingCase('reload', 'vm9-vda', started);
    const destFile = join(dir, 'dest.json');
    const sourceFile = join(dir, 'source.json');
    const writeJson = (path: string, value: unknown) => writeFile(path, JSON.stringify(value), { mode: 0o600 });
    await writeJson(destFile, { routeDir: qemuDir, allow: { 'vm1-*': ['hv1.example.org'] } });
    const vda = join(dir, 'vm9-vda.sock');
    const vdb = join(dir, 'vm9-vdb.sock');
    await writeJson(sourceFile, { route: { 'vm9-vda': vda } });
    const { dest, port } = await startDest(['--config', destFile]);
    started.push(dest);
    const source = await startProxy(['source', '--connect', `wss://localhost:${port}`, '--config', sourceFile, ...sourceTls()], 'ready');
    started.push(source);
    assert.equal(await attempt(source, vda), 'not-allowed', 'vm9-* is not allowed yet');
    assert.equal(target.accepts, 0);

    await writeJson(destFile, { routeDir: qemuDir, allow: { 'vm1-*': ['hv1.example.org'], 'vm9-*': ['*.example.org'] } });
    dest.child.proc.kill('SIGHUP');
    const reloaded = await dest.waitForLog((l) => l.msg === 'configuration reloaded');
    assert.deepEqual(reloaded.allow, { 'vm1-*': ['hv1.example.org'], 'vm9-*': ['*.example.org'] });
    assert.equal(await attempt(source, vda), 'opened');
    assert.equal(target.accepts, 1);

    // A broken file: an error line naming the key, and the running rules stay.
    await writeJson(destFile, { routeDir: qemuDir, alow: {} });
    dest.child.proc.kill('SIGHUP');
    const failed = await dest.waitForLog((l) => l.msg === 'configuration reload failed; keeping the running one');
    assert.match(String(failed.reason), /dest\.json: unknown key 'alow'/);
    assert.equal(await attempt(source, vda), 'opened');

    // The source's file: a route added to it listens after SIGHUP, one removed stops listening.
    await writeJson(sourceFile, { route: { 'vm9-vdb': vdb } });
    source.child.proc.kill('SIGHUP');
    await source.waitForLog((l) => l.msg === 'configuration reloaded');
    assert.ok((await lstat(vdb)).isSocket());
    await gone(vda);
  }),
);

test('source --connections 2: runtime routes are served by the primary, streams counted across the workers', () =>
  withParts(async (started) => {
    const { dir, qemuDir, target } = await countingCase('workers', 'vm5-vda', started);
    const control = join(dir, 'control.sock');
    const { dest, port } = await startDest(['--route-dir', qemuDir]);
    started.push(dest);
    const source = await startProxy(['source', '--connect', `wss://localhost:${port}`, '--control', control, '--connections', '2', ...sourceTls()], 'ready', 20_000);
    started.push(source);
    const socket = join(dir, 'vm5-vda.sock');
    const added = await route(['add', 'vm5-vda', socket, '--control', control]);
    assert.equal(added.code, 0, added.stderr);
    const list = async () => (await route(['list', '--control', control])).stdout;
    const clients = [0, 1].map(() => createConnection(socket).on('error', () => {}));
    try {
      for (let i = 0; i < 100 && target.accepts < 2; i++) await sleep(50);
      assert.equal(await list(), `vm5-vda\t${socket}\t2\n`);
    } finally {
      for (const client of clients) client.destroy();
    }
    for (let i = 0; i < 50 && (await list()) !== `vm5-vda\t${socket}\t0\n`; i++) await sleep(100);
    assert.equal(await list(), `vm5-vda\t${socket}\t0\n`, 'closed streams are no longer counted');
    const pids = new Set(source.logs.filter((l) => l.msg === 'stream opened').map((l) => l.pid));
    assert.equal(pids.size, 2, 'the two connections went to both workers');
    await source.stop();
    for (const path of [control, socket]) await gone(path);
  }),
);

/** One connection to a source socket: the destination's answer, as the source logs it. */
async function attempt(source: Proxy, socket: string): Promise<string> {
  const seen = source.logs.length;
  const client = createConnection(socket);
  client.on('error', () => {});
  try {
    const line = await source.waitForLog((l) => source.logs.indexOf(l) >= seen && (l.msg === 'stream opened' || l.msg === 'stream refused by the destination'));
    return line.msg === 'stream opened' ? 'opened' : String(line.code);
  } finally {
    client.destroy();
  }
}

test('the CLI with --config and route patterns: the file may give --listen; bad keys and patterns exit 2 with one line', async () => {
  const dir = await suite.caseDir('cli');
  const good = join(dir, 'good.json');
  await writeFile(good, JSON.stringify({ listen: '127.0.0.1:0', routeDir: dir, allow: { 'vm1-*': 'hv1.example.org' } }));
  const dest = await startProxy(['dest', '--config', good, ...destTls()], 'listening');
  try {
    const line = await dest.waitForLog((l) => l.msg === 'listening');
    assert.equal(line.routeDir, dir);
    assert.ok(!dest.logs.some((l) => /no --allow given/.test(String(l.msg))), 'the file gave an --allow rule');
  } finally {
    await dest.stop();
  }
  const bad = join(dir, 'bad.json');
  await writeFile(bad, JSON.stringify({ listen: '127.0.0.1:0', routeDir: dir, allowed: {} }));
  const cases: Array<[string[], RegExp]> = [
    [['dest', '--config', bad, ...destTls()], /^nbd-tunnel: error: --config .*bad\.json: unknown key 'allowed'\n$/],
    [['dest', '--listen', '127.0.0.1:0', '--route-dir', dir, '--allow', 'vm*-vda=hv1.example.org', ...destTls()], /--allow 'vm\*-vda=hv1\.example\.org': 'vm\*-vda': '\*' may only end the route name/],
    [['dest', '--listen', '127.0.0.1:0', '--route-dir', join(dir, 'missing'), ...destTls()], /--route-dir .*missing: cannot read: ENOENT/],
    [['dest', '--route-dir', dir, ...destTls()], /required option '--listen <HOST:PORT>' not specified \(or give it in --config\)/],
    [['source', '--connect', 'wss://localhost:1', '--control', join(dir, 'c.sock'), '--control-mode', '0660', '--control-mode', '0700', ...sourceTls()], /--control-mode 0700: use 0600/],
    [['route', 'list'], /required option '--control <SOCKET>' not specified/],
  ];
  for (const [args, expected] of cases) {
    const result = await run(process.execPath, [CLI, ...args], { okCodes: [0, 1, 2] });
    assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, expected);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  }
  const unreachable = await route(['list', '--control', join(dir, 'nobody.sock')]);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, /^nbd-tunnel: error: --control .*nobody\.sock: does not exist; is the source running with this --control\? \(ENOENT\)\n$/);
});
