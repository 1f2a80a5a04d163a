#!/usr/bin/env node
// Command line: parses flags (with NBD_TUNNEL_* env fallbacks), builds the config, starts the role.
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, CommanderError, Option } from 'commander';
import { ConfigError, DEFAULTS, destConfig, type DestFlags, type SourceFlags } from './config.js';
import { loadFlags } from './config-file.js';
import { addCheckCommand } from './check/index.js';
import { addRouteCommand } from './control/index.js';
import { runDest } from './dest/index.js';
import { createLogger, flushLogs, type Logger, type LogLevel } from './log.js';
import { startClusterMetrics } from './metrics/index.js';
import { addMigrateCommand } from './migrate/index.js';
import { addCommonOptions, addSourceOptions, collect, inspectSwitch, loadSourceConfig, splitEnvList, splitEnvRoutes } from './proxy-options.js';
import { runSource, runSourcePrimary, runSourceWorker } from './source/index.js';
import { progressView, runStatus, type StatusDocument } from './status/index.js';
import { VERSION } from './version.js';
import { inWorker, reportReady, superviseWorkers, type Supervisor } from './workers.js';

const DRAIN_POLL_MS = 100;

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
  /** --metrics: with workers, the primary serves them all, merged. */
  metrics: { host: string; port: number } | undefined;
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
  let primary: Running | undefined;
  try {
    primary = await role.runPrimary?.(log, supervisor);
    const metrics = await startClusterMetrics(role.metrics, role.name, supervisor.members);
    // The workers drain their own streams when close() stops them; /status and /healthz say so meanwhile.
    return {
      readyFields: { ...supervisor.readyFields, ...primary?.readyFields, workers: role.processes, ...metrics.fields },
      stopAccepting: () => primary?.stopAccepting(),
      openStreams: () => 0,
      async close() {
        await primary?.close();
        await supervisor.close();
        await metrics.close();
      },
    };
  } catch (error) {
    await primary?.close();
    await supervisor.close();
    throw error;
  }
}

async function start(role: Role): Promise<void> {
  const view = role.progressView ? progressView(process.stdout, role.drainTimeoutMs) : null;
  const log = view ? createLogger('warn', role.name, view.log) : createLogger(role.logLevel, role.name);
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
    const open = running.openStreams;
    void drainAndExit(running, signal, role.drainTimeoutMs, log, () => view?.draining(open));
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
  if (view && running.status) view.show(running.status);
  if (stopping !== null) {
    const signal: string = stopping;
    stopping = null;
    shutdown(signal);
  }
}

/** Stops taking connections, lets open streams finish for up to `timeoutMs`, then closes the rest and exits. */
async function drainAndExit(running: Running, signal: string, timeoutMs: number, log: Logger, announce: () => void): Promise<never> {
  const started = Date.now();
  running.stopAccepting(); // first: whoever reads the line below may rely on it
  log.info({ signal, streams: running.openStreams(), drainTimeoutMs: timeoutMs }, 'draining');
  announce();
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
    metrics: config.metrics,
    run: (log) => runDest(config, log),
  });
});

addSourceOptions(
  program
    .command('source')
    .description('listen on a UNIX socket per route and carry each connection to the destination'),
).action(async (flags: SourceFlags, command: Command) => {
  const { config, explicitLogLevel } = buildConfig(() => loadSourceConfig(flags, command));
  await start({
    name: 'source',
    readyMsg: 'ready',
    readyExtra: { inspect: config.inspect, proxy: config.proxy.summary },
    drainTimeoutMs: config.drainTimeoutMs,
    logLevel: config.logLevel,
    processes: config.connections,
    metrics: config.metrics,
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

addCheckCommand(program, fail);
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
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : 2);
  // Anything else escaped a command's own handling: a bug, said as one rather than a silent exit.
  process.stderr.write(`nbd-tunnel: internal error: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
}
