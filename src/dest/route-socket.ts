// Connects to a route's UNIX socket on the destination, with errno-specific messages.
import { createConnection, type IpcNetConnectOpts, type Socket } from 'node:net';
import type { DuplexOptions } from 'node:stream';
import { LOCAL_HIGH_WATER_MARK } from '../tunnel/index.js';

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
