// The command-line contract: ready lines, one-line errors naming the flag, socket-file hygiene.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, chown, copyFile, lstat, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { CLI, makePki, makeTempDir, removeDir, run, spawnChild, startCountingServer, startProxy, type Pki } from '../harness/index.js';

let dir: string;
let pki: Pki;

before(async () => {
  dir = await makeTempDir('nbdt-cli-');
  pki = await makePki(join(dir, 'pki'));
});
after(async () => {
  await removeDir(dir);
});

/** Runs the CLI to its exit, behind `wrapper` (a command such as setpriv) if given; resolves with its status and stderr. */
async function cli(args: string[], wrapper: string[] = []): Promise<{ code: number | null; stderr: string }> {
  const [command, ...rest] = [...wrapper, process.execPath, CLI, ...args];
  const child = await spawnChild(command!, rest);
  const { code } = await child.exited;
  return { code, stderr: child.stderr };
}

const destTls = () => ['--cert', pki.serverCert, '--key', pki.serverKey, '--ca', pki.caCert];
const sourceTls = () => ['--cert', pki.clientCert, '--key', pki.clientKey, '--ca', pki.caCert];

test('bad flags exit 2 with one line naming the flag', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['dest', '--listen', 'nope', '--route', 'a=/tmp/a.sock', ...destTls()], /--listen 'nope': expected HOST:PORT/],
    [['dest', '--listen', '127.0.0.1:1', '--route', '../x=/tmp/a.sock', ...destTls()], /--route '..\/x=\/tmp\/a.sock': route name must match/],
    [['dest', '--listen', '127.0.0.1:1', '--route', 'nosocket', ...destTls()], /--route 'nosocket': expected NAME=SOCKET/],
    [['dest', '--listen', '127.0.0.1:1', ...destTls()], /--route: give at least one/],
    [['source', '--connect', 'https://x:1', '--route', 'a=/tmp/a.sock', ...sourceTls()], /--connect 'https:\/\/x:1': the scheme must be wss:\/\//],
    [['source', '--connect', 'wss://x:1', '--route', 'a=/tmp/a.sock', '--stream-window', '1K', ...sourceTls()], /--stream-window 1K: must be between 256K/],
    [['source', '--connect', 'wss://x:1', '--route', 'a=/tmp/a.sock', '--log-level', 'loud', ...sourceTls()], /--log-level/],
    [['dest', '--route', 'a=/tmp/a.sock', ...destTls()], /required option '--listen/],
    [['source', '--connect', 'wss://x:1', '--route', 'a=/tmp/a.sock', '--resume-timeout', 'soon', ...sourceTls()], /--resume-timeout 'soon': expected seconds, 0 or more/],
    [['dest', '--listen', '127.0.0.1:1', '--route', 'a=/tmp/a.sock', '--drain-timeout', '-1', ...destTls()], /--drain-timeout '-1': expected seconds, 0 or more/],
    [['dest', '--listen', '127.0.0.1:1', '--route', 'a=/tmp/a.sock', '--allow', 'a=hv*.example.org', ...destTls()], /--allow 'a=hv\*\.example\.org': 'hv\*\.example\.org': '\*' may only be the whole leftmost label/],
    [['dest', '--listen', '127.0.0.1:1', '--route', 'a=/tmp/a.sock', '--allow', 'b=hv1.example.org', ...destTls()], /--allow 'b=hv1\.example\.org': route 'b' is not given with --route/],
  ];
  for (const [args, expected] of cases) {
    const { code, stderr } = await cli(args);
    assert.equal(code, 2, `${args.join(' ')}: exit ${code}, stderr ${stderr}`);
    assert.match(stderr, expected);
    assert.equal(stderr.trim().split('\n').length, 1, `more than one line: ${stderr}`);
  }
});

test('unreadable or non-PEM certificate files are named with the flag', async () => {
  const notPem = join(dir, 'not.pem');
  await writeFile(notPem, 'hello');
  let result = await cli(['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock', '--cert', join(dir, 'missing.pem'), '--key', pki.serverKey, '--ca', pki.caCert]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /^nbd-tunnel: error: --cert .*missing\.pem: cannot read: ENOENT\n$/);
  result = await cli(['source', '--connect', 'wss://localhost:1', '--route', 'a=/tmp/a.sock', '--cert', pki.clientCert, '--key', pki.clientKey, '--ca', notPem]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--ca .*not\.pem: not a PEM file/);
});

