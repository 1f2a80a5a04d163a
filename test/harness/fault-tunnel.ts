// Pieces for fault tests: a tunnel whose destination keeps one port across restarts and may sit
// behind a TCP relay (reset, black hole, throttle), a rig link built on it, block-job progress,
// log counts, and a process's open file descriptors and resident memory from /proc.
import { readdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Pki } from './pki.js';
import { startProxy, type LogPredicate, type Proxy } from './proxies.js';
import type { LinkFactory } from './rig.js';
import type { StorageDaemon } from './storage-daemon.js';
import { startTcpRelay, type TcpRelay, type TcpRelayOptions } from './tcp-relay.js';

/** A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return address.port;
}

export interface FaultTunnelOptions {
  pki: Pki;
  /** Route name to the destination's UNIX socket. */
  destRoutes: Record<string, string>;
  /** Route name to the source's UNIX socket. */
  sourceRoutes: Record<string, string>;
  destArgs?: string[];
  sourceArgs?: string[];
  /** Environment variables (NBD_TUNNEL_*) for the destination and the source. */
  destEnv?: Record<string, string>;
  sourceEnv?: Record<string, string>;
  /** Put a TCP relay between source and destination, with these settings; absent: direct. */
  relay?: Omit<TcpRelayOptions, 'target'>;
  /** The destination's port; by default a free one picked at start, kept across restartDest(). */
  destPort?: number;
}

export interface FaultTunnel {
  /** The destination running now (a new one after restartDest). */
  readonly dest: Proxy;
  readonly source: Proxy;
  readonly relay: TcpRelay | null;
  readonly destPort: number;
  /** Every destination started, oldest first. */
  readonly dests: readonly Proxy[];
  /** Stops the destination with `signal` (default SIGKILL: a crash) and starts a new one on the same port. */
  restartDest(signal?: NodeJS.Signals): Promise<Proxy>;
  /** Stops the source, the destination and the relay. */
  stop(): Promise<void>;
}

const routeFlags = (routes: Record<string, string>): string[] =>
  Object.entries(routes).flatMap(([name, path]) => ['--route', `${name}=${path}`]);

