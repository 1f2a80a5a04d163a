// Backpressure over the real TLS WebSocket transport: a paused reader stops the writer after one
// window, so memory stays flat while the writer tries to push 1 GiB; resuming delivers every byte.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectTunnel, TunnelServer, type Session, type Stream } from '../../src/tunnel/index.js';
import { makePki, makeTempDir, removeDir } from '../harness/index.js';
import { drain, feed } from './support/streams.js';

const MiB = 1024 * 1024;
const WINDOW = 16 * MiB;
let dir: string;
let server: TunnelServer;
let client: Session;
let serverSession: Session;

before(async () => {
  dir = await makeTempDir('nbdt-bp-');
  const pki = await makePki(join(dir, 'pki'));
  const [ca, cert, key, clientCert, clientKey] = await Promise.all(
    [pki.caCert, pki.serverCert, pki.serverKey, pki.clientCert, pki.clientKey].map((p) => readFile(p)),
  );
  server = new TunnelServer({ host: '127.0.0.1', port: 0, tls: { ca, cert, key }, admit: () => ({ ok: true, identity: 'test', identities: ['test'], principal: 'test' }), session: { streamWindow: WINDOW } });
  const sessionArrived = once(server, 'session');
  const { port } = await server.listen();
  client = await connectTunnel({ url: `wss://localhost:${port}`, ca, cert: clientCert, key: clientKey, session: { streamWindow: WINDOW } });
  [serverSession] = (await sessionArrived) as [Session];
});

after(async () => {
  client?.close();
  await server?.close();
  await removeDir(dir);
});

test('paused reader: RSS bounded while a writer pushes 1 GiB, then every byte arrives in order', async (t) => {
  const accepted = once(serverSession, 'stream');
  const writer = client.open();
  writer.write(Buffer.from('x'));
  const [reader] = (await accepted) as [Stream];
  reader.pause();
  global.gc?.();
  const baseline = process.memoryUsage().rss;
  const total = 1024 * MiB;
  const fed = feed(writer, total, MiB);
  let peak = 0;
  for (let i = 0; i < 20; i++) {
    await sleep(50);
    peak = Math.max(peak, process.memoryUsage().rss - baseline);
  }
  t.diagnostic(`paused: writer sent ${(writer.bytesSent / MiB).toFixed(1)} MiB, reader holds ${(reader.bufferedBytes / MiB).toFixed(1)} MiB, RSS +${(peak / MiB).toFixed(1)} MiB`);
  assert.ok(writer.bytesSent <= WINDOW + 1, `writer sent ${writer.bytesSent} bytes past a ${WINDOW}-byte window`);
  assert.ok(reader.bufferedBytes <= WINDOW, `reader holds ${reader.bufferedBytes} bytes`);
  assert.ok(peak < 96 * MiB, `RSS grew by ${(peak / MiB).toFixed(1)} MiB while paused`);

  assert.equal(reader.read(1)?.toString(), 'x');
  const started = Date.now();
  const received = await drain(reader);
  t.diagnostic(`resumed: 1 GiB in ${Date.now() - started} ms over one TLS WebSocket stream (both ends in this process)`);
  assert.equal(received.bytes, total);
  assert.equal(received.sha256, await fed);
  // Both halves closed cleanly: the writer sees the reader's FIN and the stream is forgotten.
  const writerClosed = once(writer, 'close');
  reader.end();
  writer.resume();
  await writerClosed;
  assert.equal(writer.errored, null);
  assert.equal(client.streamCount, 0);
});
