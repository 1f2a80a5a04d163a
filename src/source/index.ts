// The source proxy: a UNIX socket per route, every connection a stream on a tunnel session.
// Alone, one process listens and tunnels. With --connections N, the primary listens and hands
// each accepted connection to one of N workers, each holding its own tunnel connection.
import type { Server, Socket } from 'node:net';
import { reloadOnHangup, type SourceConfig } from '../config.js';
import type { Logger } from '../log.js';
import { Registry, startMetrics } from '../metrics/index.js';
import type { StatusDocument } from '../status/index.js';
import { handleConnection } from './connection-handler.js';
import { Connector } from './connector.js';
import { clearStaleSocket, closeRoute, listenRoute, removeRouteSocket } from './route-listener.js';

export interface Running {
  /** Fields of the "ready" line. */
  readyFields: Record<string, unknown>;
  /** Drain, step one: take no new connections (the route sockets are removed now). */
  stopAccepting(): void;
  /** Streams still open: the drain waits for 0. */
  openStreams(): number;
  close(): Promise<void>;
  /** What /status would answer (for the terminal progress view). */
  status?(): StatusDocument;
}

/** Passes an accepted QEMU connection to the process that tunnels it. */
export type Dispatch = (socket: Socket, route: string) => void;

/** The IPC message that carries a connection from the primary to a worker. */
interface HandOver {
  type: 'nbd-tunnel-connection';
  route: string;
}

const readyFields = (config: SourceConfig) => ({ url: config.url, routes: Object.fromEntries(config.routes) });

/** One process: listens and tunnels. */
export async function runSource(config: SourceConfig, log: Logger): Promise<Running> {
  const tunnel = startTunnel(config, log);
  try {
    const listening = await listenAll(config, tunnel.dispatch);
    const metrics = await startMetrics(config.metrics, tunnel.registry, 'source').catch(async (error: Error) => {
      await listening.close();
      throw error;
    });
    return {
      readyFields: { ...readyFields(config), ...metrics.fields },
      status: () => ({ role: 'source', pid: process.pid, ...tunnel.registry.status() }),
      stopAccepting: listening.stopAccepting,
      openStreams: tunnel.openStreams,
      async close() {
        await metrics.close();
        await Promise.all([tunnel.stop(), listening.close()]);
      },
    };
  } catch (error) {
    void tunnel.stop();
    throw error;
  }
}

/** A worker: tunnels the connections the primary hands over. */
export async function runSourceWorker(config: SourceConfig, log: Logger): Promise<Running> {
  const tunnel = startTunnel(config, log);
  const onMessage = (message: HandOver, handle: unknown): void => {
    if (message?.type !== 'nbd-tunnel-connection' || !handle) return;
    const socket = handle as Socket; // a net.Socket: the only handle the primary sends
    socket.allowHalfOpen = true; // QEMU may half-close; the reply direction must still drain
    tunnel.dispatch(socket, message.route);
  };
  process.on('message', onMessage);
  return {
    readyFields: readyFields(config),
    stopAccepting: () => process.off('message', onMessage),
    openStreams: tunnel.openStreams,
    async close() {
      process.off('message', onMessage);
      await tunnel.stop();
    },
  };
}

/** The primary with workers: listens, and sends each connection to the worker `pick` names. */
export async function runSourcePrimary(
  config: SourceConfig,
  log: Logger,
  pick: () => { send(message: HandOver, socket: Socket): unknown } | null,
): Promise<Running> {
  const listening = await listenAll(config, (socket, route) => {
    const worker = pick();
    if (!worker) {
      log.error({ route }, 'stream refused: no worker is running');
      socket.destroy();
      return;
    }
    worker.send({ type: 'nbd-tunnel-connection', route }, socket);
  });
  // The workers drain themselves when the supervisor stops them.
  return { readyFields: readyFields(config), stopAccepting: listening.stopAccepting, openStreams: () => 0, close: () => listening.close() };
}

function startTunnel(config: SourceConfig, log: Logger): { dispatch: Dispatch; registry: Registry; openStreams(): number; stop(): Promise<void> } {
  const registry = new Registry();
  const observation = { registry, inspect: config.inspect };
  const connector = new Connector(
    { url: config.url, ...config.tls, servername: config.servername, token: config.token, session: config.session },
    log,
    registry,
  );
  connector.start();
  const stopReload = reloadOnHangup(config, (tls) => connector.setTls(tls), log, 'certificates reloaded; the next connection uses them');
  return {
    registry,
    openStreams: () => connector.openStreams,
    dispatch: (socket, route) =>
      void handleConnection(socket, route, connector, observation, log).catch((error: Error) => {
        log.error({ route, reason: error.message }, 'stream failed: internal error');
        socket.destroy();
      }),
    stop: () => {
      stopReload();
      return connector.stop();
    },
  };
}

/** Frees every route's path, listens on it, and on close stops listening and removes the files. */
async function listenAll(config: SourceConfig, dispatch: Dispatch): Promise<{ stopAccepting(): void; close(): Promise<void> }> {
  const listening: Array<{ server: Server; path: string }> = [];
  const closed = new Map<Server, Promise<void>>();
  // Synchronous, so that a second signal can exit right after it with no file left behind.
  const stopAccepting = (): void => {
    for (const { server, path } of listening) {
      if (!closed.has(server)) closed.set(server, closeRoute(server));
      removeRouteSocket(path); // only the files this process made
    }
  };
  const close = async (): Promise<void> => {
    stopAccepting();
    await Promise.all(closed.values());
  };
  try {
    for (const [route, path] of config.routes) {
      await clearStaleSocket(route, path);
      listening.push({ server: await listenRoute(route, path, config.socketAccess, (socket) => dispatch(socket, route)), path });
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { stopAccepting, close };
}