/** A destination on a fixed loopback port, optionally a relay in front of it, and a source, all ready. */
export async function startFaultTunnel(options: FaultTunnelOptions): Promise<FaultTunnel> {
  const { pki } = options;
  const destPort = options.destPort ?? (await freePort());
  const destArgs = [
    'dest',
    '--listen',
    `127.0.0.1:${destPort}`,
    ...routeFlags(options.destRoutes),
    '--cert',
    pki.serverCert,
    '--key',
    pki.serverKey,
    '--ca',
    pki.caCert,
    ...(options.destArgs ?? []),
  ];
  const startDest = (): Promise<Proxy> => startProxy(destArgs, 'listening', 10_000, options.destEnv);
  const dests: Proxy[] = [await startDest()];
  let relay: TcpRelay | null = null;
  let source: Proxy | null = null;
  const stop = async (): Promise<void> => {
    // A source or destination that drains gets a few seconds, then SIGKILL.
    await Promise.all([source?.child.stop('SIGTERM', 3000), ...dests.map((d) => d.child.stop('SIGTERM', 3000))]);
    await relay?.close();
  };
  try {
    if (options.relay) relay = await startTcpRelay({ ...options.relay, target: { host: '127.0.0.1', port: destPort } });
    // The destination's certificate names localhost, hence localhost rather than 127.0.0.1.
    source = await startProxy(
      [
        'source',
        '--connect',
        `wss://localhost:${relay?.port ?? destPort}`,
        ...routeFlags(options.sourceRoutes),
        '--cert',
        pki.clientCert,
        '--key',
        pki.clientKey,
        '--ca',
        pki.caCert,
        ...(options.sourceArgs ?? []),
      ],
      'ready',
      10_000,
      options.sourceEnv,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  const started = source;
  return {
    get dest() {
      return dests[dests.length - 1];
    },
    source: started,
    relay,
    destPort,
    dests,
    async restartDest(signal: NodeJS.Signals = 'SIGKILL') {
      await dests[dests.length - 1].child.stop(signal);
      dests.push(await startDest());
      return dests[dests.length - 1];
    },
    stop,
  };
}

export interface FaultLinkOptions extends Omit<FaultTunnelOptions, 'pki' | 'destRoutes' | 'sourceRoutes'> {
  /** Routes beyond the rig's disks, e.g. to a second NBD server the test runs itself. */
  extraDestRoutes?: Record<string, string>;
  extraSourceRoutes?: Record<string, string>;
}

/**
 * A rig link (startRig's `connect`) that runs startFaultTunnel: every disk's route goes to the
 * rig's NBD server, its source socket is `<dir>/<route>.sock`. `tunnel()` is the running tunnel.
 */
export function faultLink(options: FaultLinkOptions): { connect: LinkFactory; tunnel(): FaultTunnel } {
  let running: FaultTunnel | null = null;
  return {
    async connect({ dir, pki, destSocket, routes }) {
      const sourceSocket = (route: string): string => join(dir, `${route}.sock`);
      running = await startFaultTunnel({
        ...options,
        pki,
        destRoutes: { ...Object.fromEntries(routes.map((r) => [r, destSocket])), ...options.extraDestRoutes },
        sourceRoutes: { ...Object.fromEntries(routes.map((r) => [r, sourceSocket(r)])), ...options.extraSourceRoutes },
      });
      const tunnel = running;
      return { clientSocket: sourceSocket, stop: () => tunnel.stop() };
    },
    tunnel() {
      if (!running) throw new Error('the fault tunnel has not been started');
      return running;
    },
  };
}

export interface JobProgress {
  offset: number;
  len: number;
  status: string;
  ready: boolean;
}

/** The job's entry in query-block-jobs, or null once it is gone. */
export async function jobProgress(daemon: StorageDaemon, jobId: string): Promise<JobProgress | null> {
  const jobs = await daemon.qmp.execute<Array<JobProgress & { device: string }>>('query-block-jobs');
  return jobs.find((j) => j.device === jobId) ?? null;
}

/**
 * Polls the job until `offset / len` reaches `fraction`; resolves with the progress then, or
 * null if the job went READY or away first. Rejects after `timeoutMs`.
 */
export async function waitJobProgress(daemon: StorageDaemon, jobId: string, fraction: number, timeoutMs = 60_000): Promise<JobProgress | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await jobProgress(daemon, jobId);
    if (job === null || job.ready) return null;
    if (job.len > 0 && job.offset / job.len >= fraction) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not reach ${fraction} within ${timeoutMs} ms: ${JSON.stringify(job)}`);
    await sleep(50);
  }
}

export function countLogs(proxy: Proxy, predicate: LogPredicate): number {
  let n = 0;
  for (const line of proxy.logs) if (predicate(line)) n++;
  return n;
}

/** Resolves once `count` lines match; rejects after `timeoutMs` with the count reached. */
export async function waitForLogCount(proxy: Proxy, predicate: LogPredicate, count: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Lines already counted are not looked at again.
  let scanned = 0;
  let seen = 0;
  for (;;) {
    for (; scanned < proxy.logs.length; scanned++) if (predicate(proxy.logs[scanned])) seen++;
    if (seen >= count) return;
    if (Date.now() > deadline) throw new Error(`only ${seen} of ${count} matching log lines within ${timeoutMs} ms`);
    await sleep(20);
  }
}

export interface ProcessStats {
  /** Entries in /proc/PID/fd. */
  fds: number;
  /** VmRSS from /proc/PID/status, in bytes. */
  rssBytes: number;
}

export async function processStats(pid: number): Promise<ProcessStats> {
  const [fds, status] = await Promise.all([readdir(`/proc/${pid}/fd`), readFile(`/proc/${pid}/status`, 'utf8')]);
  const rss = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!rss) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return { fds: fds.length, rssBytes: Number(rss[1]) * 1024 };
}
