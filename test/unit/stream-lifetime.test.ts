// Streams end on both sides however they end: the cases a long-running sidecar met, where a
// stream stayed in a session's table (and counted against --max-streams) after its sockets were gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Stream } from '../../src/tunnel/index.js';
import { splice } from '../../src/tunnel/splice.js';
import { makeTempDir, removeDir } from '../harness/tmpdir.js';
import { sessionPair } from './support/session-pair.js';

// Resumable sessions only: a plain yamux stream is forgotten once both FINs have passed.
test('a reader that fails after both FINs (a client that closed without reading the reply) leaves no stream behind', async () => {
  const pair = sessionPair({ resumeTimeoutMs: 60_000 });
  try {
    const serverClosed = new Promise<void>((resolve) =>
      pair.server.on('stream', (s: Stream) => {
        s.on('error', () => {}).on('close', resolve).resume();
        s.on('end', () => s.end(Buffer.from('reply')));
      }),
    );
    const client = pair.client.open().on('error', () => {});
    client.end(Buffer.from('request'));
    await serverClosed; // closed cleanly on the server: both FINs passed
    await sleep(10); // the reply and the server's FIN have reached the client, whose reader never read
    assert.equal(pair.client.streamCount, 1);
    client.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    await sleep(10);
    assert.equal(pair.client.streamCount, 0, 'client stream table');
    assert.equal(pair.server.streamCount, 0, 'server stream table');
  } finally {
    pair.close();
  }
});

test('a peer reset reaches a stream closed cleanly and waiting for its fin-ack', async () => {
  const pair = sessionPair({ resumeTimeoutMs: 60_000 });
  try {
    const serverClosed = new Promise<void>((resolve) =>
      pair.server.on('stream', (s: Stream) => s.on('error', () => {}).on('close', resolve).resume().end(Buffer.from('unread reply'))),
    );
    const client = pair.client.open().on('error', () => {});
    client.end(Buffer.from('x'));
    await serverClosed;
    await sleep(10);
    // The client side has everything too but its reader is gone: it resets instead of fin-acking.
    assert.equal(pair.server.streamCount, 1, 'server waits for the fin-ack');
    client.destroy(new Error('reader gone'));
    await sleep(10);
    assert.equal(pair.server.streamCount, 0);
    assert.equal(pair.client.streamCount, 0);
  } finally {
    pair.close();
  }
});

function sink(): Duplex {
  return new Duplex({ allowHalfOpen: true, read() {}, write: (_chunk, _encoding, callback) => callback() });
}

test('splice: a socket end that onEnd turns into an error closes the other side, after the socket finished writing', async () => {
  // As on the destination: the stream's FIN ends the socket to the NBD server, which then
  // closes mid-session; that end must reset the stream, not leave it half-open for ever.
  const dir = await makeTempDir('splice-');
  const server = createServer({ allowHalfOpen: true }, (peer) => peer.on('end', () => peer.end()).resume());
  try {
    server.listen(join(dir, 'nbd.sock'));
    await once(server, 'listening');
    const socket = createConnection({ path: join(dir, 'nbd.sock'), allowHalfOpen: true });
    await once(socket, 'connect');
    const stream = sink();
    const failure = new Error('ECONNRESET: the NBD server closed the connection');
    const done = splice(socket, stream, () => failure);
    stream.push(null);
    const result = await Promise.race([done, sleep(2_000).then(() => 'splice never settled')]);
    assert.equal(result, failure);
    assert.equal(stream.destroyed, true);
    assert.equal(socket.destroyed, true);
  } finally {
    server.close();
    await removeDir(dir);
  }
});
