// A sidecar that runs for months: every stream ends however its client ends, and shutdowns
// never hang. Issue 9's reproductions, each of which failed before its fix: streams left in the
// session after a client was killed mid-write or left before reading a reply (until
// --max-streams refused every new connection), a process that never exited once its stdout
// reader was gone, and a source that exited cleanly leaving its session suspended.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createTestImage,
  faultLink,
  fetchFromMetrics,
  NbdClient,
  run,
  spawnChild,
  startRig,
  serveTestImage,
  startTunnel,
  type LogLine,
  type Proxy,
} from '../harness/index.js';
import { mulberry32 } from '../harness/prng.js';
import { assertIdentical, suiteFolder } from '../harness/suite.js';

const MiB = 1024 * 1024;
const suite = suiteFolder('nbd-tunnel-lifetimes-');

const byMsg = (msg: string) => (line: LogLine) => line.msg === msg;

interface StatusDocument {
  sessions: Array<{ openStreams: number; streams: Array<{ route: string }>; suspended: boolean }>;
}

async function status(proxy: Proxy): Promise<StatusDocument> {
  return (await (await fetchFromMetrics(proxy, '/status')).json()) as StatusDocument;
}

/** Streams a side holds: in its sessions' tables, and listed by /status (all, and on `route`). */
async function heldStreams(proxy: Proxy, route: string): Promise<{ table: number; listed: number; onRoute: number }> {
  const { sessions } = await status(proxy);
  const streams = sessions.flatMap((s) => s.streams);
  const table = sessions.reduce((n, s) => n + s.openStreams, 0);
  return { table, listed: streams.length, onRoute: streams.filter((s) => s.route === route).length };
}

test('50 clients killed mid-write and 50 `nbdinfo --list` early closes on a resumable session with --max-streams 4: no stream left on either side, then a mirror completes identical', { timeout: 240_000 }, async (t) => {
  const dir = await suite.caseDir('killed');
  // The killed writers write to a scratch export of their own, so the mirror's target stays the mirror's.
  const sourceData = join(dir, 'writer-data.img');
  await createTestImage(sourceData, 64 * MiB, 72);
  const scratch = await serveTestImage(dir, 'scratch', 'vm-scratch', 64 * MiB, 71);
  try {
    const scratchSocket = join(dir, 'vm-scratch.sock');
    const metrics = ['--metrics', '127.0.0.1:0'];
    const link = faultLink({
      destArgs: ['--max-streams', '4', ...metrics],
      sourceArgs: metrics,
      extraDestRoutes: { 'vm-scratch': scratch.nbdSocket },
      extraSourceRoutes: { 'vm-scratch': scratchSocket },
    });
    const rig = await startRig({ dir, pki: suite.pki, disks: [{ name: 'vm-life', size: 64 * MiB, seed: 73 }], connect: link.connect });
    try {
      const { source, dest } = link.tunnel();
      assert.equal((await source.waitForLog(byMsg('connected'))).resumable, true, 'the session is resumable');
      const random = mulberry32(9);
      const target = `nbd+unix:///vm-scratch?socket=${scratchSocket}`;
      for (let i = 0; i < 50; i++) {
        const writer = await spawnChild('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', sourceData, target]);
        await Promise.race([writer.exited, sleep(30 + random() * 600)]);
        await writer.stop('SIGKILL');
      }
      const listings: string[] = [];
      for (let i = 0; i < 50; i++) {
        const listed = await run('nbdinfo', ['--list', `nbd+unix:///?socket=${scratchSocket}`], { okCodes: [0, 1] });
        if (listed.code !== 0 || !listed.stdout.includes('vm-scratch')) listings.push(`run ${i}: exit ${listed.code}: ${listed.stderr.trim()}`);
      }
      assert.deepEqual(listings, [], 'every nbdinfo --list succeeded (none refused for --max-streams)');
      const lastClose = Date.now();
      // What is left is the rig's own NBD client connection (route vm-life), made before the clients.
      const onlyTheRig = { table: 1, listed: 1, onRoute: 0 };
      const sample = async () => ({ source: await heldStreams(source, 'vm-scratch'), dest: await heldStreams(dest, 'vm-scratch') });
      let held = await sample();
      for (let waited = 0; waited < 10_000 && JSON.stringify(held) !== JSON.stringify({ source: onlyTheRig, dest: onlyTheRig }); waited += 100) {
        await sleep(100);
        held = await sample();
      }
      t.diagnostic(`streams held after the clients: ${JSON.stringify(held)}`);
      assert.deepEqual(held, { source: onlyTheRig, dest: onlyTheRig });
      for (const proxy of [source, dest]) {
        const onScratch = (msg: string) => proxy.logs.filter((l) => l.msg === msg && l.route === 'vm-scratch').length;
        assert.equal(onScratch('stream closed'), onScratch('stream opened'), 'every stream opened was closed');
        assert.deepEqual(proxy.logs.filter((l) => l.msg === 'stream refused' || l.msg === 'stream refused by the destination'), []);
      }
      // A progress timer left running would log within its 10 s interval.
      await sleep(Math.max(0, lastClose + 10_500 - Date.now()));
      for (const proxy of [source, dest]) {
        const closedAt = new Map(proxy.logs.filter(byMsg('stream closed')).map((l) => [l.stream, Date.parse(l.time as string)]));
        const late = proxy.logs.filter((l) => l.msg === 'nbd progress' && Date.parse(l.time as string) > (closedAt.get(l.stream) ?? Infinity));
        assert.deepEqual(late, [], 'nbd progress logged for a closed stream');
      }
      await rig.mirrorAll();
      assertIdentical(await rig.verify());
      assert.equal(dest.logs.filter(byMsg('session opened')).length, 1, 'the same session carried everything');
    } finally {
      await rig.stop();
    }
  } finally {
    await scratch.daemon.stop();
  }
});

