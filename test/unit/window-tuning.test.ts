// Receive windows that start small and grow only when the window, not the reader, holds the
// sender back (FLAG_GROW in const.ts): the growth steps on a link with a round trip, none for a
// paused reader, and exact bytes meanwhile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { FLAG_GROW, TYPE_WINDOW_UPDATE } from '../../src/tunnel/const.js';
import { FrameDecoder } from '../../src/tunnel/frame.js';
import type { Stream } from '../../src/tunnel/index.js';
import { sessionPair } from './support/session-pair.js';
import { drain, feed } from './support/streams.js';

const KiB = 1024;
const MiB = 1024 * KiB;

type Header = { type: number; flags: number; streamId: number; length: number };

/** The WindowUpdate headers in what a transport recorded, read by the session's own decoder. */
function windowUpdates(sent: Buffer[]): Header[] {
  const found: Header[] = [];
  const decoder = new FrameDecoder({
    onFrame: (type, flags, streamId, length) => {
      if (type === TYPE_WINDOW_UPDATE) found.push({ type, flags, streamId, length });
    },
    onPayload: () => {},
    onDataEnd: () => {},
  });
  for (const chunk of sent) decoder.push(chunk);
  return found;
}

/** Pings measure the round trip: the first leaves when the session starts. */
const PINGS = { keepaliveIntervalMs: 60_000 };

test('a link with a 10 ms round trip and a reader that keeps up: the window doubles to --stream-window, each step asked for', async (t) => {
  const pair = sessionPair({ ...PINGS, streamWindow: 4 * MiB, initialStreamWindow: 512 * KiB }, { highWaterMark: 8 * MiB, delayMs: 5 });
  t.after(() => pair.close()); // also when an assertion fails: the pings would keep the process alive
  pair.clientTransport.record = true;
  pair.serverTransport.record = true;
  pair.server.on('stream', (stream: Stream) => stream.on('error', () => {}).resume()); // closed with the session
  const stream = pair.client.open().on('error', () => {});
  await feed(stream, 32 * MiB, 256 * KiB);
  await sleep(20);
  const grows = windowUpdates(pair.serverTransport.sent).filter((h) => h.flags === FLAG_GROW);
  const asks = windowUpdates(pair.clientTransport.sent).filter((h) => h.flags === 0 && h.length === 0);
  assert.deepEqual(grows.map((h) => h.length), [512 * KiB, MiB, 2 * MiB], 'grown 512 KiB → 1 → 2 → 4 MiB and no further');
  assert.ok(asks.length >= grows.length, `${asks.length} waits reported for ${grows.length} growths`);
});

test('a reader that does not read: the window does not grow and the sender stops at the initial window', async (t) => {
  const pair = sessionPair({ ...PINGS, streamWindow: 16 * MiB, initialStreamWindow: MiB }, { delayMs: 5 });
  t.after(() => pair.close()); // also when an assertion fails: the pings would keep the process alive
  pair.serverTransport.record = true;
  const accepted = once(pair.server, 'stream');
  const stream = pair.client.open().on('error', () => {}); // closed with the session
  stream.write(Buffer.from('x'));
  const [reader] = (await accepted) as [Stream];
  reader.on('error', () => {}).pause();
  void feed(stream, 8 * MiB, 64 * KiB).catch(() => {});
  await sleep(100);
  assert.equal(stream.bytesSent, MiB, 'the sender sent exactly the initial window');
  assert.ok(reader.bufferedBytes <= MiB, `the reader holds ${reader.bufferedBytes} bytes`);
  assert.equal(windowUpdates(pair.serverTransport.sent).filter((h) => h.flags & FLAG_GROW).length, 0, 'no window growth');
});

test('bytes arrive exact while windows grow on several streams both ways', async (t) => {
  const pair = sessionPair({ ...PINGS, streamWindow: 2 * MiB, initialStreamWindow: 256 * KiB }, { highWaterMark: 512 * KiB, delayMs: 2 });
  t.after(() => pair.close()); // also when an assertion fails: the pings would keep the process alive
  pair.serverTransport.record = true;
  pair.server.on('stream', (stream: Stream) => stream.pipe(stream));
  const results = await Promise.all(
    Array.from({ length: 4 }, async (_, k) => {
      const stream = pair.client.open();
      const [sent, received] = await Promise.all([feed(stream, 12 * MiB + k * 1237, 100 * KiB + k * 311), drain(stream)]);
      return received.sha256 === sent;
    }),
  );
  assert.deepEqual(results, [true, true, true, true]);
  assert.ok(windowUpdates(pair.serverTransport.sent).some((h) => h.flags & FLAG_GROW), 'windows grew');
});
