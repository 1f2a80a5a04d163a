// `nbd-tunnel check`: the source's command line against a good destination (a real
// qemu-storage-daemon export, and a QEMU waiting with -incoming, behind it) and against every
// usual misconfiguration; the exact lines, the exit status, the first failure ending the check,
// and no connection at all reaching a destination socket.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { lstat, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import {
  CLI,
  cliEnv,
  makePki,
  makeTempDir,
  removeDir,
  run,
  serveTestImage,
  spawnChild,
  startCountingServer,
  startConnectProxy,
  startQmpChild,
  startProxy,
  type CountingServer,
  type LogLine,
  type Pki,
  type Proxy,
  type ServedImage,
} from '../harness/index.js';

const MiB = 1024 * 1024;
const DAY_MS = 24 * 60 * 60 * 1000;
const DEBUG = 20;
let dir: string;
let pki: Pki;
let disk: ServedImage;
let counted: CountingServer;
let dest: Proxy;
let port: number;

before(async () => {
  dir = await makeTempDir('nbdt-check-');
  pki = await makePki(join(dir, 'pki'));
  disk = await serveTestImage(dir, 'disk', 'disk0', 64 * MiB, 5);
  counted = await startCountingServer(join(dir, 'counted.sock'));
  await writeFile(join(dir, 'plain-file'), 'not a socket\n');
  // A socket file bound but never listened on, as a QEMU that died leaves behind.
  await run('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', join(dir, 'stale.sock')]);
  dest = await startProxy(
    [
      'dest', '--listen', '127.0.0.1:0',
      '--route', `disk0=${disk.nbdSocket}`,
      '--route', `counted=${join(dir, 'counted.sock')}`,
      '--route', `missing=${join(dir, 'missing.sock')}`,
      '--route', `plain=${join(dir, 'plain-file')}`,
      '--route', `stale=${join(dir, 'stale.sock')}`,
      '--route', `ram=${join(dir, 'incoming.sock')}`,
      '--route', `forbidden=${join(dir, 'counted.sock')}`,
      '--allow', 'disk0=hv1.example.org', '--allow', 'counted=hv1.example.org', '--allow', 'missing=hv1.example.org',
      '--allow', 'plain=hv1.example.org', '--allow', 'stale=hv1.example.org', '--allow', 'ram=hv1.example.org',
      '--allow', 'forbidden=hv9.example.org',
      '--cert', pki.serverCert, '--key', pki.serverKey, '--ca', pki.caCert,
      '--log-level', 'debug',
    ],
    'listening',
  );
  port = Number(dest.logs.find((l) => l.msg === 'listening')!.port);
});

after(async () => {
  await dest?.stop();
  await counted?.close();
  await disk?.daemon.stop();
  await removeDir(dir);
});

/** Runs `nbd-tunnel check` to its exit (this machine's proxy settings left out). */
async function check(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = await spawnChild(process.execPath, [CLI, 'check', ...args], { env: cliEnv() });
  const { code } = await child.exited;
  return { code, stdout: child.stdout, stderr: child.stderr };
}

/** The source's own flags for these routes: what `source` would be started with. */
function sourceArgs(routes: string[], tls = { cert: pki.clientCert, key: pki.clientKey, ca: pki.caCert }, connect = `wss://localhost:${port}`): string[] {
  return [
    '--connect', connect,
    ...routes.flatMap((route) => ['--route', `${route}=${join(dir, `src-${route}.sock`)}`]),
    '--cert', tls.cert, '--key', tls.key, '--ca', tls.ca,
  ];
}

/** The TLS line for the destination's certificate, written out here from the certificate's own fields. */
async function tlsLine(where: string): Promise<string> {
  const certificate = new X509Certificate(await readFile(pki.serverCert));
  const until = new Date(certificate.validTo);
  const daysLeft = Math.floor((until.getTime() - Date.now()) / DAY_MS);
  const date = `${until.toISOString().slice(0, 10)} ${until.toISOString().slice(11, 16)} UTC`;
  return `ok    TLS 1.3 to ${where}: destination certificate CN=localhost (DNS:localhost, IP Address:127.0.0.1), issued by CN=nbd-tunnel test ca, valid until ${date} (${daysLeft} days left)`;
}

const UPGRADE_LINE = 'ok    WebSocket upgrade (nbd-tunnel.v1): client certificate CN=hv1.example.org accepted';

const probed = (route: string) => (l: LogLine) => l.msg === 'route probed' && l.route === route;

