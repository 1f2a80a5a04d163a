// A UNIX socket per route for QEMU to connect to. A stale socket file (nothing answers on it)
// is replaced; a live one, or a path that is not a socket, is refused.
import { lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class ListenError extends Error {}

export async function listenRoute(route: string, path: string, onConnection: (socket: Socket) => void): Promise<Server> {
  await clearStaleSocket(route, path);
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(new ListenError(`--route ${route}=${path}: cannot listen: ${error.code ?? error.message}`)),
    );
    server.listen(path, () => resolve());
  });
  return server;
}

/** Stops listening and removes the socket file, so nothing is left behind. */
export function closeRoute(server: Server, path: string): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    try {
      unlinkSync(path);
    } catch {
      // already gone
    }
  });
}

async function clearStaleSocket(route: string, path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new ListenError(`--route ${route}=${path}: the path exists and is not a socket`);
  if (await answers(path)) throw new ListenError(`--route ${route}=${path}: another process is listening on this socket`);
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
