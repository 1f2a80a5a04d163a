// The multiplexer's behaviour: windows, half-close, reset, stream table, keepalive, violations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { encodeHeader } from '../../src/tunnel/frame.js';
import { FLAG_SYN, TYPE_DATA, TYPE_GO_AWAY, TYPE_WINDOW_UPDATE } from '../../src/tunnel/const.js';
import type { Stream } from '../../src/tunnel/index.js';
import { sessionPair } from './support/session-pair.js';
import { drain, feed } from './support/streams.js';

/** Echo every accepted stream back to its sender. */
function echo(stream: Stream): void {
  stream.pipe(stream);
}

test('frames a session writes are the spec layout: SYN with window delta, data, FIN, GoAway', async () => {
  const pair = sessionPair({ streamWindow: 16 * 1024 * 1024 });
  pair.clientTransport.record = true;
  pair.server.on('stream', (s) => s.on('error', () => {}).resume());
  const stream = pair.client.open().on('error', () => {}); // the session is closed under it
  stream.end(Buffer.from('hello'));
  await sleep(10);
  pair.client.close();
  const wire = Buffer.concat(pair.clientTransport.sent).toString('hex');
  assert.equal(
    wire,
    '0001000100000001000c0000' + // WindowUpdate SYN, stream 1, delta 1 MiB (the initial window) - 256 KiB
      '000000000000000100000005' + '68656c6c6f' + // Data, stream 1, 5 bytes "hello"
      '000100040000000100000000' + // WindowUpdate FIN
      '000300000000000000000000', // GoAway normal
  );
});

test('random chunk boundaries: many streams both ways carry exact bytes', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 }), fc.integer({ min: 1, max: 6 }), async (seed, streams) => {
      const rng = fc.sample(fc.integer({ min: 1, max: 9000 }), { seed, numRuns: 4096 });
      let i = 0;
      const rechunk = (bytes: Buffer): Buffer[] => {
        const out: Buffer[] = [];
        for (let at = 0; at < bytes.length; ) {
          const n = rng[i++ % rng.length];
          out.push(bytes.subarray(at, at + n));
          at += n;
        }
        return out;
      };
      const pair = sessionPair({ streamWindow: 256 * 1024 }, { rechunk, highWaterMark: 64 * 1024 });
      pair.server.on('stream', echo);
      try {
        const results = await Promise.all(
          Array.from({ length: streams }, async (_, k) => {
            const stream = pair.client.open();
            const [sent, received] = await Promise.all([feed(stream, 300_000 + k * 7919, 5000 + k * 333), drain(stream)]);
            return sent === received.sha256;
          }),
        );
        assert.ok(results.every(Boolean));
      } finally {
        pair.close();
      }
    }),
    { numRuns: 15 },
  );
});

test('window: a paused reader holds at most one window; the writer waits, then all arrives', async () => {
  const window = 256 * 1024;
  const pair = sessionPair({ streamWindow: window });
  try {
    const accepted = once(pair.server, 'stream');
    const writer = pair.client.open();
    const [reader] = (await Promise.all([accepted, Promise.resolve(writer.write(Buffer.alloc(1)))]))[0] as [Stream];
    reader.pause();
    reader.on('error', () => {}); // half-open when the session closes at the end
    writer.on('error', () => {});
    const total = 4 * window;
    const fed = feed(writer, total, 32 * 1024);
    await sleep(50);
    assert.ok(reader.bufferedBytes <= window, `reader buffered ${reader.bufferedBytes} > window ${window}`);
    assert.ok(writer.bytesSent <= window, `writer sent ${writer.bytesSent} bytes with a window of ${window}`);
    reader.read(1); // the first byte, written above
    const received = await drain(reader);
    assert.equal(received.bytes, total);
    assert.equal(received.sha256, await fed);
  } finally {
    pair.close();
  }
});

test('half-close: after one side ends, the other still sends its reply to completion', async () => {
  const pair = sessionPair();
  try {
    pair.server.on('stream', async (stream: Stream) => {
      const got = await drain(stream); // ends when the client half-closes
      stream.end(Buffer.from(`got ${got.bytes}`));
    });
    const stream = pair.client.open();
    stream.end(Buffer.alloc(100_000));
    const reply = await drain(stream);
    assert.equal(reply.bytes, 'got 100000'.length);
    await sleep(10);
    assert.equal(pair.client.streamCount, 0);
    assert.equal(pair.server.streamCount, 0);
  } finally {
    pair.close();
  }
});