test('a good destination: every step ok, exit 0; the sockets see no connection at all', async () => {
  const { code, stdout, stderr } = await check(sourceArgs(['disk0', 'counted']));
  assert.equal(stderr, '');
  assert.equal(
    stdout,
    [
      await tlsLine(`localhost:${port}`),
      UPGRADE_LINE,
      `ok    route disk0: known, allowed for hv1.example.org, socket ${disk.nbdSocket} listening`,
      `ok    route counted: known, allowed for hv1.example.org, socket ${join(dir, 'counted.sock')} listening`,
      '',
    ].join('\n'),
  );
  assert.equal(code, 0);
  assert.equal(counted.accepts, 0, 'the destination looked at the socket without connecting');
  // The probes are logged at debug, naming the socket; nothing was opened or refused.
  for (const route of ['disk0', 'counted']) {
    const line = await dest.waitForLog(probed(route));
    assert.equal(line.level, DEBUG);
    assert.equal(line.socket, route === 'disk0' ? disk.nbdSocket : join(dir, 'counted.sock'));
  }
  assert.equal(dest.logs.filter((l) => l.msg === 'stream opened' || l.msg === 'stream refused').length, 0);
  // check listens on nothing: the source's sockets were never made.
  await assert.rejects(lstat(join(dir, 'src-disk0.sock')), { code: 'ENOENT' });
  // qemu-storage-daemon saw nothing (no failed negotiation logged) and serves the export as before.
  const info = JSON.parse((await run('qemu-img', ['info', '--output=json', `nbd+unix:///disk0?socket=${disk.nbdSocket}`])).stdout) as { 'virtual-size': number };
  assert.equal(info['virtual-size'], 64 * MiB);
  assert.equal(disk.daemon.child.stderr, '');
  // The check's session ended as a source's does at shutdown.
  await dest.waitForLog((l) => l.msg === 'session closed' && /the source closed the session/.test(String(l.reason)));
});

test('an unknown route: FAIL saying what to add where, exit 1, and the routes after it are not probed', async () => {
  const acceptsBefore = counted.accepts;
  const { code, stdout } = await check(sourceArgs(['disk0', 'vm9-vda', 'counted']));
  assert.deepEqual(stdout.split('\n').slice(1), [
    UPGRADE_LINE,
    `ok    route disk0: known, allowed for hv1.example.org, socket ${disk.nbdSocket} listening`,
    "FAIL  route vm9-vda: route 'vm9-vda' is not configured on the destination; add it on the destination (--route vm9-vda=SOCKET, or a socket vm9-vda.sock in its --route-dir) or correct the name here",
    '',
  ]);
  assert.equal(code, 1);
  assert.equal(counted.accepts, acceptsBefore, "'counted', after the failure, was not probed");
  const line = await dest.waitForLog(probed('vm9-vda'));
  assert.deepEqual([line.level, line.code], [DEBUG, 'unknown-route']);
});

test('a route this client may not use (--allow): FAIL naming the rule to add; the socket is not touched', async () => {
  const acceptsBefore = counted.accepts;
  const { code, stdout } = await check(sourceArgs(['forbidden']));
  assert.equal(
    stdout.split('\n')[2],
    "FAIL  route forbidden: client 'hv1.example.org' is not allowed to use route 'forbidden'; on the destination, add --allow 'forbidden=hv1.example.org' or a rule whose pattern covers the route",
  );
  assert.equal(code, 1);
  assert.equal(counted.accepts, acceptsBefore);
  const line = await dest.waitForLog(probed('forbidden'));
  assert.deepEqual([line.level, line.code], [DEBUG, 'not-allowed']);
});

test('a route whose socket is missing, not a socket, or not listened on: FAIL naming the path and errno', async () => {
  const cases: Array<[string, string]> = [
    ['missing', `destination socket ${join(dir, 'missing.sock')} does not exist (is the QEMU NBD server started?): ENOENT`],
    ['plain', `destination socket ${join(dir, 'plain-file')} is not a socket (check the destination's route for it): ENOTSOCK`],
    ['stale', `destination socket ${join(dir, 'stale.sock')} has no process listening on it (a stale socket file: is the QEMU NBD server started?): ECONNREFUSED`],
  ];
  for (const [route, reason] of cases) {
    const { code, stdout } = await check(sourceArgs([route]));
    assert.equal(stdout.split('\n')[2], `FAIL  route ${route}: ${reason}`);
    assert.equal(code, 1);
    const line = await dest.waitForLog(probed(route));
    assert.deepEqual([line.level, line.code, line.reason], [DEBUG, 'connect-failed', reason]);
  }
});

test('a QEMU waiting with -incoming unix: probed and still waiting (a connection would have ended its migration)', async () => {
  const qmpSocket = join(dir, 'incoming-qmp.sock');
  const incoming = join(dir, 'incoming.sock');
  const qemu = await startQmpChild(
    'qemu-system-x86_64',
    ['-nodefaults', '-no-user-config', '-display', 'none', '-machine', 'none', '-qmp', `unix:${qmpSocket},server=on,wait=off`, '-incoming', `unix:${incoming}`],
    qmpSocket,
    'incoming',
  );
  try {
    const { code, stdout } = await check(sourceArgs(['ram']));
    assert.equal(stdout.split('\n')[2], `ok    route ram: known, allowed for hv1.example.org, socket ${incoming} listening`);
    assert.equal(code, 0);
    const status = (await qemu.qmp.execute('query-status')) as { status: string };
    assert.equal(status.status, 'inmigrate');
    assert.equal(qemu.child.stderr, '');
  } finally {
    await qemu.child.stop();
    await qemu.qmp.close();
  }
});

