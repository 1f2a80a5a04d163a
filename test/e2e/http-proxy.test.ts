// --proxy and HTTPS_PROXY/NO_PROXY: the source reaches the destination through an HTTP CONNECT
// proxy and carries NBD as before; a proxy that is down, refuses, or wants credentials is named
// in the error; a tunnel the proxy drops is resumed through a new CONNECT.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { CLI, NbdClient, run, serveTestImage, startConnectProxy, type ConnectProxy, type LogLine, type ServedImage, type TunnelOptions } from '../harness/index.js';
import { assertClosedAtOnce, assertReadsImage, suiteFolder, withCaseTunnel, type CaseTunnel } from '../harness/suite.js';

const MiB = 1024 * 1024;
const ROUTE = 'vm-px';
const suite = suiteFolder('nbdt-proxy-');
const byMsg = (msg: string) => (line: LogLine) => line.msg === msg;

let served: ServedImage;
/** Opens every CONNECT; shared by the tests, which count its tunnels from where they start. */
let proxy: ConnectProxy;

before(async () => {
  await suite.ready();
  served = await serveTestImage(suite.dir, 'disk', ROUTE, 16 * MiB, 93);
  proxy = await startConnectProxy();
});
after(async () => {
  await proxy?.close();
  await served?.daemon.stop();
});

/** withCaseTunnel() for this file's disk. */
function withTunnel(name: string, options: Pick<TunnelOptions, 'sourceArgs' | 'sourceEnv'>, body: (running: CaseTunnel) => Promise<void>): Promise<void> {
  return withCaseTunnel(suite, name, { route: ROUTE, nbdSocket: served.nbdSocket, ...options }, body);
}

/** The ready line's proxy field. */
const readyProxy = ({ tunnel }: CaseTunnel): unknown => tunnel.source.logs.find(byMsg('ready'))?.proxy;

test('--proxy: the tunnel is one CONNECT to the destination, the ready line names the proxy, NBD reads through it return the image', async () => {
  const before = proxy.tunnels.length;
  await withTunnel('flag', { sourceArgs: ['--proxy', proxy.url] }, async (running) => {
    assert.equal(readyProxy(running), `${proxy.url} (--proxy)`);
    await running.tunnel.source.waitForLog(byMsg('connected'));
    await assertReadsImage(running.socket, ROUTE, served.image);
    assert.deepEqual(proxy.tunnels.slice(before), [`localhost:${running.tunnel.port}`]);
  });
});

test('HTTPS_PROXY is used without --proxy; NO_PROXY naming the destination host goes direct', async () => {
  const before = proxy.tunnels.length;
  await withTunnel('env', { sourceEnv: { HTTPS_PROXY: proxy.url } }, async (running) => {
    assert.equal(readyProxy(running), `${proxy.url} (HTTPS_PROXY)`);
    await assertReadsImage(running.socket, ROUTE, served.image);
    assert.deepEqual(proxy.tunnels.slice(before), [`localhost:${running.tunnel.port}`]);
  });
  await withTunnel('no-proxy', { sourceArgs: ['--proxy', proxy.url], sourceEnv: { NO_PROXY: '.example.org, localhost' } }, async (running) => {
    assert.equal(readyProxy(running), "none: NO_PROXY names 'localhost'");
    await assertReadsImage(running.socket, ROUTE, served.image);
  });
  assert.equal(proxy.tunnels.length, before + 1, 'the NO_PROXY source made no CONNECT');
});

test('a proxy that wants credentials: 407 named and the QEMU connection closed at once; with them in the URL it carries bytes, the password never logged', async () => {
  const guarded = await startConnectProxy({ credentials: 'mig:p@ss' });
  try {
    await withTunnel('auth-missing', { sourceArgs: ['--proxy', guarded.url] }, async ({ tunnel, socket }) => {
      const failed = await tunnel.source.waitForLog(byMsg('connect failed'));
      assert.equal(
        failed.reason,
        `the proxy refused CONNECT to localhost:${tunnel.port}: 407 Proxy Authentication Required (--proxy ${guarded.url}; give its user and password in the URL: http://USER:PASSWORD@HOST:PORT)`,
      );
      await assertClosedAtOnce(socket, ROUTE);
    });
    await withTunnel('auth-given', { sourceArgs: ['--proxy', `http://mig:p%40ss@127.0.0.1:${guarded.port}`] }, async (running) => {
      assert.equal(readyProxy(running), `${guarded.url} (--proxy)`);
      await assertReadsImage(running.socket, ROUTE, served.image);
      assert.equal(guarded.tunnels.length, 1);
      const logged = JSON.stringify(running.tunnel.source.logs);
      assert.ok(!logged.includes('p@ss') && !logged.includes('p%40ss'), 'the proxy password is in the logs');
    });
  } finally {
    await guarded.close();
  }
});

