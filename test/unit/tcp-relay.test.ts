// The harness's fault-injection relay: bytes arrive complete and in order through delay,
// throttle and a small hold bound; half-close, reset and black hole behave as documented.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTcpRelay, type TcpRelayOptions } from '../harness/tcp-relay.js';

/** An echo-like server: hashes what it receives; on the client's FIN it answers with the hash and ends. */
async function startHashServer(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const hash = createHash('sha256');
    socket.on('data', (chunk) => hash.update(chunk));
    socket.on('end', () => socket.end(hash.digest('hex')));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return { server, port: address.port, sockets };
}

async function withRelay(options: Omit<TcpRelayOptions, 'target'>, body: (relayPort: number, relay: Awaited<ReturnType<typeof startTcpRelay>>, upstream: Set<Socket>) => Promise<void>): Promise<void> {
  const { server, port, sockets } = await startHashServer();
  const relay = await startTcpRelay({ target: { host: '127.0.0.1', port }, ...options });
  try {
    await body(relay.port, relay, sockets);
  } finally {
    await relay.close();
    for (const s of sockets) s.destroy();
    server.close();
  }
}

async function connect(port: number): Promise<Socket> {
  const socket = createConnection({ host: '127.0.0.1', port, allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

/** Sends `data`, half-closes, and resolves with the server's answer (which crossed after our FIN). */
async function sendAndReadAnswer(socket: Socket, data: Buffer): Promise<string> {
  let answer = '';
  socket.setEncoding('utf8');
  socket.on('data', (text: string) => (answer += text));
  socket.end(data);
  await once(socket, 'end');
  return answer;
}

test('8 MiB crosses intact through delay, throttle and a 256 KiB hold bound, and half-close carries the reply', async () => {
  await withRelay({ oneWayDelayMs: 5, rateBytesPerSecond: 200 << 20, maxHeldBytes: 256 << 10 }, async (port) => {
    const data = randomBytes(8 << 20);
    const answer = await sendAndReadAnswer(await connect(port), data);
    assert.equal(answer, createHash('sha256').update(data).digest('hex'));
  });
});

test('resetAll resets the client side', async () => {
  await withRelay({}, async (port, relay) => {
    const socket = await connect(port);
    socket.write('x');
    while (relay.open === 0) await sleep(5);
    const error = once(socket, 'error');
    relay.resetAll();
    const [err] = (await error) as [NodeJS.ErrnoException];
    assert.equal(err.code, 'ECONNRESET');
  });
});

test('blackhole holds bytes with the connection open, then delivers them in order', async () => {
  await withRelay({}, async (port, relay, upstream) => {
    const socket = await connect(port);
    while (upstream.size === 0) await sleep(5);
    relay.blackhole(true);
    const data = randomBytes(1 << 20);
    const answer = sendAndReadAnswer(socket, data);
    let settled = false;
    void answer.finally(() => (settled = true));
    await sleep(200);
    assert.equal(settled, false, 'nothing crossed while black-holed');
    assert.equal(socket.destroyed, false);
    relay.blackhole(false);
    assert.equal(await answer, createHash('sha256').update(data).digest('hex'));
  });
});