test('a --ca that does not sign the destination: one FAIL line at TLS, exit 1', async () => {
  const { code, stdout } = await check(sourceArgs(['disk0'], { cert: pki.clientCert, key: pki.clientKey, ca: pki.foreignCaCert }));
  assert.equal(stdout, `FAIL  TLS to localhost:${port}: the destination certificate chain is not trusted by --ca (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain)\n`);
  assert.equal(code, 1);
});

test('a client certificate the destination does not trust: TLS ok, the upgrade FAILs with its HTTP 401', async () => {
  const { code, stdout } = await check(sourceArgs(['disk0'], { cert: pki.foreignClientCert, key: pki.foreignClientKey, ca: pki.caCert }));
  assert.deepEqual(stdout.split('\n'), [
    await tlsLine(`localhost:${port}`),
    "FAIL  WebSocket upgrade (nbd-tunnel.v1): destination refused the tunnel: HTTP 401: nbd-tunnel: client certificate is not signed by the destination's --ca (UNABLE_TO_VERIFY_LEAF_SIGNATURE)",
    '',
  ]);
  assert.equal(code, 1);
});

test('nothing listening at --connect: one FAIL line at connect, exit 1', async () => {
  // A port that was free a moment ago.
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const freePort = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  const { code, stdout } = await check(sourceArgs(['disk0'], undefined, `wss://127.0.0.1:${freePort}`));
  assert.equal(stdout, `FAIL  connect to 127.0.0.1:${freePort}: nothing listens at the destination address (ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:${freePort})\n`);
  assert.equal(code, 1);
});

test('the source\'s --config file works as it is; bad flags exit 2 with one line', async () => {
  const config = join(dir, 'source.json');
  await writeFile(
    config,
    JSON.stringify({ connect: `wss://localhost:${port}`, route: { disk0: join(dir, 'src-disk0.sock') }, cert: pki.clientCert, key: pki.clientKey, ca: pki.caCert }),
  );
  const good = await check(['--config', config]);
  assert.equal(good.stdout.split('\n')[2], `ok    route disk0: known, allowed for hv1.example.org, socket ${disk.nbdSocket} listening`);
  assert.equal(good.code, 0);
  const noConnect = await check(['--route', `disk0=${join(dir, 'src-disk0.sock')}`, '--cert', pki.clientCert, '--key', pki.clientKey, '--ca', pki.caCert]);
  assert.deepEqual([noConnect.code, noConnect.stdout, noConnect.stderr], [2, '', "nbd-tunnel: error: required option '--connect <URL>' not specified (or give it in --config)\n"]);
  const noRoute = await check(['--connect', `wss://localhost:${port}`, '--cert', pki.clientCert, '--key', pki.clientKey, '--ca', pki.caCert]);
  assert.deepEqual([noRoute.code, noRoute.stdout], [2, '']);
  assert.match(noRoute.stderr, /^nbd-tunnel: error: --route: give at least one, as NAME=SOCKET, or --route-dir DIR or --control SOCKET\n$/);
});

test('through an HTTP CONNECT proxy (--proxy): the TLS line names it, exit 0; a proxy that refuses is the step that fails', async () => {
  const proxy = await startConnectProxy();
  const refusing = await startConnectProxy({ refuse: true });
  try {
    const good = await check([...sourceArgs(['disk0']), '--proxy', proxy.url]);
    assert.equal(
      good.stdout,
      [
        `${await tlsLine(`localhost:${port}`)} through the proxy ${proxy.url} (--proxy)`,
        UPGRADE_LINE,
        `ok    route disk0: known, allowed for hv1.example.org, socket ${disk.nbdSocket} listening`,
        '',
      ].join('\n'),
    );
    assert.equal(good.code, 0);
    assert.deepEqual(proxy.tunnels, [`localhost:${port}`], 'one CONNECT, to the destination');
    const refused = await check([...sourceArgs(['disk0']), '--proxy', refusing.url]);
    assert.equal(
      refused.stdout,
      `FAIL  connect to localhost:${port} through the proxy ${refusing.url} (--proxy): the proxy refused CONNECT to localhost:${port}: 403 Forbidden (--proxy ${refusing.url})\n`,
    );
    assert.equal(refused.code, 1);
  } finally {
    await proxy.close();
    await refusing.close();
  }
});
