// Hostile input at the destination's port, from an authenticated client speaking the protocol
// badly, while a real migration runs: each is refused with its reason, nothing reaches the
// destination socket, and the migration completes with identical images.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { connectTunnel, encodeMessage, parseOpenReply, readMessage, type Session, type Stream } from '../../src/tunnel/index.js';
import {
  jobProgress,
  makePki,
  makeTempDir,
  removeDir,
  startCountingServer,
  startRig,
  waitJobProgress,
  type CountingServer,
  type JobProgress,
  type Pki,
  type Rig,
} from '../harness/index.js';

const MiB = 1024 * 1024;
let dir: string;
let pki: Pki;
let rig: Rig;
let counted: CountingServer;
let tls: { ca: Buffer; cert: Buffer; key: Buffer };
const sessions: Session[] = [];
const JOB = 'm-good';
/** Measured: the mirror went from 4% to 13% during the hostile tests (about 1.1 s), from 3% to 25% at 4 MiB/s. */
const HOSTILE_CASE_SPEED = 1 * MiB;
/** The job's progress once the hostile tests may start; null if it was already READY. */
let copyingAtStart: JobProgress | null = null;

before(async () => {
  dir = await makeTempDir('nbdt-hostile-');
  pki = await makePki(join(dir, 'pki'));
  counted = await startCountingServer(join(dir, 'counted.sock'));
  rig = await startRig({
    dir,
    pki,
    disks: [{ name: 'good', size: 128 * MiB, seed: 11 }],
    destArgs: ['--route', `counted=${join(dir, 'counted.sock')}`, '--max-sessions', '2', '--max-streams', '4', '--handshake-timeout', '1'],
  });
  await rig.startMirrors();
  // The job's rate limit keeps it copying through every test below; the last one checks that.
  await rig.source.qmp.execute('block-job-set-speed', { device: JOB, speed: HOSTILE_CASE_SPEED });
  copyingAtStart = await waitJobProgress(rig.source, JOB, 0.01);
  const [ca, cert, key] = await Promise.all([pki.caCert, pki.clientCert, pki.clientKey].map((p) => readFile(p)));
  tls = { ca, cert, key };
});

after(async () => {
  for (const s of sessions) s.close();
  await rig?.stop();
  await counted?.close();
  await removeDir(dir);
});

async function session(): Promise<Session> {
  const s = await connectTunnel({ url: `wss://localhost:${rig.tunnel!.port}`, ...tls, session: { keepaliveIntervalMs: 0 } });
  sessions.push(s);
  return s;
}

/** Opens a stream, writes `bytes` as its first bytes, reads the destination's reply, closes the stream. */
async function openWith(s: Session, bytes: Buffer) {
  const stream: Stream = s.open();
  stream.on('error', () => {});
  stream.write(bytes);
  try {
    return parseOpenReply(await readMessage(stream, 5000));
  } finally {
    stream.destroy();
  }
}

/** The one extra session these tests share: the rig's source holds the other of --max-sessions 2. */
async function shared(): Promise<Session> {
  return sessions[0] ?? session();
}

test('a malformed route name is refused before any filesystem access', async () => {
  const s = await shared();
  for (const route of ['../counted', '/tmp/counted.sock', '', 'a\u0000b', 'x'.repeat(129)]) {
    const reply = await openWith(s, encodeMessage({ route }));
    assert.deepEqual([reply.ok, !reply.ok && reply.code], [false, 'bad-route'], JSON.stringify(route));
  }
  assert.equal(counted.accepts, 0);
});

test('an oversized open request is refused without being read', async () => {
  const s = await shared();
  const header = Buffer.alloc(4);
  header.writeUInt32BE(1 << 20);
  const reply = await openWith(s, Buffer.concat([header, Buffer.alloc(8192, 0x7b)]));
  assert.equal(reply.ok, false);
  assert.match(!reply.ok ? reply.message : '', /open message of 1048576 bytes exceeds the limit of 4096/);
});

test('streams past --max-streams are reset; the session and its other streams go on', async () => {
  const s = await shared();
  const streams = Array.from({ length: 6 }, () => s.open().on('error', () => {}));
  const resets = await Promise.all(
    streams.slice(4).map(async (st) => {
      const [error] = (await once(st, 'error')) as [Error];
      return error.message;
    }),
  );
  for (const message of resets) assert.match(message, /^stream \d+ was refused by the peer: its session already has 4 streams open, the limit \(--max-streams 4\)$/);
  streams[0].write(encodeMessage({ route: 'counted' }));
  const reply = parseOpenReply(await readMessage(streams[0], 5000));
  assert.equal(reply.ok, true, 'an earlier stream still works');
  for (const st of streams) st.destroy();
});

test('more sessions than --max-sessions: HTTP 503 naming the limit', async () => {
  await shared();
  await assert.rejects(session(), /HTTP 503: nbd-tunnel: the destination already serves 2 sessions, its limit \(--max-sessions\)/);
});

test('a client that never finishes the upgrade is dropped at the deadline', async () => {
  const socket = tlsConnect({ host: '127.0.0.1', port: rig.tunnel!.port, servername: 'localhost', ...tls });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n'); // and never the rest
  await once(socket, 'close');
  const line = await rig.tunnel!.dest.waitForLog((l) => l.msg === 'connection refused' && l.status === 408);
  assert.match(String(line.reason), /no WebSocket upgrade within 1000 ms/);
});

test('meanwhile the migration completed and the images are identical', async (t) => {
  const now = await jobProgress(rig.source, JOB);
  const percent = (p: JobProgress | null) => (p ? `${((100 * p.offset) / p.len).toFixed(0)}%${p.ready ? ' READY' : ''}` : 'gone');
  t.diagnostic(`mirror at ${percent(copyingAtStart)} before the hostile tests, ${percent(now)} after them`);
  assert.ok(copyingAtStart, 'the mirror was READY before the hostile tests began');
  // A speed-limited mirror copies in bursts: within these few seconds its offset may not move,
  // but it must still be mid-copy (running, not READY) after the hostile tests as before them.
  assert.ok(now && !now.ready && now.status === 'running' && now.offset >= copyingAtStart.offset && now.offset < now.len, `the mirror was not copying all through the hostile tests: ${JSON.stringify({ copyingAtStart, now })}`);
  await rig.source.qmp.execute('block-job-set-speed', { device: JOB, speed: 0 });
  await rig.waitReady();
  await rig.completeMirrors();
  for (const r of await rig.verify()) assert.ok(r.identical, `${r.name}: ${r.output}`);
  assert.equal(counted.accepts, 1, 'only the one legitimate open of "counted" connected');
});