test('a proxy that refuses (403) is named, the QEMU connection closed at once; a proxy that is down is named and retried', async () => {
  const refusing = await startConnectProxy({ refuse: true });
  try {
    await withTunnel('refused', { sourceArgs: ['--proxy', refusing.url] }, async ({ tunnel, socket }) => {
      const failed = await tunnel.source.waitForLog(byMsg('connect failed'));
      assert.equal(failed.reason, `the proxy refused CONNECT to localhost:${tunnel.port}: 403 Forbidden (--proxy ${refusing.url})`);
      await assertClosedAtOnce(socket, ROUTE);
    });
  } finally {
    await refusing.close();
  }
  await withTunnel('down', { sourceArgs: ['--proxy', 'http://127.0.0.1:1'] }, async ({ tunnel }) => {
    await tunnel.source.waitForLog((l) => l.msg === 'connect failed' && tunnel.source.logs.filter(byMsg('connect failed')).length >= 2);
    for (const failed of tunnel.source.logs.filter(byMsg('connect failed'))) {
      assert.equal(failed.reason, '--proxy http://127.0.0.1:1: cannot connect: ECONNREFUSED');
      assert.equal(typeof failed.retryInMs, 'number');
    }
  });
});

test('the proxy drops the tunnel: the session resumes through a new CONNECT, an NBD connection open across it goes on', async () => {
  const before = proxy.tunnels.length;
  await withTunnel('resume', { sourceArgs: ['--proxy', proxy.url] }, async ({ tunnel, socket }) => {
    const image = await readFile(served.image);
    const client = await NbdClient.connect(socket, ROUTE);
    try {
      assert.ok((await client.read(0, MiB)).equals(image.subarray(0, MiB)));
      proxy.dropAll();
      const resumed = await tunnel.source.waitForLog(byMsg('session resumed'));
      assert.ok((await client.read(8 * MiB, MiB)).equals(image.subarray(8 * MiB, 9 * MiB)), 'bytes after the resume differ');
      assert.equal(proxy.tunnels.length - before, 2, 'one CONNECT, and one for the resume');
      assert.equal(tunnel.dest.logs.filter(byMsg('session opened')).length, 1, 'the same session');
      assert.equal(typeof resumed.outageMs, 'number');
    } finally {
      await client.close();
    }
  });
});

test('proxy settings that are not an http:// proxy URL: exit 2, one line naming the flag or variable, no password shown', async () => {
  const tls = ['--ca', suite.pki.caCert, '--cert', suite.pki.clientCert, '--key', suite.pki.clientKey];
  const source = ['source', '--connect', 'wss://localhost:1', '--route', 'a=/tmp/a.sock', ...tls];
  const only = (name: string, url: string, scheme: string) => `${name} '${url}': only http:// proxies are supported (CONNECT in plain HTTP), not ${scheme}//`;
  const cases: Array<[string[], Record<string, string>, string]> = [
    [[...source, '--proxy', 'https://proxy:3128'], {}, only('--proxy', 'https://proxy:3128', 'https:')],
    [[...source, '--proxy', 'http://mig:secret@'], {}, "--proxy 'http://mig:***@': not a URL; expected http://HOST:PORT"],
    [source, { HTTPS_PROXY: 'socks5://proxy:1080' }, only('HTTPS_PROXY', 'socks5://proxy:1080', 'socks5:')],
    [['source', '--connect', 'ws://127.0.0.1:1', '--insecure', '--route', 'a=/tmp/a.sock', '--proxy', proxy.url], {}, '--proxy: not used with --insecure (plain ws:// on loopback); drop one of them'],
    [['migrate', '--qmp', '/tmp/qmp.sock', '--connect', 'wss://localhost:1', '--vm', 'vm1', ...tls, '--proxy', 'ftp://proxy:21'], {}, only('--proxy', 'ftp://proxy:21', 'ftp:')],
  ];
  for (const [args, env, message] of cases) {
    const { stderr } = await run(process.execPath, [CLI, ...args], { okCodes: [2], env: { ...process.env, https_proxy: '', ...env } });
    assert.equal(stderr, `nbd-tunnel: error: ${message}\n`, args.join(' '));
  }
});