test('reset: destroying a stream resets it on the peer; the session and other streams go on', async () => {
  const pair = sessionPair();
  try {
    const accepted: Stream[] = [];
    pair.server.on('stream', (s: Stream) => {
      accepted.push(s);
      if (accepted.length === 2) echo(s);
    });
    const doomed = pair.client.open();
    doomed.write(Buffer.from('x'));
    await sleep(10);
    const peerError = once(accepted[0], 'error');
    doomed.destroy();
    const [error] = (await peerError) as [Error & { code?: string }];
    assert.equal(error.code, 'ECONNRESET');
    assert.match(error.message, /reset by the peer/);
    const survivor = pair.client.open();
    const [sent, got] = await Promise.all([feed(survivor, 200_000), drain(survivor)]);
    assert.equal(got.sha256, sent);
    assert.equal(pair.client.closed, false);
  } finally {
    pair.close();
  }
});

test('1000 streams opened and closed leave both stream tables empty', async () => {
  const pair = sessionPair();
  try {
    pair.server.on('stream', echo);
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          const s = pair.client.open();
          s.end(Buffer.from('ping'));
          const got = await drain(s);
          assert.equal(got.bytes, 4);
        }),
      );
    }
    await sleep(10);
    assert.equal(pair.client.streamCount, 0);
    assert.equal(pair.server.streamCount, 0);
  } finally {
    pair.close();
  }
});

test('a peer sending past its window closes the session as a protocol violation', async () => {
  const pair = sessionPair({ streamWindow: 256 * 1024 });
  pair.server.on('stream', (s: Stream) => s.on('error', () => {}).pause());
  const closed = once(pair.server, 'close');
  pair.serverTransport.inject(encodeHeader(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0));
  pair.serverTransport.inject(encodeHeader(TYPE_DATA, 0, 1, 256 * 1024 + 1));
  const [reason] = (await closed) as [Error];
  assert.match(reason.message, /protocol violation by peer: stream 1: peer sent 262145 bytes with 262144 bytes of window left/);
});

test('a Data frame longer than the frame limit is a protocol violation, even within the window', async () => {
  const pair = sessionPair({ streamWindow: 16 * 1024 * 1024, maxFramePayload: 64 * 1024 });
  pair.server.on('stream', (s: Stream) => s.on('error', () => {}).pause());
  const closed = once(pair.server, 'close');
  pair.serverTransport.inject(encodeHeader(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0));
  pair.serverTransport.inject(encodeHeader(TYPE_DATA, 0, 1, 64 * 1024 + 1));
  const [reason] = (await closed) as [Error];
  assert.match(reason.message, /Data frame of 65537 bytes exceeds the frame limit of 65536/);
});

test('a GoAway with an error code closes the session; a normal one only stops new streams', async () => {
  const pair = sessionPair();
  pair.serverTransport.inject(encodeHeader(TYPE_GO_AWAY, 0, 0, 0));
  assert.throws(() => pair.server.open(), /going away/);
  const closed = once(pair.server, 'close');
  pair.serverTransport.inject(encodeHeader(TYPE_GO_AWAY, 0, 0, 1));
  const [reason] = (await closed) as [Error];
  assert.match(reason.message, /GoAway\(protocol error\)/);
});

test('keepalive: pings are answered with an RTT, and a silent peer fails the session', async () => {
  const pair = sessionPair({ keepaliveIntervalMs: 20, keepaliveTimeoutMs: 100 });
  try {
    const [rtt] = (await once(pair.client, 'rtt')) as [number];
    assert.ok(rtt >= 0);
    const closed = once(pair.client, 'close');
    pair.serverTransport.blackhole = true; // the server's answers never arrive
    pair.clientTransport.blackhole = true;
    const [reason] = (await closed) as [Error];
    assert.match(reason.message, /keepalive timeout/);
  } finally {
    pair.close();
  }
});

test('more streams than the peer allows are reset, the session stays up', async () => {
  const pair = sessionPair({ maxStreams: 2 });
  try {
    pair.server.on('stream', (s: Stream) => s.on('error', () => {}).resume());
    const a = pair.client.open().on('error', () => {}); // closed with the session at the end
    const b = pair.client.open().on('error', () => {});
    const refused = once(pair.server, 'refused');
    const c = pair.client.open();
    const [error] = (await once(c, 'error')) as [Error & { code: string }];
    assert.equal(error.message, 'stream 5 was refused by the peer: its session already has 2 streams open, the limit (--max-streams 2)');
    assert.equal(error.code, 'ESTREAMLIMIT');
    assert.deepEqual(await refused, [5, 2]);
    assert.equal(a.destroyed || b.destroyed, false);
    assert.equal(pair.server.streamCount, 2);
  } finally {
    pair.close();
  }
});
