// Waiting for a process's listening socket without connecting to it: a probe connection would
// make socat fork, stunnel start a handshake and QEMU log a failed negotiation.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Child } from '../test/harness/index.js';

const POLL_MS = 20;

/** A TCP port on 127.0.0.1 that was free a moment ago, for programs that cannot report the one they bound. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

export function tcpListening(port: number): boolean {
  // /proc/net/tcp: local address as hex IP:port (127.0.0.1 is 0100007F), state 0A is LISTEN.
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[1] === local && fields[3] === '0A';
    });
}

export function unixListening(path: string): boolean {
  // /proc/net/unix: Flags 00010000 (__SO_ACCEPTCON) marks a listening socket; the path is last.
  return readFileSync('/proc/net/unix', 'utf8')
    .split('\n')
    .some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[3] === '00010000' && fields[7] === path;
    });
}

/** Polls `ready` until true; fails early, with its stderr, if `child` exits first. */
export async function waitUntil(what: string, ready: () => boolean, child: Child, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void child.exited.then(() => (exited = true));
  while (!ready()) {
    if (exited) throw new Error(`${what}: the process exited first: ${child.stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`${what}: not ready within ${timeoutMs} ms: ${child.stderr.trim()}`);
    await sleep(POLL_MS);
  }
}
