// Resolves a stream's route against the allowlist and connects to its UNIX socket.
import { createConnection, type IpcNetConnectOpts, type Socket } from 'node:net';
import type { DuplexOptions } from 'node:stream';
import { LOCAL_HIGH_WATER_MARK, ROUTE_NAME } from '../tunnel/index.js';

export type Resolution = { ok: true; path: string } | { ok: false; code: string; message: string };

export function resolveRoute(routes: ReadonlyMap<string, string>, route: string): Resolution {
  if (!ROUTE_NAME.test(route)) {
    return { ok: false, code: 'bad-route', message: `route name ${JSON.stringify(route.slice(0, 140))} is not valid` };
  }
  const path = routes.get(route);
  if (path === undefined) {
    return { ok: false, code: 'unknown-route', message: `route '${route}' is not configured on the destination` };
  }
  return { ok: true, path };
}

export class ConnectError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

const ERRNO_HINTS: Readonly<Record<string, string>> = {
  ENOENT: 'does not exist (is the QEMU NBD server started?)',
  ECONNREFUSED: 'refused the connection',
  EACCES: 'is not accessible to this process',
};

/** Connects to a destination socket, failing with a message that names the path and errno. */
export function connectRouteSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // net.Socket passes Duplex options on; @types/node's IpcNetConnectOpts just does not list them.
    const options: IpcNetConnectOpts & DuplexOptions = {
      path,
      allowHalfOpen: true,
      readableHighWaterMark: LOCAL_HIGH_WATER_MARK,
      writableHighWaterMark: LOCAL_HIGH_WATER_MARK,
    };
    const socket = createConnection(options);
    // onError stays attached: after connect, a late error only re-rejects a settled promise,
    // and relay() reports it.
    socket.once('connect', () => resolve(socket));
    const onError = (error: NodeJS.ErrnoException): void => {
      const code = error.code ?? 'EIO';
      reject(new ConnectError(`destination socket ${path} ${ERRNO_HINTS[code] ?? 'failed'}: ${code}`, code));
    };
    socket.on('error', onError);
  });
}
