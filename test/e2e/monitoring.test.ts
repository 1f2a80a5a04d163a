// What a monitoring system scrapes: /healthz that says why when it is not 200, the process's own
// metrics, the tunnel connections the destination refused, by HTTP status, and, with workers,
// the primary's merged view of them all.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, fetchFromMetrics, run, startCountingServer, startProxy, startTunnel, until, type Proxy } from '../harness/index.js';
import { suiteFolder } from '../harness/suite.js';

const suite = suiteFolder('nbdt-monitoring-');

async function get(proxy: Proxy, path: string): Promise<{ status: number; text: string }> {
  const response = await fetchFromMetrics(proxy, path);
  return { status: response.status, text: await response.text() };
}

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => probe.once('listening', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

test('/healthz: 503 with the reason while the source has no tunnel, 200 once it has; process metrics; refused connections by status', { timeout: 60_000 }, async () => {
  const dir = await suite.caseDir('health');
  const { pki } = suite;
  const token = join(dir, 'token');
  await writeFile(token, 'sesame\n', { mode: 0o600 });
  const port = await freePort();
  const metrics = ['--metrics', '127.0.0.1:0'];
  const sourceArgs = ['source', '--connect', `wss://localhost:${port}`, '--cert', pki.clientCert, '--key', pki.clientKey, '--ca', pki.caCert, ...metrics];
  const source = await startProxy([...sourceArgs, '--route', `a=${join(dir, 'a.sock')}`, '--token-file', token], 'ready');
  let dest: Proxy | null = null;
  let stranger: Proxy | null = null;
  try {
    await source.waitForLog((l) => l.msg === 'connect failed');
    const down = await get(source, '/healthz');
    assert.equal(down.status, 503);
    assert.match(down.text, /^no tunnel to the destination: cannot connect to wss:\/\/localhost:\d+\/: nothing listens at the destination address \(ECONNREFUSED/);
    dest = await startProxy(['dest', '--listen', `127.0.0.1:${port}`, '--route', `a=${join(dir, 'target.sock')}`, '--cert', pki.serverCert, '--key', pki.serverKey, '--ca', pki.caCert, '--token-file', token, ...metrics], 'listening');
    await source.waitForLog((l) => l.msg === 'connected', 10_000);
    assert.deepEqual(await get(source, '/healthz'), { status: 200, text: 'ok\n' });
    assert.deepEqual(await get(dest, '/healthz'), { status: 200, text: 'ok\n' });
    // A source without the token is refused (403: a known client with a wrong or missing token), and counted.
    stranger = await startProxy([...sourceArgs, '--route', `b=${join(dir, 'b.sock')}`], 'ready');
    await stranger.waitForLog((l) => l.msg === 'connect failed');
    const scraped = (await get(dest, '/metrics')).text;
    assert.match(scraped, /^nbd_tunnel_connections_refused_total\{status="403"\} [1-9]\d*$/m);
    assert.match(scraped, /^nbd_tunnel_process_cpu_user_seconds_total \d/m);
    assert.match(scraped, /^nbd_tunnel_process_open_fds \d+$/m);
    assert.match(scraped, /^nbd_tunnel_nodejs_heap_size_used_bytes \d+$/m);
  } finally {
    await stranger?.stop();
    await source.stop();
    await dest?.stop();
  }
});

test('certificate expiry: a gauge for this side\'s certificate and its CA, and a warning at start when under 30 days', { timeout: 60_000 }, async () => {
  const dir = await suite.caseDir('expiry');
  const { pki } = suite;
  const dest = await startProxy(
    ['dest', '--listen', '127.0.0.1:0', '--route', `a=${join(dir, 'a.sock')}`, '--cert', pki.expiringServerCert, '--key', pki.expiringServerKey, '--ca', pki.caCert, '--metrics', '127.0.0.1:0'],
    'listening',
  );
  try {
    const warning = await dest.waitForLog((l) => l.msg === "this side's certificate (--cert) expires in less than 30 days: renew it and send SIGHUP");
    assert.equal(warning.which, 'own');
    assert.ok(warning.daysLeft === 9 || warning.daysLeft === 10, `daysLeft ${String(warning.daysLeft)}`);
    assert.equal(dest.logs.filter((l) => String(l.msg).includes('expires in less than')).length, 1, 'the CA, valid for years, is not warned about');
    const scraped = (await get(dest, '/metrics')).text;
    const own = Number(/^nbd_tunnel_certificate_expiry_seconds\{which="own"\} (\d+)$/m.exec(scraped)?.[1]);
    const ca = Number(/^nbd_tunnel_certificate_expiry_seconds\{which="ca"\} (\d+)$/m.exec(scraped)?.[1]);
    assert.ok(own > 9 * 86_400 && own <= 10 * 86_400, `own: ${own} s`);
    assert.ok(ca > 300 * 86_400, `ca: ${ca} s`);
  } finally {
    await dest.stop();
  }
});

interface WorkersStatus {
  pid: number;
  workers: Array<{ worker: string; pid: number; ok: boolean; reason?: string }>;
  sessions: Array<{ worker: string; id: number; streams: Array<{ worker: string; route: string; bytesToDest: number }> }>;
}

async function statusOf(proxy: Proxy): Promise<WorkersStatus> {
  return (await fetchFromMetrics(proxy, '/status')).json() as Promise<WorkersStatus>;
}

/** The value of one sample line of a scrape, e.g. `nbd_tunnel_bytes_total{route="a",direction="to_dest"}`. */
function sample(scraped: string, series: string): number | null {
  const line = scraped.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

test('--workers 2 / --connections 2: one --metrics port per side, sums over the workers, /status from both, /healthz names a stuck or dead worker', { timeout: 90_000 }, async () => {
  const dir = await suite.caseDir('workers');
  const reply = Buffer.alloc(1000, 0x72);
  let received = 0;
  const target = await startCountingServer(join(dir, 'target.sock'), (socket) => {
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.write(reply);
  });
  const metrics = ['--metrics', '127.0.0.1:0'];
  const tunnel = await startTunnel({
    pki: suite.pki,
    destRoutes: { a: join(dir, 'target.sock') },
    sourceRoutes: { a: join(dir, 'a.sock') },
    destArgs: ['--workers', '2', ...metrics],
    sourceArgs: ['--connections', '2', ...metrics],
  });
  const clients: Socket[] = [];
  let stopped: number | null = null;
  try {
    const { source, dest } = tunnel;
    // Every source worker has its session once the merged /healthz is 200.
    await until('source /healthz 200', async () => ((await get(source, '/healthz')).status === 200 ? true : null));
    const sizes = [100_000, 300_000];
    for (const size of sizes) {
      const client = connect(join(dir, 'a.sock'));
      clients.push(client);
      client.write(Buffer.alloc(size, 0x77));
    }
    const sent = sizes.reduce((a, b) => a + b, 0);
    await until(`${sent} bytes at the target`, async () => (received === sent ? true : null));

    for (const proxy of [source, dest]) {
      const status = await statusOf(proxy);
      const role = proxy === source ? 'source' : 'dest';
      assert.deepEqual(status.workers.map((w) => w.ok), [true, true], `${role}: ${JSON.stringify(status.workers)}`);
      const streams = status.sessions.flatMap((s) => s.streams);
      assert.equal(streams.length, 2, `${role}: ${JSON.stringify(status)}`);
      assert.deepEqual(new Set(streams.map((s) => s.worker)), new Set(status.workers.map((w) => w.worker)), `${role}: a stream on each worker`);
      const scraped = (await get(proxy, '/metrics')).text;
      assert.equal(sample(scraped, 'nbd_tunnel_streams_active{route="a"}'), 2, `${role} streams_active`);
      assert.equal(sample(scraped, 'nbd_tunnel_sessions_active'), 2, `${role} sessions_active`);
      for (const w of status.workers) {
        assert.equal(sample(scraped, `nbd_tunnel_worker_up{worker="${w.worker}"}`), 1, `${role} ${w.worker} up`);
        assert.ok((sample(scraped, `nbd_tunnel_process_open_fds{worker="${w.worker}"}`) ?? 0) > 0, `${role} ${w.worker}'s own descriptors`);
      }
      assert.ok((sample(scraped, 'nbd_tunnel_process_open_fds{worker="primary"}') ?? 0) > 0, `${role}: the primary's own descriptors`);
      // Not summed: one build, and the CA's expiry as each process reads it (valid 3650 days).
      assert.deepEqual(scraped.split('\n').filter((l) => l.startsWith('nbd_tunnel_build_info')).map((l) => l.split(' ')[1]), ['1']);
      const caSeconds = sample(scraped, 'nbd_tunnel_certificate_expiry_seconds{which="ca"}') ?? 0;
      assert.ok(caSeconds > 3640 * 86_400 && caSeconds <= 3650 * 86_400, `${role} CA expiry: ${caSeconds} s`);
    }
    const table = await run(process.execPath, [CLI, 'status', String(dest.logs.find((l) => l.msg === 'listening')?.metrics), '--once']);
    assert.match(table.stdout, /^nbd-tunnel dest \(pid \d+, 2 workers\): 2 session\(s\)\n/);
    assert.equal(table.stdout.split('\n').filter((l) => /^w\d+\/1 +1 +a /.test(l)).length, 2, table.stdout);

    // Both streams end: each side's byte counters are the sum over its workers, exactly.
    const answers = clients.map(async (client) => {
      let bytes = 0;
      client.on('data', (chunk: Buffer) => (bytes += chunk.length));
      client.end();
      await once(client, 'close');
      return bytes;
    });
    assert.deepEqual(await Promise.all(answers), [reply.length, reply.length]);
    const openRequest = 4 + JSON.stringify({ route: 'a' }).length;
    const openReply = 4 + JSON.stringify({ ok: true }).length;
    const expected = { to_dest: sent + 2 * openRequest, to_source: 2 * (reply.length + openReply) };
    for (const proxy of [source, dest]) {
      const totals = await until(`${proxy === source ? 'source' : 'dest'} byte totals ${JSON.stringify(expected)}`, async () => {
        const scraped = (await get(proxy, '/metrics')).text;
        const seen = { to_dest: sample(scraped, 'nbd_tunnel_bytes_total{route="a",direction="to_dest"}'), to_source: sample(scraped, 'nbd_tunnel_bytes_total{route="a",direction="to_source"}') };
        return seen.to_dest === expected.to_dest && seen.to_source === expected.to_source ? seen : null;
      });
      assert.deepEqual(totals, expected);
    }

    // A worker that does not answer (stopped) is named within the 1 s bound; the request does not hang.
    const [first] = (await statusOf(dest)).workers;
    process.kill(first.pid, 'SIGSTOP');
    stopped = first.pid;
    const askedAt = Date.now();
    assert.deepEqual(await get(dest, '/healthz'), { status: 503, text: `worker ${first.worker} (pid ${first.pid}): did not answer within 1 s\n` });
    assert.ok(Date.now() - askedAt < 2_000, `/healthz took ${Date.now() - askedAt} ms`);
    assert.equal(sample((await get(dest, '/metrics')).text, `nbd_tunnel_worker_up{worker="${first.worker}"}`), 0);
    process.kill(first.pid, 'SIGCONT');
    stopped = null;
    assert.deepEqual(await get(dest, '/healthz'), { status: 200, text: 'ok\n' });

    // A worker killed: named until the supervisor's replacement serves, then 200 again.
    process.kill(first.pid, 'SIGKILL');
    const down = await until('/healthz 503 after the kill', async () => {
      const health = await get(dest, '/healthz');
      return health.status === 503 ? health.text : null;
    });
    assert.equal(down, `worker ${first.worker} (pid ${first.pid}): exited (signal SIGKILL), to be restarted\n`);
    await until('/healthz 200 after the restart', async () => ((await get(dest, '/healthz')).status === 200 ? true : null));
    const after = await statusOf(dest);
    assert.equal(after.workers.length, 2);
    assert.ok(!after.workers.some((w) => w.pid === first.pid), `the killed worker is gone: ${JSON.stringify(after.workers)}`);
    assert.ok(after.workers.every((w) => w.ok));
  } finally {
    if (stopped !== null) process.kill(stopped, 'SIGCONT');
    for (const client of clients) client.destroy();
    await tunnel.stop();
    await target.close();
  }
});
