// Real QEMU NBD traffic for the inspector's tests: qemu-nbd behind a recording relay, and a
// tiny raw NBD client for what qemu-io will not send (writes to a read-only export).
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnChild, type Child } from '../../harness/child.js';
import type { Script } from './nbd-wire.js';

/** Starts `qemu-nbd` serving `image` on a UNIX socket in `dir`; resolves once it accepts connections. */
export async function startQemuNbd(
  dir: string,
  image: string,
  exportName: string,
  extraArgs: readonly string[] = [],
): Promise<{ child: Child; socket: string }> {
  const socket = join(dir, 'qemu-nbd.sock');
  const child = await spawnChild('qemu-nbd', ['--persistent', '-k', socket, '-x', exportName, ...extraArgs, image]);
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.proc.exitCode !== null) throw new Error(`qemu-nbd exited with ${child.proc.exitCode}: ${child.stderr}`);
      if (existsSync(socket) && (await canConnect(socket))) return { child, socket };
      if (Date.now() > deadline) throw new Error(`qemu-nbd did not listen on ${socket}: ${child.stderr}`);
      await sleep(20);
    }
  } catch (err) {
    await child.stop('SIGKILL');
    throw err;
  }
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(path);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/**
 * A UNIX-socket relay in front of `target` that records, for each connection, both directions
 * in the order the bytes arrived (client → server is 'toDest').
 */
export class RecordingRelay {
  readonly path: string;
  private readonly server: net.Server;
  private readonly sessions: Array<{ script: Script; done: Promise<void> }> = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(path: string, server: net.Server) {
    this.path = path;
    this.server = server;
  }

  static async start(path: string, target: string): Promise<RecordingRelay> {
    const server = net.createServer({ pauseOnConnect: true });
    const relay = new RecordingRelay(path, server);
    server.on('connection', (client) => relay.accept(client, target));
    server.listen(path);
    await once(server, 'listening');
    return relay;
  }

  /** Number of connections so far. */
  get connections(): number {
    return this.sessions.length;
  }

  /** The recording of connection `index`, once both sides have closed. */
  async recording(index: number): Promise<Script> {
    const session = this.sessions[index];
    if (session === undefined) throw new Error(`no connection ${index} (${this.sessions.length} so far)`);
    await session.done;
    return session.script;
  }

  async close(): Promise<void> {
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket, target: string): void {
    const script: Script = [];
    const upstream = net.connect(target);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const closed = (sock: net.Socket) =>
      new Promise<void>((resolve) => {
        sock.once('close', () => {
          this.sockets.delete(sock);
          resolve();
        });
      });
    const done = Promise.all([closed(client), closed(upstream)]).then(() => undefined);
    this.sessions.push({ script, done });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    upstream.once('connect', () => {
      client.on('data', (data: Buffer) => {
        script.push({ dir: 'toDest', data: Buffer.from(data) });
        upstream.write(data);
      });
      upstream.on('data', (data: Buffer) => {
        script.push({ dir: 'toSource', data: Buffer.from(data) });
        client.write(data);
      });
      client.on('end', () => upstream.end());
      upstream.on('end', () => client.end());
      client.resume();
    });
  }
}

/** A minimal NBD client: writes what it is given, reads exactly what it asks for. */
export class RawNbdClient {
  private buffered: Buffer[] = [];
  private length = 0;
  private waiter: (() => void) | null = null;
  private ended = false;

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (data: Buffer) => {
      this.buffered.push(data);
      this.length += data.length;
      this.waiter?.();
    });
    sock.on('end', () => {
      this.ended = true;
      this.waiter?.();
    });
    sock.on('error', () => {
      this.ended = true;
      this.waiter?.();
    });
  }

  static async connect(path: string): Promise<RawNbdClient> {
    const sock = net.connect(path);
    await once(sock, 'connect');
    return new RawNbdClient(sock);
  }

  write(data: Buffer): void {
    this.sock.write(data);
  }

  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.length < n) {
      if (this.ended) throw new Error(`connection ended with ${this.length} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.length})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
    const all = Buffer.concat(this.buffered);
    this.buffered = [all.subarray(n)];
    this.length -= n;
    return all.subarray(0, n);
  }

  /** Reads a fixed-newstyle option reply: header, then its data. */
  async readOptionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const header = await this.read(20);
    const length = header.readUInt32BE(16);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data: await this.read(length) };
  }

  /** Ends the connection and waits for it to close. */
  async close(): Promise<void> {
    if (this.sock.destroyed) return;
    const closed = once(this.sock, 'close');
    this.sock.end();
    await closed;
  }
}
