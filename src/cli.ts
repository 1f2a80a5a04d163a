#!/usr/bin/env node
// Command line: parses flags (with NBD_TUNNEL_* env fallbacks), builds the config, starts the role.
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'commander';
import { ConfigError, DEFAULTS, destConfig, sourceConfig, type DestFlags, type SourceFlags } from './config.js';
import { loadFlags } from './config-file.js';
import { addRouteCommand } from './control/index.js';
import { runDest } from './dest/index.js';
import { createLogger, flushLogs, LOG_LEVELS, type Logger, type LogLevel } from './log.js';
import { addMigrateCommand } from './migrate/index.js';
import { runSource, runSourcePrimary, runSourceWorker } from './source/index.js';
import { redraw, renderStatus, runStatus, type StatusDocument } from './status/index.js';
import { VERSION } from './version.js';
import { inWorker, reportReady, superviseWorkers, type Supervisor } from './workers.js';

const PROGRESS_VIEW_MS = 1_000;
const DRAIN_POLL_MS = 100;

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Options both roles take; every one can also come from NBD_TUNNEL_<NAME>. */
function addCommonOptions(command: Command): Command {
  return command
    .addOption(
      new Option('--route <NAME=SOCKET>', 'a route and its UNIX socket (repeatable)')
        .argParser(collect)
        .default([])
        .env('NBD_TUNNEL_ROUTE'),
    )
    .addOption(
      new Option('--route-dir <DIR>', 'dest: route NAME is DIR/NAME.sock when that socket exists; source: where `route add` puts NAME.sock').env(
        'NBD_TUNNEL_ROUTE_DIR',
      ),
    )
    .addOption(new Option('--config <FILE>', 'JSON settings, keys as the long flags in camelCase; flags and env win; SIGHUP reads it again').env('NBD_TUNNEL_CONFIG'))
    .addOption(new Option('--ca <FILE>', 'CA certificate (PEM) the peer must be signed by').env('NBD_TUNNEL_CA'))
    .addOption(new Option('--cert <FILE>', 'this side\'s certificate (PEM)').env('NBD_TUNNEL_CERT'))
    .addOption(new Option('--key <FILE>', 'this side\'s private key (PEM)').env('NBD_TUNNEL_KEY'))
    .addOption(new Option('--crl <FILE>', 'CRLs (PEM) of --ca: a peer certificate they revoke is refused; SIGHUP reads it again').env('NBD_TUNNEL_CRL'))
    .addOption(
      new Option('--pki-dir <DIR>', 'certificates as QEMU/libvirt keep them: ca-cert.pem, server-*.pem (dest) or client-*.pem (source)').env(
        'NBD_TUNNEL_PKI_DIR',
      ),
    )
    .addOption(new Option('--token-file <FILE>', 'bearer token required in addition to the certificate').env('NBD_TUNNEL_TOKEN_FILE'))
    .addOption(new Option('--log-level <LEVEL>', 'log level').choices(LOG_LEVELS).default('info').env('NBD_TUNNEL_LOG_LEVEL'))
    .addOption(
      new Option('--log-format <FORMAT>', 'auto: a source on a terminal without --log-level shows progress bars; json: always JSON lines')
        .choices(['auto', 'json'])
        .default('auto')
        .env('NBD_TUNNEL_LOG_FORMAT'),
    )
    .addOption(
      new Option('--stream-window <SIZE>', 'receive window per stream (256K to 4G-1)')
        .default(DEFAULTS.streamWindow)
        .env('NBD_TUNNEL_STREAM_WINDOW'),
    )
    .addOption(new Option('--max-streams <N>', 'streams the peer may have open per session').default(DEFAULTS.maxStreams).env('NBD_TUNNEL_MAX_STREAMS'))
    .addOption(new Option('--insecure', 'plain ws:// without TLS or certificates; only on loopback addresses (tests, local relays)'))
    .addOption(new Option('--metrics <HOST:PORT>', 'serve /metrics (Prometheus) and /status (JSON) over HTTP here').env('NBD_TUNNEL_METRICS'))
    .addOption(new Option('--no-inspect', 'do not follow NBD in streams (no export, progress or NBD error lines)').env('NBD_TUNNEL_NO_INSPECT'))
    .addOption(
      new Option('--keepalive-interval <SECONDS>', 'ping the peer this often (0: never)')
        .default(DEFAULTS.keepaliveInterval)
        .env('NBD_TUNNEL_KEEPALIVE_INTERVAL'),
    )
    .addOption(
      new Option('--keepalive-timeout <SECONDS>', 'the connection is lost after this long without a word from the peer')
        .default(DEFAULTS.keepaliveTimeout)
        .env('NBD_TUNNEL_KEEPALIVE_TIMEOUT'),
    )
    .addOption(
      new Option('--resume-timeout <SECONDS>', 'after a lost connection, keep the session and its streams this long for a reconnect (0: no resuming)')
        .default(DEFAULTS.resumeTimeout)
        .env('NBD_TUNNEL_RESUME_TIMEOUT'),
    )
    .addOption(
      new Option('--drain-timeout <SECONDS>', 'on SIGTERM/SIGINT, let open streams finish this long before closing them (a second signal: at once)')
        .default(DEFAULTS.drainTimeout)
        .env('NBD_TUNNEL_DRAIN_TIMEOUT'),
    );
}