test('a certificate file the user cannot read: exit 2, EACCES named with --cert (as nobody when run as root)', async (t) => {
  // Root reads any file, so as root the CLI runs as nobody; the files sit in a folder nobody can
  // traverse, and all but the certificate are readable to it: only the certificate's mode fails.
  const place = await makeTempDir('nbdt-cli-eacces-');
  try {
    await chmod(place, 0o711);
    const [cert, key, ca] = ['server-cert.pem', 'server-key.pem', 'ca-cert.pem'].map((f) => join(place, f)) as [string, string, string];
    await Promise.all([copyFile(pki.serverCert, cert), copyFile(pki.serverKey, key), copyFile(pki.caCert, ca)]);
    await Promise.all([chmod(cert, 0), chmod(key, 0o600), chmod(ca, 0o644)]);
    let wrapper: string[] = [];
    if (process.getuid?.() === 0) {
      const [uid, gid] = await Promise.all(['-u', '-g'].map(async (flag) => Number((await run('id', [flag, 'nobody'])).stdout.trim())));
      await chown(key, uid!, gid!);
      wrapper = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--'];
      t.diagnostic(`running as root: the CLI runs as nobody (${uid}:${gid})`);
      // A checkout under a private folder (/root/...) is out of nobody's reach: say so, do not pass.
      const reach = await run(wrapper[0]!, [...wrapper.slice(1), 'test', '-r', CLI], { okCodes: [0, 1] });
      if (reach.code !== 0) {
        t.skip(`nobody cannot read ${CLI}, so the check cannot run unprivileged`);
        return;
      }
    }
    const result = await cli(['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock', '--cert', cert, '--key', key, '--ca', ca], wrapper);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^nbd-tunnel: error: --cert .*server-cert\.pem: cannot read: EACCES\n$/);
  } finally {
    await removeDir(place);
  }
});

test('a port in use: exit 1 with the address in the message', async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const { port } = blocker.address() as { port: number };
  try {
    const { code, stderr } = await cli(['dest', '--listen', `127.0.0.1:${port}`, '--route', 'a=/tmp/a.sock', ...destTls()]);
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`--listen 127\\.0\\.0\\.1:${port}: cannot listen: EADDRINUSE`));
  } finally {
    blocker.close();
  }
});

