import { createServer, type Socket } from 'node:net';

export interface CountingServer {
  /** Connections accepted so far. */
  readonly accepts: number;
  /** Stops listening and destroys any connections still open. */
  close(): Promise<void>;
}

/**
 * Listens on a UNIX socket and counts connections, so a test can assert that
 * nothing reached a destination. Connections are left open, silent, until the
 * peer closes them, unless `onConnection` does something else with them.
 */
export async function startCountingServer(socketPath: string, onConnection?: (socket: Socket) => void): Promise<CountingServer> {
  const open = new Set<Socket>();
  let accepts = 0;
  const server = createServer((socket) => {
    accepts++;
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    // A peer reset must not surface as an uncaught 'error'.
    socket.on('error', () => {});
    onConnection?.(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    get accepts() {
      return accepts;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of open) socket.destroy();
      await closed;
    },
  };
}