/** Env values for a repeatable flag come as one list, separated by `separator`. */
function splitEnvList(values: string[], separator: string): string[] {
  return values.flatMap((r) => r.split(separator)).map((r) => r.trim()).filter((r) => r !== '');
}

const splitEnvRoutes = (routes: string[]): string[] => splitEnvList(routes, ',');

/**
 * commander turns --no-inspect off for any value of NBD_TUNNEL_NO_INSPECT, "0" and "false"
 * included; read the value as an operator means it.
 */
function inspectSwitch(command: Command, inspect: boolean): boolean {
  if (command.getOptionValueSource('inspect') !== 'env') return inspect;
  const value = (process.env.NBD_TUNNEL_NO_INSPECT ?? '').trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(value)) return false;
  if (['', '0', 'false', 'no', 'off'].includes(value)) return true;
  throw new ConfigError(`NBD_TUNNEL_NO_INSPECT '${value}': expected 1/true/yes/on (no inspection) or 0/false/no/off`);
}

interface Running {
  readyFields: Record<string, unknown>;
  /** Drain: no new connections from now on (synchronous: a second signal exits right after). */
  stopAccepting(): void;
  openStreams(): number;
  close(): Promise<void>;
  status?(): StatusDocument;
}

interface Role {
  name: 'dest' | 'source';
  /** The line printed once the role serves: "listening" (dest) or "ready" (source). */
  readyMsg: string;
  /** Settings worth seeing in that line. */
  readyExtra: Record<string, unknown>;
  drainTimeoutMs: number;
  logLevel: LogLevel;
  /** Processes to run; more than one means a primary and that many workers. */
  processes: number;
  /** Show progress bars on stdout instead of JSON lines (which then go to stderr, warnings up). */
  progressView?: boolean;
  /** Serves in this one process (also what a dest worker runs: the cluster shares its port). */
  run(log: Logger): Promise<Running>;
  /** What a worker runs, when it differs from run(). */
  runWorker?(log: Logger): Promise<Running>;
  /** What the primary does beside supervising, once its workers are ready. */
  runPrimary?(log: Logger, supervisor: Supervisor): Promise<Running>;
}

async function startRole(role: Role, log: Logger): Promise<Running> {
  if (inWorker) return (role.runWorker ?? role.run)(log);
  if (role.processes === 1) return role.run(log);
  const supervisor = await superviseWorkers(role.processes, log);
  try {
    const primary = await role.runPrimary?.(log, supervisor);
    // The workers drain their own streams when close() stops them.
    return {
      readyFields: { ...supervisor.readyFields, ...primary?.readyFields, workers: role.processes },
      stopAccepting: () => primary?.stopAccepting(),
      openStreams: () => 0,
      async close() {
        await primary?.close();
        await supervisor.close();
      },
    };
  } catch (error) {
    await supervisor.close();
    throw error;
  }
}

