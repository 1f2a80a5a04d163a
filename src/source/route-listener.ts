// A UNIX socket per route for QEMU to connect to. A stale socket file (nothing answers on it)
// is replaced; a live one, or a path that is not a socket, is refused.
import { chmodSync, chownSync, lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { LOCAL_HIGH_WATER_MARK } from '../tunnel/index.js';

/** Listens on a path that clearStaleSocket has freed. */
/** Who may connect to a route's socket: its mode and, optionally, its group (QEMU's). */
export interface SocketAccess {
  mode: number;
  gid: number | undefined;
}

export async function listenRoute(
  route: string,
  path: string,
  access: SocketAccess,
  onConnection: (socket: Socket) => void,
): Promise<Server> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, highWaterMark: LOCAL_HIGH_WATER_MARK }, onConnection);
  // Created owner-only, then opened up to --socket-mode: no moment where others may connect.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(new Error(`--route ${route}=${path}: cannot listen: ${error.code ?? error.message}`)),
      );
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(umask);
  }
  try {
    if (access.gid !== undefined) chownSync(path, -1, access.gid);
    chmodSync(path, access.mode);
  } catch (error) {
    server.close();
    throw new Error(`--route ${route}=${path}: cannot set the socket's group or mode: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return server;
}

export function closeRoute(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Removes a route's socket file on shutdown, so nothing is left behind. */
export function removeRouteSocket(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Makes the path free for listening: removes a stale socket, refuses a live one or a non-socket. */
export async function clearStaleSocket(route: string, path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new Error(`--route ${route}=${path}: the path exists and is not a socket`);
  if (await answers(path)) throw new Error(`--route ${route}=${path}: another process is listening on this socket`);
  unlinkSync(path);
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
