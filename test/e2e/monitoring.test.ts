// What a monitoring system scrapes: /healthz that says why when it is not 200, the process's own
// metrics, and the tunnel connections the destination refused, by HTTP status.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { fetchFromMetrics, startProxy, type Proxy } from '../harness/index.js';
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
