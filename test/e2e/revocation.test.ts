// --crl: a peer whose certificate its CA revoked is refused on either side, with the serial, the
// file and the revocation date in the message; certificates it does not revoke go on as before;
// a CRL that does not check out stops the start (exit 2); SIGHUP reads it again.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CLI,
  revoke,
  run,
  serveTestImage,
  startProxy,
  writeCrl,
  type LogLine,
  type Proxy,
  type ServedImage,
  type TunnelOptions,
} from '../harness/index.js';
import { assertClosedAtOnce, assertReadsImage, suiteFolder, withCaseTunnel, type CaseTunnel } from '../harness/suite.js';

const MiB = 1024 * 1024;
const ROUTE = 'vm-crl';
const suite = suiteFolder('nbdt-crl-');
const byMsg = (msg: string) => (line: LogLine) => line.msg === msg;

/** CRLs of the CA: before any revocation, revoking the client certificate, and the server's as well. */
let crls: { none: string; client: string; both: string; foreign: string };
let serials: { client: string; server: string };
let served: ServedImage;

before(async () => {
  await suite.ready();
  const { dir, pki } = suite;
  const none = await writeCrl(pki.ca, join(dir, 'none.crl'));
  await revoke(pki.ca, pki.clientCert);
  const client = await writeCrl(pki.ca, join(dir, 'client.crl'));
  await revoke(pki.ca, pki.serverCert);
  crls = { none, client, both: await writeCrl(pki.ca, join(dir, 'both.crl')), foreign: await writeCrl(pki.foreignCa, join(dir, 'foreign.crl')) };
  const serial = async (cert: string) => new X509Certificate(await readFile(cert)).serialNumber;
  serials = { client: await serial(pki.clientCert), server: await serial(pki.serverCert) };
  served = await serveTestImage(dir, 'disk', ROUTE, 16 * MiB, 91);
});
after(async () => {
  await served?.daemon.stop();
});

/** `serial is revoked by --crl FILE (revoked DATE)`, DATE as `openssl crl` prints it. */
async function revokedBy(crl: string, serial: string): Promise<string> {
  const { stdout } = await run('openssl', ['crl', '-in', crl, '-noout', '-text']);
  const date = new RegExp(`Serial Number: ${serial}\\s+Revocation Date: (.+)`).exec(stdout)?.[1];
  assert.ok(date, `serial ${serial} is not in ${crl}`);
  return `serial ${serial} is revoked by --crl ${crl} (revoked ${new Date(date).toISOString().replace('.000Z', 'Z')})`;
}

/** withCaseTunnel() for this file's disk. */
function withTunnel(name: string, options: Pick<TunnelOptions, 'destArgs' | 'sourceArgs' | 'destEnv'>, body: (running: CaseTunnel) => Promise<void>): Promise<void> {
  return withCaseTunnel(suite, name, { route: ROUTE, nbdSocket: served.nbdSocket, ...options }, body);
}

/** One more source to the destination on `port`, with the PKI's client certificate unless `args` give another; stopped after `body`. */
async function withSource(port: number, socket: string, args: string[], body: (source: Proxy) => Promise<void>): Promise<void> {
  const source = await startProxy(['source', '--connect', `wss://localhost:${port}`, '--route', `${ROUTE}=${socket}`, '--ca', suite.pki.caCert, '--cert', suite.pki.clientCert, '--key', suite.pki.clientKey, ...args], 'ready');
  try {
    await body(source);
  } finally {
    await source.stop();
  }
}

test('dest --crl revoking the source\'s certificate: HTTP 401 naming the serial on both sides; a certificate it does not revoke connects and carries bytes', async () => {
  await withTunnel('dest', { destArgs: ['--crl', crls.client] }, async ({ tunnel, dir: here, socket }) => {
    const reason = `client certificate refused: ${await revokedBy(crls.client, serials.client)}`;
    const refused = await tunnel.dest.waitForLog(byMsg('connection refused'));
    assert.equal(refused.status, 401);
    assert.equal(refused.reason, reason);
    assert.equal((await tunnel.source.waitForLog(byMsg('connect failed'))).reason, `destination refused the tunnel: HTTP 401: nbd-tunnel: ${reason}`);
    await assertClosedAtOnce(socket, ROUTE);
    const twin = join(here, 'twin.sock');
    await withSource(tunnel.port, twin, ['--cert', suite.pki.twinClientCert, '--key', suite.pki.twinClientKey], () => assertReadsImage(twin, ROUTE, served.image));
  });
});

test('source --crl revoking the destination\'s certificate: refused, naming the serial; a CRL that does not revoke it connects and carries bytes', async () => {
  await withTunnel('source', { sourceArgs: ['--crl', crls.both] }, async ({ tunnel, dir: here, socket }) => {
    const failed = await tunnel.source.waitForLog(byMsg('connect failed'));
    assert.equal(failed.reason, `cannot connect to wss://localhost:${tunnel.port}/: destination certificate refused: ${await revokedBy(crls.both, serials.server)}`);
    await assertClosedAtOnce(socket, ROUTE);
    const good = join(here, 'good.sock');
    await withSource(tunnel.port, good, ['--crl', crls.client], () => assertReadsImage(good, ROUTE, served.image));
  });
});