// A reader gone (EPIPE on every write) and a reader that stops reading (the pipe fills, 64 KiB).
for (const reader of ['gone', 'stopped'] as const) {
  test(`SIGTERM with stdout on a pipe whose reader has ${reader === 'gone' ? 'exited' : 'stopped reading'}: both commands exit within --drain-timeout + 2 s`, { timeout: 60_000 }, async (t) => {
    const dir = await suite.caseDir(`stdout-${reader}`);
    const { daemon, nbdSocket } = await serveTestImage(dir, 'dest', 'vm-out', 16 * MiB, 74);
    const env = { NBD_TUNNEL_DRAIN_TIMEOUT: '2' };
    try {
      const sourceSocket = join(dir, 'vm-out.sock');
      const tunnel = await startTunnel({ pki: suite.pki, destRoutes: { 'vm-out': nbdSocket }, sourceRoutes: { 'vm-out': sourceSocket }, destEnv: env, sourceEnv: env });
      try {
        const held = await NbdClient.connect(sourceSocket, 'vm-out'); // keeps both drains waiting their whole timeout
        await held.read(0, 4096);
        for (const proxy of [tunnel.source, tunnel.dest]) {
          const stdout = proxy.child.proc.stdout!;
          if (reader === 'gone') stdout.destroy();
          else stdout.pause().removeAllListeners('data'); // nothing reads: the pipe fills up
        }
        // About 1.5 KiB of log lines per connection on each side: far past a full pipe.
        const clients = (async () => {
          for (let i = 0; i < 150; i++) {
            const client = await NbdClient.connect(sourceSocket, 'vm-out');
            await client.read(i * 4096, 4096);
            await client.close();
          }
          return 'done';
        })();
        const logging = await Promise.race([clients, sleep(20_000, 'the proxies stopped serving while their stdout was not read')]);
        t.diagnostic(`150 connections with stdout's reader ${reader}: ${logging}`);
        const signalled = performance.now();
        const exits = [tunnel.source, tunnel.dest].map((proxy) =>
          Promise.race([
            once(proxy.child.proc, 'exit').then(([code]) => ({ code: code as number | null, ms: performance.now() - signalled })),
            sleep(10_000, null),
          ]),
        );
        tunnel.source.child.proc.kill('SIGTERM');
        tunnel.dest.child.proc.kill('SIGTERM');
        const [source, dest] = await Promise.all(exits);
        t.diagnostic(`source: ${JSON.stringify(source)}; dest: ${JSON.stringify(dest)}`);
        assert.equal(logging, 'done');
        for (const [side, exit] of [['source', source], ['dest', dest]] as const) {
          assert.notEqual(exit, null, `${side} still running 10 s after SIGTERM`);
          assert.equal(exit!.code, 0, `${side} exit status`);
          assert.ok(exit!.ms <= 4_000, `${side} exited ${exit!.ms.toFixed(0)} ms after SIGTERM, more than --drain-timeout 2 + 2 s`);
        }
        await held.close().catch(() => {});
      } finally {
        for (const proxy of [tunnel.source, tunnel.dest]) proxy.child.proc.stdout!.destroy(); // so stop() can see the exit
        await tunnel.stop();
      }
    } finally {
      await daemon.stop();
    }
  });
}

test('a source stopped with SIGTERM closes its session: the destination ends it within 1 s, never suspends it', { timeout: 60_000 }, async (t) => {
  const dir = await suite.caseDir('goaway');
  const { daemon, nbdSocket } = await serveTestImage(dir, 'dest', 'vm-bye', 16 * MiB, 75);
  try {
    const sourceSocket = join(dir, 'vm-bye.sock');
    const tunnel = await startTunnel({ pki: suite.pki, destRoutes: { 'vm-bye': nbdSocket }, sourceRoutes: { 'vm-bye': sourceSocket }, destArgs: ['--metrics', '127.0.0.1:0'] });
    try {
      assert.equal((await tunnel.source.waitForLog(byMsg('connected'))).resumable, true, 'the session is resumable');
      const client = await NbdClient.connect(sourceSocket, 'vm-bye');
      await client.read(0, 4096);
      await client.close();
      const signalled = Date.now();
      tunnel.source.child.proc.kill('SIGTERM');
      const closed = await tunnel.dest.waitForLog(byMsg('session closed'), 5_000);
      const afterMs = Date.parse(closed.time as string) - signalled;
      t.diagnostic(`destination: "session closed" ${afterMs} ms after the source's SIGTERM: ${String(closed.reason)}`);
      assert.ok(afterMs <= 1_000, `session closed ${afterMs} ms after SIGTERM`);
      assert.match(String(closed.reason), /^the source closed the session \(WebSocket closed \(code 1000: source shutting down\)\)$/);
      assert.deepEqual(tunnel.dest.logs.filter(byMsg('session suspended')), []);
      assert.deepEqual((await status(tunnel.dest)).sessions, [], 'no session kept on the destination');
      assert.equal((await tunnel.source.child.exited).code, 0);
    } finally {
      await tunnel.stop();
    }
  } finally {
    await daemon.stop();
  }
});
