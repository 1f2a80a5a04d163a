// Plain TCP, no encryption: the cost of relaying bytes through two user-space hops and TCP.
import { join } from 'node:path';
import { freePort, tcpListening, unixListening, waitUntil } from '../listening.js';
import { buildPath } from './builder.js';
import type { PathHandle, PathOptions } from './types.js';

/**
 * socat copies through an 8 KiB buffer by default, a handicap no one would deploy for bulk
 * transfer; 128 KiB lets it move what the socket holds per call. TCP_NODELAY as the tunnel uses.
 */
const TUNING = ['-b', String(128 << 10)];

export function startSocat(options: PathOptions): Promise<PathHandle> {
  return buildPath(options, async (b) => {
    const port = await freePort();
    const server = await b.spawn('socat dest', 'socat', [...TUNING, `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,nodelay`, `UNIX-CONNECT:${options.destSocket}`]);
    await waitUntil('socat dest', () => tcpListening(port), server);
    const connectPort = await b.via(port);
    const sockets = new Map(options.routes.map((route) => [route, join(options.dir, `${route}.sock`)]));
    for (const [route, socket] of sockets) {
      const client = await b.spawn('socat source', 'socat', [...TUNING, `UNIX-LISTEN:${socket},fork`, `TCP:127.0.0.1:${connectPort},nodelay`]);
      await waitUntil(`socat source ${route}`, () => unixListening(socket), client);
    }
    return (route) => sockets.get(route)!;
  });
}
