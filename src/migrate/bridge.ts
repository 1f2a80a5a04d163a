// QEMU's way into the tunnel during `nbd-tunnel migrate`: a UNIX socket beside its QMP socket
// whose every connection becomes a stream to one of the migration's routes on our session.
import { statSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import { LOCAL_HIGH_WATER_MARK, openDeadlineMs, relay, requestOpen, type Session } from '../tunnel/index.js';
import { clearStaleSocket, closeServer, listenUnix, removeSocketFile } from '../unix-socket.js';

export interface Bridge {
  readonly path: string;
  /**
   * Stops listening. `graceMs`: how long QEMU's connections may take to end by themselves (a
   * finished migration closes them once its last bytes are through); then they are closed.
   */
  close(graceMs?: number): Promise<void>;
}

/** Group and mode of the socket: QEMU's group (the QMP socket's) may connect, nobody else. */
const BRIDGE_MODE = 0o660;

export async function openBridge(path: string, route: string, session: Session, qmpSocket: string, log: Logger): Promise<Bridge> {
  const label = `migration socket ${path}`;
  await clearStaleSocket(label, path);
  const live = new Set<Socket>();
  const onConnection = (socket: Socket): void => {
    live.add(socket);
    socket.once('close', () => live.delete(socket));
    void carry(socket, route, session, log);
  };
  const server: Server = await listenUnix(label, path, { mode: BRIDGE_MODE, gid: statSync(qmpSocket).gid }, { allowHalfOpen: true, pauseOnConnect: true, highWaterMark: LOCAL_HIGH_WATER_MARK }, onConnection);
  return {
    path,
    async close(graceMs = 0) {
      const closed = closeServer(server);
      removeSocketFile(path);
      // Settles when every connection has ended (the server's close waits for them), or after the grace.
      await Promise.race([closed, sleep(graceMs, undefined, { ref: false })]);
      for (const socket of live) socket.destroy();
      await closed;
    },
  };
}

async function carry(socket: Socket, route: string, session: Session, log: Logger): Promise<void> {
  const started = Date.now();
  socket.on('error', () => {}); // reported by relay() or below
  const stream = session.open();
  const streamLog = log.child({ route, stream: stream.id });
  try {
    await requestOpen(stream, { route }, openDeadlineMs(session));
  } catch (error) {
    streamLog.error({ reason: (error as Error).message }, 'migration stream refused');
    socket.destroy();
    return;
  }
  streamLog.debug('stream opened');
  await relay(stream, socket, 'source', streamLog, started);
}
