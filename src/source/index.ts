// The source proxy: a UNIX socket per route, every connection a stream on a tunnel session.
// Alone, one process listens and tunnels. With --connections N, the primary listens and hands
// each accepted connection to one of N workers, each holding its own tunnel connection.
import type { Worker } from 'node:cluster';
import type { Socket } from 'node:net';
import { watchCertificateExpiry } from '../certificate-expiry.js';
import { reloadOnHangup, type SourceConfig } from '../config.js';
import type { Logger } from '../log.js';
import { Registry, startMetrics, type Health } from '../metrics/index.js';
import { Connector } from '../tunnel/index.js';
import type { StatusDocument } from '../status/index.js';
import { VERSION } from '../version.js';
import { handleConnection } from './connection-handler.js';
import { listenRoutes } from './listening.js';

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
  /** Named again in the worker's Closed message, so the primary can count open streams per route. */
  id: number;
}

/** A worker's word that a handed-over connection has closed. */
interface Closed {
  type: 'nbd-tunnel-connection-closed';
  id: number;
}

/** One process: listens and tunnels. */
export async function runSource(config: SourceConfig, log: Logger): Promise<Running> {
  const tunnel = startTunnel(config, log);
  try {
    const listening = await listenRoutes(config, log, (socket, route, done) => {
      socket.once('close', done);
      tunnel.dispatch(socket, route);
    });
    const stopReload = reloadOnHangup(config, (next) => (tunnel.apply(next), listening.apply(next)), log);
    const metrics = await startMetrics(config.metrics, tunnel.registry, 'source', tunnel.health).catch(async (error: Error) => {
      stopReload();
      await listening.close();
      throw error;
    });
    return {
      readyFields: { ...listening.readyFields(), ...metrics.fields },
      status: () => ({ role: 'source', version: VERSION, pid: process.pid, ...tunnel.registry.status() }),
      stopAccepting: listening.stopAccepting,
      openStreams: tunnel.openStreams,
      async close() {
        stopReload();
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
  const stopReload = reloadOnHangup(config, tunnel.apply, log);
  const onMessage = (message: HandOver, handle: unknown): void => {
    if (message?.type !== 'nbd-tunnel-connection' || !handle) return;
    const socket = handle as Socket; // a net.Socket: the only handle the primary sends
    socket.allowHalfOpen = true; // QEMU may half-close; the reply direction must still drain
    socket.once('close', () => {
      const closed: Closed = { type: 'nbd-tunnel-connection-closed', id: message.id };
      if (process.connected) process.send?.(closed);
    });
    tunnel.dispatch(socket, message.route);
  };
  process.on('message', onMessage);
  // With --metrics, the worker answers the primary, which serves every worker's figures.
  const metrics = await startMetrics(config.metrics, tunnel.registry, 'source', tunnel.health);
  return {
    readyFields: { url: config.url },
    stopAccepting: () => process.off('message', onMessage),
    openStreams: tunnel.openStreams,
    async close() {
      stopReload();
      process.off('message', onMessage);
      await metrics.close();
      await tunnel.stop();
    },
  };
}

/** The primary with workers: listens, and sends each connection to the worker `pick` names. */
export async function runSourcePrimary(config: SourceConfig, log: Logger, pick: () => Worker | null): Promise<Running> {
  const handedOver = new Map<number, { worker: Worker; done: () => void }>();
  const watched = new WeakSet<Worker>();
  let lastId = 0;
  const finish = (id: number): void => {
    handedOver.get(id)?.done();
    handedOver.delete(id);
  };
  // A worker reports each connection's end; one that died took its connections with it.
  const watch = (worker: Worker): void => {
    if (watched.has(worker)) return;
    watched.add(worker);
    worker.on('message', (message: Closed) => message?.type === 'nbd-tunnel-connection-closed' && finish(message.id));
    worker.once('exit', () => {
      for (const [id, handed] of handedOver) if (handed.worker === worker) finish(id);
    });
  };
  const listening = await listenRoutes(config, log, (socket, route, done) => {
    const worker = pick();
    if (!worker) {
      log.error({ route }, 'stream refused: no worker is running');
      socket.destroy();
      done();
      return;
    }
    watch(worker);
    const handOver: HandOver = { type: 'nbd-tunnel-connection', route, id: ++lastId };
    handedOver.set(handOver.id, { worker, done });
    worker.send(handOver, socket);
  });
  // SIGHUP: the primary reloads its routes; the supervisor passes the signal on to the workers.
  const stopReload = reloadOnHangup(config, listening.apply, log);
  // The workers drain themselves when the supervisor stops them.
  return {
    readyFields: listening.readyFields(),
    stopAccepting: listening.stopAccepting,
    openStreams: () => 0,
    async close() {
      stopReload();
      await listening.close();
    },
  };
}

interface Tunnel {
  dispatch: Dispatch;
  registry: Registry;
  openStreams(): number;
  health: Health;
  /** SIGHUP: certificates for the next connection, limits for the next session. */
  apply(next: SourceConfig): void;
  /** Closes the sessions with GoAway; settles once they are gone (≤ 1 s). */
  stop(): Promise<void>;
}

function startTunnel(config: SourceConfig, log: Logger): Tunnel {
  const registry = new Registry();
  const expiry = config.tls ? watchCertificateExpiry(config.tls, log) : null;
  registry.certificateExpiry = expiry?.seconds ?? null;
  const observation = { registry, inspect: config.inspect };
  const connector = new Connector(
    { url: config.url, ...config.tls, servername: config.servername, proxy: config.proxy.proxy, token: config.token, session: config.session },
    log,
    (info, session) => registry.trackSession(info, session),
  );
  connector.start();
  return {
    registry,
    openStreams: () => connector.openStreams,
    health: () => connector.health(),
    dispatch: (socket, route) =>
      void handleConnection(socket, route, connector, observation, log).catch((error: Error) => {
        log.error({ route, reason: error.message }, 'stream failed: internal error');
        socket.destroy();
      }),
    apply(next) {
      Object.assign(config.session, next.session); // the connector reads it for each new session
      if (!next.tls) return;
      connector.setTls(next.tls);
      expiry?.update(next.tls);
      log.info({ crl: next.tls.crl?.file }, 'certificates reloaded; the next connection uses them');
    },
    stop: () => {
      expiry?.stop();
      return connector.stop();
    },
  };
}
