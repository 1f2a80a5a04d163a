// Starts the real nbd-tunnel CLI (dist/cli.js) as child processes and reads its JSON log lines.
import { fileURLToPath } from 'node:url';
import { spawnChild, type Child } from './child.js';
import type { Pki } from './pki.js';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };
export type LogPredicate = (line: LogLine) => boolean;

export interface Proxy {
  readonly child: Child;
  readonly logs: LogLine[];
  /** Resolves with the first line, past or future, that matches; rejects after timeoutMs listing what was seen. */
  waitForLog(predicate: LogPredicate, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

/** Variables that would send a source through an HTTP proxy: a test sets them itself, or none apply. */
const PROXY_VARIABLES = new Set(['https_proxy', 'HTTPS_PROXY', 'no_proxy', 'NO_PROXY']);

/** This process's environment for a CLI child, without this machine's proxy settings, plus `env`. */
export function cliEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !PROXY_VARIABLES.has(name))), ...env };
}

/**
 * `env`: variables added to this process's environment for the proxy (NBD_TUNNEL_* settings,
 * HTTPS_PROXY); this machine's own proxy settings are left out. `nodeArgs`: options for node
 * itself (the benchmark's --cpu-prof).
 */
export async function startProxy(args: readonly string[], ready: string, timeoutMs = 10_000, env?: Record<string, string>, nodeArgs: readonly string[] = []): Promise<Proxy> {
  const child = await spawnChild(process.execPath, [...nodeArgs, CLI, ...args], { env: cliEnv(env) });
  const logs: LogLine[] = [];
  const waiters = new Set<{ predicate: LogPredicate; resolve: (line: LogLine) => void }>();
  let partial = '';
  child.proc.stdout!.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const raw of lines) {
      if (raw.trim() === '') continue;
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        line = { msg: 'non-JSON output', raw };
      }
      logs.push(line);
      for (const waiter of waiters) {
        if (waiter.predicate(line)) {
          waiters.delete(waiter);
          waiter.resolve(line);
        }
      }
    }
  });
  const waitForLog = (predicate: LogPredicate, wait = 10_000): Promise<LogLine> => {
    const seen = logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        predicate,
        resolve: (line: LogLine) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`no matching log line within ${wait} ms; seen:\n${logs.map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${child.stderr}`));
      }, wait);
      waiters.add(waiter);
    });
  };
  const proxy: Proxy = { child, logs, waitForLog, stop: () => child.stop() };
  const exitedEarly = child.exited.then((status) => {
    throw new Error(`nbd-tunnel ${args[0]} exited (${JSON.stringify(status)}) before '${ready}': ${child.stderr.trim()}`);
  });
  try {
    await Promise.race([waitForLog((l) => l.msg === ready, timeoutMs), exitedEarly]);
  } catch (error) {
    await child.stop();
    throw error;
  }
  exitedEarly.catch(() => {}); // a later exit is the test's business
  return proxy;
}

/** GET `path` (/status, /metrics, /healthz) from a proxy started with --metrics, at the address its ready line gave. */
export function fetchFromMetrics(proxy: Proxy, path: string): Promise<Response> {
  const address = proxy.logs.find((l) => typeof l.metrics === 'string')?.metrics;
  if (typeof address !== 'string') throw new Error('the proxy was started without --metrics');
  return fetch(`http://${address}${path}`);
}

export interface TunnelOptions {
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
  /** Client certificate and key for the source; the PKI's good client by default. */
  clientCert?: string;
  clientKey?: string;
  servername?: string;
  /**
   * Given the destination's port, returns the port the source should connect to instead (on
   * localhost), e.g. a delay relay's in front of it. Default: the destination's own.
   */
  connectVia?: (destPort: number) => Promise<number>;
  /** Options for node itself, per side. */
  nodeArgs?: { source?: string[]; dest?: string[] };
}

export interface Tunnel {
  /** The destination running now (a new one after restartDest). */
  readonly dest: Proxy;
  readonly source: Proxy;
  /** The destination's port, kept across restartDest(). */
  readonly port: number;
  /** Stops the destination with `signal` (default SIGKILL: a crash) and starts a new one on the same port. */
  restartDest(signal?: NodeJS.Signals): Promise<Proxy>;
  stop(): Promise<void>;
}

const routeFlags = (routes: Record<string, string>): string[] =>
  Object.entries(routes).flatMap(([name, path]) => ['--route', `${name}=${path}`]);

/** A destination on a free loopback port and a source connected to it, both ready. */
export async function startTunnel(options: TunnelOptions): Promise<Tunnel> {
  const { pki } = options;
  const startDest = (port: number): Promise<Proxy> =>
    startProxy(
      ['dest', '--listen', `127.0.0.1:${port}`, ...routeFlags(options.destRoutes), '--cert', pki.serverCert, '--key', pki.serverKey, '--ca', pki.caCert, ...(options.destArgs ?? [])],
      'listening',
      10_000,
      options.destEnv,
      options.nodeArgs?.dest,
    );
  let dest = await startDest(0);
  const port = Number(dest.logs.find((l) => l.msg === 'listening')!.port);
  try {
    // The destination's certificate names localhost, hence localhost rather than 127.0.0.1.
    const connectPort = options.connectVia ? await options.connectVia(port) : port;
    const source = await startProxy(
      [
        'source',
        '--connect',
        `wss://localhost:${connectPort}`,
        ...routeFlags(options.sourceRoutes),
        '--cert',
        options.clientCert ?? pki.clientCert,
        '--key',
        options.clientKey ?? pki.clientKey,
        '--ca',
        pki.caCert,
        ...(options.servername ? ['--servername', options.servername] : []),
        ...(options.sourceArgs ?? []),
      ],
      'ready',
      10_000,
      options.sourceEnv,
      options.nodeArgs?.source,
    );
    return {
      get dest() {
        return dest;
      },
      source,
      port,
      async restartDest(signal: NodeJS.Signals = 'SIGKILL') {
        await dest.child.stop(signal);
        dest = await startDest(port);
        return dest;
      },
      async stop() {
        await Promise.all([source.stop(), dest.stop()]);
      },
    };
  } catch (error) {
    await dest.stop();
    throw error;
  }
}
