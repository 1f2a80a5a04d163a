// Connects to a route's UNIX socket on the destination, with errno-specific messages.
import { stat } from 'node:fs/promises';
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
  ENOTSOCK: "is not a socket (check the destination's route for it)",
};

/** Why `path` cannot be connected to, as one sentence naming the path and errno. */
export function socketFailure(path: string, code: string, hint = ERRNO_HINTS[code] ?? 'failed'): ConnectError {
  return new ConnectError(`destination socket ${path} ${hint}: ${code}`, code);
}

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
      void errnoOf(path, error.code ?? 'EIO').then((code) => reject(socketFailure(path, code)));
    };
    socket.on('error', onError);
  });
}

/** Connecting to a file that is not a socket is refused too (ECONNREFUSED): say which it is. */
async function errnoOf(path: string, code: string): Promise<string> {
  if (code !== 'ECONNREFUSED') return code;
  const isSocket = await stat(path).then((s) => s.isSocket(), () => true);
  return isSocket ? code : 'ENOTSOCK';
}
