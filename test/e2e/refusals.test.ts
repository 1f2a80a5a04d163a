// Bad input at the tunnel's edges: each refusal is logged with a message that says what to fix,
// nothing reaches the destination socket, and a real mirror running meanwhile is unaffected.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { once } from 'node:events';
import { WebSocket } from 'ws';
import {
  makePki,
  makeTempDir,
  removeDir,
  run,
  startCountingServer,
  startProxy,
  startRig,
  type CountingServer,
  type LogLine,
  type Pki,
  type Proxy,
  type Rig,
} from '../harness/index.js';

const MiB = 1024 * 1024;
const TOKEN = 'correct horse battery staple';
let dir: string;
let pki: Pki;
let rig: Rig;
let counted: CountingServer;
let tokenFile: string;

before(async () => {
  dir = await makeTempDir('nbdt-refuse-');
  pki = await makePki(join(dir, 'pki'));
  tokenFile = join(dir, 'token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const countedSocket = join(dir, 'counted.sock');
  counted = await startCountingServer(countedSocket);
  // The destination knows the legitimate disk, a counted socket and a socket nobody listens on.
  rig = await startRig({
    dir,
    pki,
    disks: [{ name: 'good', size: 256 * MiB, seed: 7 }],
    destArgs: [
      '--route', `counted=${countedSocket}`,
      '--route', `missing=${join(dir, 'missing.sock')}`,
      '--route', `forbidden=${countedSocket}`,
      '--token-file', tokenFile,
      // hv1.example.org may use every route but 'forbidden'; the wildcard covers the disk.
      '--allow', 'good=*.example.org',
      '--allow', 'counted=hv1.example.org,hv2.example.org',
      '--allow', 'missing=hv1.example.org',
      '--allow', 'forbidden=hv9.example.org',
    ],
    sourceArgs: [
      '--route', `counted=${join(dir, 'src-counted.sock')}`,
      '--route', `missing=${join(dir, 'src-missing.sock')}`,
      '--route', `unknown=${join(dir, 'src-unknown.sock')}`,
      '--route', `forbidden=${join(dir, 'src-forbidden.sock')}`,
      '--token-file', tokenFile,
    ],
  });
  // A real migration is under way (mirroring, then READY and kept in sync) during every refusal below.
  await rig.startMirrors();
});

after(async () => {
  await rig?.stop();
  await counted?.close();
  await removeDir(dir);
});

/** Connects like QEMU would and resolves once the proxy closes the connection. */
async function connectAndExpectClose(path: string): Promise<void> {
  const socket: Socket = connect(path);
  socket.on('error', () => {});
  socket.resume();
  await once(socket, 'close');
}

function byMsg(msg: string) {
  return (l: LogLine) => l.msg === msg;
}

/** A second source with the given flags; the caller stops it. */
function badSource(name: string, args: string[]): Promise<Proxy> {
  return startProxy(
    ['source', '--connect', `wss://localhost:${rig.tunnel!.port}`, '--route', `counted=${join(dir, `${name}.sock`)}`, '--ca', pki.caCert, ...args],
    'ready',
  );
}

test('unknown route: refused with the destination\'s message, nothing connected', async () => {
  await connectAndExpectClose(join(dir, 'src-unknown.sock'));
  const line = await rig.tunnel!.source.waitForLog((l) => l.msg === 'stream refused by the destination' && l.route === 'unknown');
  assert.equal(line.reason, "route 'unknown' is not configured on the destination");
  assert.equal(line.code, 'unknown-route');
  await rig.tunnel!.dest.waitForLog((l) => l.msg === 'stream refused' && l.route === 'unknown');
});

test('a route the client is not allowed to use: refused with the client\'s name, nothing connected', async () => {
  await connectAndExpectClose(join(dir, 'src-forbidden.sock'));
  const line = await rig.tunnel!.source.waitForLog((l) => l.msg === 'stream refused by the destination' && l.route === 'forbidden');
  assert.equal(line.reason, "client 'hv1.example.org' is not allowed to use route 'forbidden'");
  assert.equal(line.code, 'not-allowed');
  const destLine = await rig.tunnel!.dest.waitForLog((l) => l.msg === 'stream refused' && l.route === 'forbidden');
  assert.equal(destLine.reason, "client 'hv1.example.org' is not allowed to use route 'forbidden'");
});

test('destination socket missing: refused naming the path and errno', async () => {
  await connectAndExpectClose(join(dir, 'src-missing.sock'));
  const line = await rig.tunnel!.source.waitForLog((l) => l.msg === 'stream refused by the destination' && l.route === 'missing');
  assert.equal(line.reason, `destination socket ${join(dir, 'missing.sock')} does not exist (is the QEMU NBD server started?): ENOENT`);
});

test('destination socket refusing connections: ECONNREFUSED in the message', async () => {
  // A socket file bound but never listened on: connecting to it is refused.
  const stale = join(dir, 'stale.sock');
  await run('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
  const dest = await startProxy(
    ['dest', '--listen', '127.0.0.1:0', '--route', `stale=${stale}`, '--cert', pki.serverCert, '--key', pki.serverKey, '--ca', pki.caCert],
    'listening',
  );
  const port = Number((await dest.waitForLog(byMsg('listening'))).port);
  const source = await startProxy(
    ['source', '--connect', `wss://localhost:${port}`, '--route', `stale=${join(dir, 'src-stale.sock')}`, '--ca', pki.caCert, '--cert', pki.clientCert, '--key', pki.clientKey],
    'ready',
  );
  try {
    await connectAndExpectClose(join(dir, 'src-stale.sock'));
    const line = await source.waitForLog(byMsg('stream refused by the destination'));
    assert.equal(line.reason, `destination socket ${stale} refused the connection: ECONNREFUSED`);
  } finally {
    await Promise.all([source.stop(), dest.stop()]);
  }
});

test('client without a certificate: HTTP 401 naming the missing certificate', async () => {
  const ws = new WebSocket(`wss://localhost:${rig.tunnel!.port}`, ['nbd-tunnel.v1'], { ca: await readFile(pki.caCert) });
  ws.on('error', () => {}); // terminate() below aborts the handshake on purpose
  const [, response] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  assert.equal(response.statusCode, 401);
  ws.terminate();
  const line = await rig.tunnel!.dest.waitForLog((l) => l.msg === 'connection refused' && /no client certificate/.test(String(l.reason)));
  assert.equal(line.status, 401);
});

test('expired client certificate: HTTP 401 with the certificate\'s dates', async () => {
  const [ca, cert, key] = await Promise.all([pki.caCert, pki.expiredClientCert, pki.expiredClientKey].map((p) => readFile(p)));
  const ws = new WebSocket(`wss://localhost:${rig.tunnel!.port}`, ['nbd-tunnel.v1'], { ca, cert, key });
  ws.on('error', () => {}); // terminate() below aborts the handshake on purpose
  const [, response] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  assert.equal(response.statusCode, 401);
  ws.terminate();
  const line = await rig.tunnel!.dest.waitForLog((l) => l.msg === 'connection refused' && /expired/.test(String(l.reason)));
  assert.match(String(line.reason), /client certificate has expired \(CERT_HAS_EXPIRED\); valid from .* to .*/);
});

test('client certificate from another CA: refused, the source logs why', async () => {
  const source = await badSource('foreign', ['--cert', pki.foreignClientCert, '--key', pki.foreignClientKey, '--token-file', tokenFile]);
  try {
    await connectAndExpectClose(join(dir, 'foreign.sock'));
    const line = await source.waitForLog(byMsg('connect failed'));
    assert.match(String(line.reason), /HTTP 401: nbd-tunnel: client certificate is not signed by the destination's --ca/);
    await rig.tunnel!.dest.waitForLog((l) => l.msg === 'connection refused' && /not signed by the destination's --ca/.test(String(l.reason)));
    await source.waitForLog((l) => l.msg === 'stream refused: no tunnel to the destination');
  } finally {
    await source.stop();
  }
});

test('a server certificate used as the client certificate: refused, naming the missing clientAuth usage', async () => {
  const source = await badSource('server-as-client', ['--cert', pki.serverCert, '--key', pki.serverKey, '--token-file', tokenFile]);
  try {
    await connectAndExpectClose(join(dir, 'server-as-client.sock'));
    const line = await source.waitForLog(byMsg('connect failed'));
    assert.match(String(line.reason), /HTTP 401: nbd-tunnel: client certificate lacks the clientAuth extended key usage \(a server certificate\?\): use a certificate made for clients \(INVALID_PURPOSE\)/);
  } finally {
    await source.stop();
  }
});

test('server name mismatch: the source refuses the destination\'s certificate', async () => {
  const source = await badSource('misnamed', ['--cert', pki.clientCert, '--key', pki.clientKey, '--servername', 'other.example.org', '--token-file', tokenFile]);
  try {
    await connectAndExpectClose(join(dir, 'misnamed.sock'));
    const line = await source.waitForLog(byMsg('connect failed'));
    assert.match(String(line.reason), /the destination certificate names DNS:localhost.*, not 'other\.example\.org': connect by one of those names \(--connect\) or set --servername \(ERR_TLS_CERT_ALTNAME_INVALID\)$/);
  } finally {
    await source.stop();
  }
});

test('wrong token: HTTP 403, the token is never logged', async () => {
  const wrong = join(dir, 'wrong-token');
  await writeFile(wrong, 'not the token\n', { mode: 0o600 });
  const source = await badSource('badtoken', ['--cert', pki.clientCert, '--key', pki.clientKey, '--token-file', wrong]);
  try {
    await connectAndExpectClose(join(dir, 'badtoken.sock'));
    const line = await source.waitForLog(byMsg('connect failed'));
    assert.match(String(line.reason), /HTTP 403: nbd-tunnel: client 'hv1.example.org' presented a wrong or missing token/);
    const all = JSON.stringify([...rig.tunnel!.dest.logs, ...source.logs]);
    assert.ok(!all.includes(TOKEN) && !all.includes('not the token'), 'a token appears in the logs');
  } finally {
    await source.stop();
  }
});

test('malformed frames from an authenticated peer: that session is closed with the reason, others go on', async () => {
  const [ca, cert, key] = await Promise.all([pki.caCert, pki.clientCert, pki.clientKey].map((p) => readFile(p)));
  const ws = new WebSocket(`wss://localhost:${rig.tunnel!.port}`, ['nbd-tunnel.v1'], {
    ca,
    cert,
    key,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  await once(ws, 'open');
  const closed = once(ws, 'close');
  ws.send(Buffer.from([1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])); // yamux version 1 does not exist
  const [code] = (await closed) as [number];
  assert.equal(code, 1002, 'closed as a protocol error');
  const line = await rig.tunnel!.dest.waitForLog((l) => l.msg === 'session closed' && /protocol violation/.test(String(l.reason)));
  assert.match(String(line.reason), /unsupported yamux version 1/);
  assert.equal(line.level, 40);
});

test('after all refusals: nothing reached the counted socket, the mirror completed identical', async () => {
  await rig.waitReady();
  await rig.completeMirrors();
  assert.equal(counted.accepts, 0);
  for (const r of await rig.verify()) assert.ok(r.identical, `${r.name}: ${r.output}`);
  const sessionLost = rig.tunnel!.source.logs.find((l) => l.msg === 'session lost');
  assert.equal(sessionLost, undefined, 'the good session was never lost');
});