test('SIGHUP reads --crl (NBD_TUNNEL_CRL) again: a certificate revoked since is refused on new connections, the open session goes on', async () => {
  const live = join(suite.dir, 'live.crl');
  await copyFile(crls.none, live);
  await withTunnel('sighup', { destEnv: { NBD_TUNNEL_CRL: live } }, async ({ tunnel, dir: here, socket }) => {
    await assertReadsImage(socket, ROUTE, served.image);
    await copyFile(crls.client, live);
    tunnel.dest.child.proc.kill('SIGHUP');
    assert.equal((await tunnel.dest.waitForLog(byMsg('certificates reloaded; new connections use them'))).crl, live);
    await withSource(tunnel.port, join(here, 'second.sock'), [], async (second) => {
      const reason = `destination refused the tunnel: HTTP 401: nbd-tunnel: client certificate refused: ${await revokedBy(live, serials.client)}`;
      assert.equal((await second.waitForLog(byMsg('connect failed'))).reason, reason);
    });
    await assertReadsImage(socket, ROUTE, served.image);
    assert.equal(tunnel.dest.logs.filter(byMsg('session opened')).length, 1);
  });
});

test('a --crl that does not check out: exit 2, one line naming the file and what to fix (dest, source, migrate, --pki-dir\'s ca-crl.pem)', async () => {
  const here = await suite.caseDir('bad');
  const notPem = join(here, 'not.pem');
  await writeFile(notPem, 'hello');
  const mixed = join(here, 'mixed.crl');
  await writeFile(mixed, Buffer.concat([await readFile(crls.none), await readFile(crls.foreign)]));
  const pkiDir = join(here, 'pki');
  await mkdir(pkiDir);
  await Promise.all([
    copyFile(suite.pki.caCert, join(pkiDir, 'ca-cert.pem')),
    copyFile(suite.pki.serverCert, join(pkiDir, 'server-cert.pem')),
    copyFile(suite.pki.serverKey, join(pkiDir, 'server-key.pem')),
    writeCrl(suite.pki.ca, join(pkiDir, 'ca-crl.pem'), 1),
  ]);
  await sleep(1_100); // ca-crl.pem's next update has passed
  const dest = ['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock'];
  const destTls = ['--cert', suite.pki.serverCert, '--key', suite.pki.serverKey, '--ca', suite.pki.caCert];
  const sourceTls = ['--cert', suite.pki.clientCert, '--key', suite.pki.clientKey, '--ca', suite.pki.caCert];
  const sourceArgs = ['source', '--connect', 'wss://localhost:1', '--route', 'a=/tmp/a.sock', ...sourceTls];
  const notSigned = 'not signed by the --ca certificate (CN=nbd-tunnel test ca): give the CRL that this CA publishes (openssl ca -gencrl with its key)';
  const cases: Array<[string[], string]> = [
    [[...dest, ...destTls, '--crl', join(here, 'missing.crl')], `--crl ${join(here, 'missing.crl')}: cannot read: ENOENT`],
    [[...sourceArgs, '--crl', notPem], `--crl ${notPem}: not a PEM file`],
    [[...dest, ...destTls, '--crl', suite.pki.caCert], `--crl ${suite.pki.caCert}: not a PEM CRL: no "-----BEGIN X509 CRL-----" block (a DER CRL converts with: openssl crl -inform DER -in FILE -out FILE.pem)`],
    [[...sourceArgs, '--crl', crls.foreign], `--crl ${crls.foreign}: the CRL is ${notSigned}`],
    [['migrate', '--qmp', join(here, 'qmp.sock'), '--connect', 'wss://localhost:1', '--vm', 'vm1', ...sourceTls, '--crl', mixed], `--crl ${mixed}: CRL 2 of 2 is ${notSigned}`],
    [[...dest, '--pki-dir', pkiDir], `--crl ${join(pkiDir, 'ca-crl.pem')}: the CRL is out of date: its next update was due `],
    [['source', '--connect', 'ws://127.0.0.1:1', '--insecure', '--route', 'a=/tmp/a.sock', '--crl', crls.none], '--crl: not used with --insecure (plain ws://, no TLS); drop it or --insecure'],
  ];
  for (const [args, message] of cases) {
    const { stderr } = await run(process.execPath, [CLI, ...args], { okCodes: [2] });
    assert.ok(stderr.startsWith(`nbd-tunnel: error: ${message}`), `${args.join(' ')}:\n${stderr}`);
    assert.equal(stderr.trim().split('\n').length, 1, `more than one line: ${stderr}`);
  }
});