async function start(role: Role): Promise<void> {
  const log = role.progressView ? createLogger('warn', role.name, true) : createLogger(role.logLevel, role.name);
  // Signal handlers first: a signal that arrives right after the ready line must not find the
  // default action (immediate death, socket files left behind).
  let running: Running | null = null;
  let stopping: string | null = null;
  let draining = false;
  const shutdown = (signal: string): void => {
    if (draining) {
      // A second signal: no more waiting. Route sockets are already gone (stopAccepting).
      log.warn({ signal, streams: running?.openStreams() ?? 0 }, 'second signal: exiting now');
      process.exit(0);
    }
    stopping = signal;
    if (!running) return; // started below, then shut down at once
    draining = true;
    void drainAndExit(running, signal, role.drainTimeoutMs, log);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  if (inWorker) process.once('disconnect', () => shutdown('primary exited'));
  try {
    running = await startRole(role, log);
  } catch (error) {
    fail(error as Error, 1);
  }
  if (inWorker) reportReady(running.readyFields);
  else log.info({ version: VERSION, ...running.readyFields, ...role.readyExtra }, role.readyMsg);
  const status = running.status;
  if (role.progressView && status) {
    const view = setInterval(() => redraw(renderStatus(status(), true)), PROGRESS_VIEW_MS);
    view.unref();
    redraw(renderStatus(status(), true));
  }
  if (stopping !== null) {
    const signal: string = stopping;
    stopping = null;
    shutdown(signal);
  }
}

/** Stops taking connections, lets open streams finish for up to `timeoutMs`, then closes the rest and exits. */
async function drainAndExit(running: Running, signal: string, timeoutMs: number, log: Logger): Promise<never> {
  const started = Date.now();
  running.stopAccepting(); // first: whoever reads the line below may rely on it
  log.info({ signal, streams: running.openStreams(), drainTimeoutMs: timeoutMs }, 'draining');
  while (running.openStreams() > 0 && Date.now() - started < timeoutMs) await sleep(DRAIN_POLL_MS);
  const left = running.openStreams();
  if (left > 0) log.warn({ streams: left, drainTimeoutMs: timeoutMs }, 'drain timeout: closing the streams still open');
  else log.info({ ms: Date.now() - started }, 'drained');
  let status = 0;
  try {
    await running.close();
  } catch (error) {
    log.error({ reason: (error as Error).message }, 'shutdown failed');
    status = 1;
  }
  await flushLogs();
  process.exit(status);
}

function fail(error: Error, status: number): never {
  process.stderr.write(`nbd-tunnel: error: ${error.message}\n`);
  process.exit(status);
}

function buildConfig<T>(build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (error instanceof ConfigError) fail(error, 2);
    throw error;
  }
}

const program = new Command('nbd-tunnel')
  .description('Carries QEMU NBD storage-migration traffic through one mutually-authenticated TLS WebSocket')
  .configureOutput({ outputError: (text, write) => write(`nbd-tunnel: ${text.trim()} (see --help)\n`) })
  .exitOverride(); // inherited by the commands below: usage errors exit 2, not 1

addCommonOptions(
  program
    .command('dest')
    .description('accept the tunnel on one TCP port and connect each stream to its route\'s UNIX socket')
    // Required, but it may come from --config: config.ts checks it once the file is read.
    .addOption(new Option('--listen <HOST:PORT>', 'address to accept the tunnel on (required)').env('NBD_TUNNEL_LISTEN'))
    .addOption(
      new Option('--allow <ROUTE=IDENTITY[,IDENTITY...]>', 'only these client identities (certificate CN or DNS/URI SAN; *.domain) may use ROUTE (repeatable)')
        .argParser(collect)
        .default([])
        .env('NBD_TUNNEL_ALLOW'),
    )
    .addOption(
      new Option('--vm <NAME=QMP_SOCKET>', 'a QEMU started with -incoming defer that `nbd-tunnel migrate` may migrate VM NAME into (repeatable)')
        .argParser(collect)
        .default([])
        .env('NBD_TUNNEL_VM'),
    )
    .addOption(new Option('--max-sessions <N>', 'sessions (source connections) served at once').default(DEFAULTS.maxSessions).env('NBD_TUNNEL_MAX_SESSIONS'))
    .addOption(
      new Option('--handshake-timeout <SECONDS>', 'a new connection must finish TLS and the upgrade within this')
        .default(DEFAULTS.handshakeTimeout)
        .env('NBD_TUNNEL_HANDSHAKE_TIMEOUT'),
    )
    .addOption(
      new Option('--workers <N>', 'processes serving the port (one per tunnel connection at a time)')
        .default(DEFAULTS.processes)
        .env('NBD_TUNNEL_WORKERS'),
    ),
).action(async (flags: DestFlags, command: Command) => {
  const config = buildConfig(() => {
    const loaded = loadFlags(command, { ...flags, inspect: inspectSwitch(command, flags.inspect), route: splitEnvRoutes(flags.route), vm: splitEnvRoutes(flags.vm), allow: splitEnvList(flags.allow, ';') });
    return destConfig(loaded.flags, loaded.reread);
  });
  await start({
    name: 'dest',
    readyMsg: 'listening',
    readyExtra: { inspect: config.inspect },
    drainTimeoutMs: config.drainTimeoutMs,
    logLevel: config.logLevel,
    processes: config.workers,
    run: (log) => runDest(config, log),
  });
});