test('source sockets: a stale socket is replaced, a live one or a non-socket path refused, none left on exit', async () => {
  const sub = join(dir, 'sockets');
  await mkdir(sub);
  const stale = join(sub, 'stale.sock');
  await run('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale]);
  const live = join(sub, 'live.sock');
  const liveServer = await startCountingServer(live);
  const regular = join(sub, 'regular');
  await writeFile(regular, 'data');
  const base = ['source', '--connect', 'wss://localhost:1', ...sourceTls()];
  try {
    let result = await cli([...base, '--route', `a=${live}`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /--route a=.*live\.sock: another process is listening on this socket/);
    result = await cli([...base, '--route', `a=${regular}`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /--route a=.*regular: the path exists and is not a socket/);

    const source = await startProxy([...base, '--route', `a=${stale}`], 'ready');
    assert.ok((await lstat(stale)).isSocket());
    assert.equal((await lstat(stale)).mode & 0o777, 0o660, 'route sockets default to mode 0660');
    await source.stop();
    assert.deepEqual(await source.child.exited, { code: 0, signal: null });
    await assert.rejects(lstat(stale), { code: 'ENOENT' }, 'the socket file is removed on exit');
  } finally {
    await liveServer.close();
  }
});

test('dest prints "listening" with the bound port, and warns when no --allow limits the routes', async () => {
  const dest = await startProxy(['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock', ...destTls()], 'listening');
  try {
    const line = await dest.waitForLog((l) => l.msg === 'listening');
    assert.ok(Number(line.port) > 0);
    assert.equal(line.level, 30);
    const warning = await dest.waitForLog((l) => /no --allow given/.test(String(l.msg)));
    assert.equal(warning.level, 40);
  } finally {
    await dest.stop();
  }
});

test('source on a terminal without --log-level shows the progress view; --log-format json keeps JSON', async () => {
  // Each run gets its own socket: the first CLI may still be exiting when timeout(1) returns.
  const onTerminal = async (socket: string, extra: string[]): Promise<string> => {
    const command = [process.execPath, CLI, 'source', '--connect', 'wss://localhost:1', '--route', `a=${join(dir, socket)}`, ...sourceTls(), ...extra]
      .map((a) => `'${a}'`)
      .join(' ');
    // script(1) gives the CLI a pseudo-terminal; timeout ends script after 2 s. The CLI, script's
    // child, names its PID in what it printed: it is killed by that PID, whatever the hangup did.
    const { stdout } = await run('timeout', ['2', 'script', '-qfec', command, '/dev/null'], { okCodes: [0, 1, 124, 143] });
    const pid = Number(/\(pid (\d+)\)|"pid":(\d+)/.exec(stdout)?.slice(1).find(Boolean));
    assert.ok(pid > 0, `no PID in the CLI's output: ${stdout}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    return stdout;
  };
  const view = await onTerminal('tty-view.sock', []);
  assert.match(view, /nbd-tunnel source \(pid \d+\): 0 session\(s\)/);
  assert.match(view, /SESSION\s+STREAM\s+ROUTE\s+EXPORT\s+SIZE\s+COVERED/);
  assert.doesNotMatch(view, /"msg":"ready"/);
  const json = await onTerminal('tty-json.sock', ['--log-format', 'json']);
  assert.match(json, /"msg":"ready"/);
  assert.doesNotMatch(json, /SESSION\s+STREAM/);
});

test('secrets readable by every user and certificates outside their dates are refused at start', async () => {
  const openKey = join(dir, 'open.key');
  await writeFile(openKey, await readFile(pki.serverKey), { mode: 0o644 });
  await chmod(openKey, 0o644);
  let result = await cli(['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock', '--cert', pki.serverCert, '--key', openKey, '--ca', pki.caCert]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--key .*open\.key: readable by every user \(mode 0644\); chmod o-rwx it/);

  const openToken = join(dir, 'open-token');
  await writeFile(openToken, 'secret\n');
  await chmod(openToken, 0o604);
  result = await cli(['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock', ...destTls(), '--token-file', openToken]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--token-file .*open-token: readable by every user \(mode 0604\)/);
  assert.doesNotMatch(result.stderr, /secret/);

  result = await cli(['source', '--connect', 'wss://localhost:1', '--route', 'a=/tmp/a.sock', '--cert', pki.expiredClientCert, '--key', pki.expiredClientKey, '--ca', pki.caCert]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--cert .*: certificate expired: valid from .* GMT to .* GMT/);
});

test('--socket-mode and --socket-group set who may connect to the route sockets', async () => {
  const path = join(dir, 'owned.sock');
  const args = ['source', '--connect', 'wss://localhost:1', ...sourceTls(), '--route', `a=${path}`];
  const refused = await cli([...args, '--socket-mode', '0666']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /--socket-mode 0666: other users must not reach the sockets/);
  const source = await startProxy([...args, '--socket-mode', '0600', '--socket-group', '1'], 'ready');
  try {
    const stat = await lstat(path);
    assert.equal(stat.mode & 0o777, 0o600);
    if (process.getuid?.() === 0) assert.equal(stat.gid, 1);
  } finally {
    await source.stop();
  }
});

test('--pki-dir reads the files where QEMU and libvirt keep them; a missing one is named', async () => {
  const serverDir = join(dir, 'pki-server');
  const clientDir = join(dir, 'pki-client');
  await mkdir(serverDir);
  await mkdir(clientDir);
  const copy = async (from: string, to: string) => writeFile(to, await readFile(from), { mode: 0o600 });
  await copy(pki.caCert, join(serverDir, 'ca-cert.pem'));
  await copy(pki.serverCert, join(serverDir, 'server-cert.pem'));
  await copy(pki.serverKey, join(serverDir, 'server-key.pem'));
  await copy(pki.caCert, join(clientDir, 'ca-cert.pem'));
  await copy(pki.clientCert, join(clientDir, 'client-cert.pem'));
  const missing = await cli(['source', '--connect', 'wss://localhost:1', '--route', 'a=/tmp/a.sock', '--pki-dir', clientDir]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--key .*client-key\.pem: cannot read: ENOENT/);
  await copy(pki.clientKey, join(clientDir, 'client-key.pem'));
  const dest = await startProxy(['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock', '--pki-dir', serverDir], 'listening');
  try {
    const port = Number((await dest.waitForLog((l) => l.msg === 'listening')).port);
    const source = await startProxy(['source', '--connect', `wss://localhost:${port}`, '--route', `a=${join(dir, 'pki.sock')}`, '--pki-dir', clientDir], 'ready');
    try {
      await source.waitForLog((l) => l.msg === 'connected');
      await dest.waitForLog((l) => l.msg === 'session opened' && l.client === 'hv1.example.org');
    } finally {
      await source.stop();
    }
  } finally {
    await dest.stop();
  }
});

test('SIGHUP reloads the certificates for new connections; a broken file keeps the old ones', async () => {
  const serverDir = join(dir, 'pki-reload');
  await mkdir(serverDir);
  const copy = async (from: string, to: string) => writeFile(to, await readFile(from), { mode: 0o600 });
  await copy(pki.caCert, join(serverDir, 'ca-cert.pem'));
  await copy(pki.serverCert, join(serverDir, 'server-cert.pem'));
  await copy(pki.serverKey, join(serverDir, 'server-key.pem'));
  const dest = await startProxy(['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock', '--pki-dir', serverDir], 'listening');
  const port = Number((await dest.waitForLog((l) => l.msg === 'listening')).port);
  const connectOnce = async (name: string) => {
    const source = await startProxy(['source', '--connect', `wss://localhost:${port}`, '--route', `a=${join(dir, `${name}.sock`)}`, ...sourceTls()], 'ready');
    try {
      return await source.waitForLog((l) => l.msg === 'connected' || l.msg === 'connect failed');
    } finally {
      await source.stop();
    }
  };
  try {
    assert.equal((await connectOnce('before')).msg, 'connected');
    // A broken certificate file: the reload fails and the running certificate stays.
    await writeFile(join(serverDir, 'server-cert.pem'), 'not a certificate', { mode: 0o600 });
    dest.child.proc.kill('SIGHUP');
    await dest.waitForLog((l) => l.msg === 'certificate reload failed; keeping the current ones');
    assert.equal((await connectOnce('broken')).msg, 'connected');
    // A certificate for another name: after the reload, new connections to "localhost" are refused.
    await copy(pki.wrongNameServerCert, join(serverDir, 'server-cert.pem'));
    await copy(pki.wrongNameServerKey, join(serverDir, 'server-key.pem'));
    dest.child.proc.kill('SIGHUP');
    await dest.waitForLog((l) => l.msg === 'certificates reloaded; new connections use them');
    const after = await connectOnce('after');
    assert.equal(after.msg, 'connect failed');
    assert.match(String(after.reason), /the destination certificate names DNS:other\.example\.org, not 'localhost'/);
  } finally {
    await dest.stop();
  }
});

test('--insecure: plain ws:// only on loopback, on both sides', async () => {
  let result = await cli(['dest', '--insecure', '--listen', '0.0.0.0:0', '--route', 'a=/tmp/a.sock']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--insecure: plain ws:\/\/ only on a loopback --listen address, not '0\.0\.0\.0'/);
  result = await cli(['source', '--insecure', '--connect', 'ws://10.1.2.3:9000', '--route', 'a=/tmp/a.sock']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--insecure: only with --connect ws:\/\/LOOPBACK:PORT/);
  result = await cli(['source', '--connect', 'ws://127.0.0.1:9000', '--route', 'a=/tmp/a.sock', ...sourceTls()]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /the scheme must be wss:\/\/ \(ws:\/\/ only with --insecure, on loopback\)/);

  const target = await startCountingServer(join(dir, 'insecure-target.sock'));
  const dest = await startProxy(['dest', '--insecure', '--listen', '127.0.0.1:0', '--route', `a=${join(dir, 'insecure-target.sock')}`], 'listening');
  try {
    const port = Number((await dest.waitForLog((l) => l.msg === 'listening')).port);
    const source = await startProxy(['source', '--insecure', '--connect', `ws://127.0.0.1:${port}`, '--route', `a=${join(dir, 'insecure.sock')}`], 'ready');
    try {
      await source.waitForLog((l) => l.msg === 'connected');
      const client = createConnection(join(dir, 'insecure.sock'));
      client.on('error', () => {});
      await source.waitForLog((l) => l.msg === 'stream opened');
      assert.equal(target.accepts, 1);
      client.destroy();
    } finally {
      await source.stop();
    }
  } finally {
    await dest.stop();
    await target.close();
  }
});

test('messages that say what to fix: a key that is not the certificate\'s, TLS flags with --insecure, a missing socket folder, durations, env switches', async () => {
  const dest = ['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock'];
  const cases: Array<[string[], number, RegExp, Record<string, string>?]> = [
    [[...dest, '--cert', pki.serverCert, '--key', pki.clientKey, '--ca', pki.caCert], 2, /^nbd-tunnel: error: --key \S+ is not the private key of --cert \S+: give the key made with that certificate$/],
    [[...dest, '--insecure', '--cert', '/nope.pem'], 2, /^nbd-tunnel: error: --cert: not used with --insecure \(plain ws:\/\/, no TLS\); drop it or --insecure$/],
    [[...dest, '--drain-timeout', '30x', ...destTls()], 2, /^nbd-tunnel: error: --drain-timeout '30x': expected seconds, 0 or more \(30, 30s, 500ms or 2m\)$/],
    [[...dest, ...destTls()], 2, /^nbd-tunnel: error: NBD_TUNNEL_NO_INSPECT 'maybe': expected 1\/true\/yes\/on \(no inspection\) or 0\/false\/no\/off$/, { NBD_TUNNEL_NO_INSPECT: 'maybe' }],
    [['source', '--connect', 'wss://localhost:1', '--route', `a=${join(dir, 'no-such-folder', 'a.sock')}`, ...sourceTls()], 1, /^nbd-tunnel: error: --route a=\S+: cannot listen: the folder \S+no-such-folder does not exist; create it first \(\w+\)$/],
    [['status', 'http://[bad'], 1, /^nbd-tunnel: error: 'http:\/\/\[bad' is not an address; give the proxy's --metrics address, as http:\/\/HOST:PORT or HOST:PORT$/],
  ];
  for (const [args, status, expected, env] of cases) {
    const child = await spawnChild(process.execPath, [CLI, ...args], env ? { env: { ...process.env, ...env } } : {});
    const { code } = await child.exited;
    assert.equal(code, status, `${args.join(' ')}: exit ${code}, stderr ${child.stderr}`);
    assert.match(child.stderr.trim(), expected);
    assert.equal(child.stderr.trim().split('\n').length, 1, `more than one line: ${child.stderr}`);
  }
});

test('durations take units, NBD_TUNNEL_NO_INSPECT=0 keeps inspection on, and status takes HOST:PORT', async () => {
  for (const [value, inspect] of [['0', true], ['false', true], ['1', false]] as const) {
    const proxy = await startProxy(['dest', '--listen', '127.0.0.1:0', '--route', 'a=/tmp/a.sock', '--drain-timeout', '500ms', '--metrics', '127.0.0.1:0', ...destTls()], 'listening', 10_000, { NBD_TUNNEL_NO_INSPECT: value });
    try {
      assert.equal(proxy.logs.find((l) => l.msg === 'listening')?.inspect, inspect, `NBD_TUNNEL_NO_INSPECT=${value}`);
      const address = String(proxy.logs.find((l) => l.msg === 'listening')?.metrics);
      const status = await run(process.execPath, [CLI, 'status', address, '--once']);
      assert.match(status.stdout, /^nbd-tunnel dest \(pid \d+\): 0 session\(s\)\n/);
    } finally {
      await proxy.stop();
    }
  }
});

test('--connect at a port that does not speak TLS: the source says so', async () => {
  const plain = createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  plain.listen(0, '127.0.0.1');
  await new Promise((resolve) => plain.once('listening', resolve));
  const { port } = plain.address() as { port: number };
  const source = await startProxy(['source', '--connect', `wss://localhost:${port}`, '--route', `a=${join(dir, 'plain.sock')}`, ...sourceTls()], 'ready');
  try {
    const line = await source.waitForLog((l) => l.msg === 'connect failed');
    assert.match(String(line.reason), /the destination port does not speak TLS: check that --connect names the nbd-tunnel dest port \(plain ws:\/\/ only with --insecure on both sides\) \(EPROTO\)$/);
  } finally {
    await source.stop();
    plain.close();
  }
});

test('a QEMU connection made while the destination is down waits for it (up to 10 s), then goes through', async () => {
  // A free loopback port, for a destination that starts only after the connection was made.
  const probe = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => probe.once('listening', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  const target = await startCountingServer(join(dir, 'late-target.sock'));
  const source = await startProxy(['source', '--connect', `wss://localhost:${port}`, '--route', `late=${join(dir, 'late.sock')}`, ...sourceTls()], 'ready');
  let dest: Awaited<ReturnType<typeof startProxy>> | null = null;
  try {
    await source.waitForLog((l) => l.msg === 'connect failed');
    const client = createConnection(join(dir, 'late.sock'));
    client.on('error', () => {});
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // the destination is still down
    dest = await startProxy(['dest', '--listen', `127.0.0.1:${port}`, '--route', `late=${join(dir, 'late-target.sock')}`, ...destTls()], 'listening');
    const opened = await source.waitForLog((l) => l.msg === 'stream opened' && l.route === 'late', 10_000);
    assert.equal(target.accepts, 1, 'the waiting connection reached the destination socket');
    assert.deepEqual(source.logs.filter((l) => l.msg === 'stream refused: no tunnel to the destination'), []);
    assert.equal(opened.route, 'late');
    client.destroy();
  } finally {
    await dest?.stop();
    await source.stop();
    await target.close();
  }
});
