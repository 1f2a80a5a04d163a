// The source proxy: a UNIX socket per route, every connection a stream on one tunnel session.
import type { Server } from 'node:net';
import type { SourceConfig } from '../config.js';
import type { Logger } from '../log.js';
import { handleConnection } from './connection-handler.js';
import { Connector } from './connector.js';
import { closeRoute, listenRoute } from './route-listener.js';

export { ListenError } from './route-listener.js';

export interface RunningSource {
  close(): Promise<void>;
}

export async function runSource(config: SourceConfig, log: Logger): Promise<RunningSource> {
  const connector = new Connector(
    { url: config.url, ...config.tls, servername: config.servername, token: config.token, session: config.session },
    log,
  );
  const listeners: Array<{ server: Server; path: string }> = [];
  const closeAll = () => Promise.all(listeners.map(({ server, path }) => closeRoute(server, path)));
  try {
    for (const [route, path] of config.routes) {
      const server = await listenRoute(route, path, (socket) =>
        handleConnection(socket, route, connector, log).catch((error: Error) => {
          log.error({ route, reason: error.message }, 'stream failed: internal error');
          socket.destroy();
        }),
      );
      listeners.push({ server, path });
    }
  } catch (error) {
    await closeAll();
    throw error;
  }
  connector.start();
  log.info({ url: config.url, routes: Object.fromEntries(config.routes) }, 'ready');
  return {
    async close() {
      connector.stop();
      await closeAll();
    },
  };
}
