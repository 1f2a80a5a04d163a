// Pieces for fault tests: the tunnel behind a TCP relay (reset, black hole, throttle), a rig
// link built on it, block-job progress, log counts, and a process's open file descriptors and
// resident memory from /proc.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTunnel, type LogPredicate, type Proxy, type Tunnel, type TunnelOptions } from './proxies.js';
import type { LinkFactory } from './rig.js';
import type { StorageDaemon } from './storage-daemon.js';
import { startTcpRelay, type TcpRelay, type TcpRelayOptions } from './tcp-relay.js';

export interface FaultTunnelOptions extends Omit<TunnelOptions, 'connectVia'> {
  /** Put a TCP relay between source and destination, with these settings; absent: direct. */
  relay?: Omit<TcpRelayOptions, 'target'>;
}

export interface FaultTunnel extends Tunnel {
  readonly relay: TcpRelay | null;
}

/** startTunnel(), with the source connecting through a relay when one is asked for. */
export async function startFaultTunnel(options: FaultTunnelOptions): Promise<FaultTunnel> {
  const relaySettings = options.relay;
  // Set by connectVia, which startTunnel calls once the destination listens.
  const via: { relay: TcpRelay | null } = { relay: null };
  const connectVia = relaySettings
    ? async (port: number): Promise<number> => {
        via.relay = await startTcpRelay({ ...relaySettings, target: { host: '127.0.0.1', port } });
        return via.relay.port;
      }
    : undefined;
  let tunnel: Tunnel;
  try {
    tunnel = await startTunnel({ ...options, connectVia });
  } catch (error) {
    await via.relay?.close();
    throw error;
  }
  return {
    get dest() {
      return tunnel.dest;
    },
    source: tunnel.source,
    port: tunnel.port,
    relay: via.relay,
    restartDest: (signal) => tunnel.restartDest(signal),
    async stop() {
      await tunnel.stop();
      await via.relay?.close();
    },
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