addCommonOptions(
  program
    .command('source')
    .description('listen on a UNIX socket per route and carry each connection to the destination')
    .addOption(new Option('--connect <URL>', 'the destination, as wss://HOST:PORT (required)').env('NBD_TUNNEL_CONNECT'))
    .addOption(new Option('--servername <NAME>', 'name expected in the destination certificate').env('NBD_TUNNEL_SERVERNAME'))
    .addOption(new Option('--proxy <URL>', 'reach the destination through this HTTP proxy (CONNECT), as http://[USER:PASSWORD@]HOST:PORT; default: HTTPS_PROXY unless NO_PROXY names the host').env('NBD_TUNNEL_PROXY'))
    .addOption(new Option('--socket-mode <MODE>', 'mode of the route sockets (octal)').default(DEFAULTS.socketMode).env('NBD_TUNNEL_SOCKET_MODE'))
    .addOption(new Option('--socket-group <GROUP>', 'group of the route sockets (QEMU\'s), by name or number').env('NBD_TUNNEL_SOCKET_GROUP'))
    .addOption(
      new Option('--connections <N>', 'tunnel connections, each in its own process; QEMU connections are spread across them')
        .default(DEFAULTS.processes)
        .env('NBD_TUNNEL_CONNECTIONS'),
    )
    .addOption(new Option('--control <SOCKET>', 'serve `nbd-tunnel route add|remove|list` on this local UNIX socket').env('NBD_TUNNEL_CONTROL'))
    .addOption(new Option('--control-mode <MODE>', 'mode of the control socket (0600: owner only)').default(DEFAULTS.controlMode).env('NBD_TUNNEL_CONTROL_MODE')),
).action(async (flags: SourceFlags, command: Command) => {
  let explicitLogLevel = command.getOptionValueSource('logLevel') !== 'default';
  const config = buildConfig(() => {
    const loaded = loadFlags(command, { ...flags, inspect: inspectSwitch(command, flags.inspect), route: splitEnvRoutes(flags.route) });
    explicitLogLevel ||= loaded.fromFile.has('logLevel');
    return sourceConfig(loaded.flags, loaded.reread);
  });
  await start({
    name: 'source',
    readyMsg: 'ready',
    readyExtra: { inspect: config.inspect, proxy: config.proxy.summary },
    drainTimeoutMs: config.drainTimeoutMs,
    logLevel: config.logLevel,
    processes: config.connections,
    progressView:
      config.logFormat === 'auto' &&
      !explicitLogLevel &&
      process.stdout.isTTY === true &&
      config.connections === 1,
    run: (log) => runSource(config, log),
    runWorker: (log) => runSourceWorker(config, log),
    runPrimary: (log, supervisor) => runSourcePrimary(config, log, () => supervisor.pick()),
  });
});

addRouteCommand(program, fail);
addMigrateCommand(program, fail);

program
  .command('status')
  .description('show the streams of a running proxy, from its --metrics address')
  .argument('<URL>', 'the proxy\'s --metrics address, as http://HOST:PORT')
  .option('--once', 'print the table once, even on a terminal')
  .action(async (url: string, flags: { once?: boolean }) => {
    try {
      await runStatus(url, flags.once ?? false);
    } catch (error) {
      fail(error as Error, 1);
    }
  });

addVersionOption(program);

/** `--version`/`-V` on the program and on every command below it, so that `dest -V` answers too. */
function addVersionOption(command: Command): void {
  command.version(VERSION, '-V, --version', 'print the version and exit');
  for (const sub of command.commands) addVersionOption(sub);
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  // commander has printed its one line already; bad usage exits 2, --help and --version 0.
  process.exit((error as { exitCode?: number }).exitCode === 0 ? 0 : 2);
}
