// `nbd-tunnel migrate`: the commander side. Bad flags exit 2 before anything starts; a refusal
// or a failure (after the undo) exits 1 with QEMU's or the destination's words on one line.
import { Command, Option } from 'commander';
import { ConfigError, migrateConfig, type MigrateFlags } from '../config.js';
import { createLogger, flushLogs, LOG_LEVELS } from '../log.js';
import { VERSION } from '../version.js';
import { migrationScreen } from './progress.js';
import { runMigrate } from './run.js';
import type { MigrationReport } from './sequence.js';

type Fail = (error: Error, status: number) => never;

const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function addMigrateCommand(program: Command, fail: Fail): void {
  program
    .command('migrate')
    .description("migrate a VM's disks and RAM (or, --storage-only, its disks) through one tunnel session to a destination that names it with --vm")
    .addOption(new Option('--qmp <SOCKET>', "the source QEMU's QMP socket").makeOptionMandatory())
    .addOption(new Option('--connect <URL>', 'the destination, as wss://HOST:PORT').env('NBD_TUNNEL_CONNECT').makeOptionMandatory())
    .addOption(new Option('--vm <NAME>', 'the VM, as the destination names it (dest --vm NAME=…)').makeOptionMandatory())
    .addOption(new Option('--disk <NODE>', 'a block node to migrate (repeatable; default: every writable disk)').argParser(collect).default([]))
    .addOption(new Option('--storage-only', 'mirror the disks to a consistent copy and stop; RAM stays'))
    .addOption(new Option('--copy-mode <MODE>', 'background, or write-blocking (guest writes reach the destination before they complete)').choices(['background', 'write-blocking']).default('background'))
    .addOption(new Option('--speed <MB/s>', 'limit each disk mirror to this speed'))
    .addOption(new Option('--servername <NAME>', 'name expected in the destination certificate').env('NBD_TUNNEL_SERVERNAME'))
    .addOption(new Option('--proxy <URL>', 'reach the destination through this HTTP proxy (CONNECT); default: HTTPS_PROXY unless NO_PROXY names the host').env('NBD_TUNNEL_PROXY'))
    .addOption(new Option('--ca <FILE>', 'CA certificate (PEM) the destination must be signed by').env('NBD_TUNNEL_CA'))
    .addOption(new Option('--cert <FILE>', 'this side\'s client certificate (PEM)').env('NBD_TUNNEL_CERT'))
    .addOption(new Option('--key <FILE>', 'this side\'s private key (PEM)').env('NBD_TUNNEL_KEY'))
    .addOption(new Option('--crl <FILE>', 'CRLs (PEM) of --ca: a destination certificate they revoke is refused').env('NBD_TUNNEL_CRL'))
    .addOption(new Option('--pki-dir <DIR>', 'ca-cert.pem, client-cert.pem, client-key.pem as QEMU/libvirt keep them').env('NBD_TUNNEL_PKI_DIR'))
    .addOption(new Option('--token-file <FILE>', 'bearer token the destination requires').env('NBD_TUNNEL_TOKEN_FILE'))
    .addOption(new Option('--insecure', 'plain ws:// to a loopback destination (tests)'))
    .addOption(new Option('--log-level <LEVEL>', 'log level').choices(LOG_LEVELS).default('info').env('NBD_TUNNEL_LOG_LEVEL'))
    .addOption(new Option('--log-format <FORMAT>', 'auto: progress bars on a terminal; json: JSON lines').choices(['auto', 'json']).default('auto').env('NBD_TUNNEL_LOG_FORMAT'))
    .action(async (flags: MigrateFlags, command: Command) => {
      let config;
      try {
        config = migrateConfig(flags);
      } catch (error) {
        if (error instanceof ConfigError) fail(error, 2);
        throw error;
      }
      const bars = config.logFormat === 'auto' && command.getOptionValueSource('logLevel') === 'default' && process.stdout.isTTY === true;
      // With bars on stdout, the JSON lines that remain (warnings) are shown below them.
      const screen = bars ? migrationScreen(process.stdout) : null;
      const log = screen ? createLogger('warn', 'migrate', screen.log) : createLogger(config.logLevel, 'migrate');
      // The first line says which nbd-tunnel ran it, as the proxies' listening/ready lines do.
      log.info({ version: VERSION, vm: config.vm, qmp: config.qmp, url: config.url, proxy: config.proxy.summary, storageOnly: config.storageOnly }, 'migration starting');
      let report: MigrationReport;
      try {
        report = await runMigrate(
          {
            qmp: config.qmp,
            tunnel: { url: config.url, ...config.tls, servername: config.servername, proxy: config.proxy.proxy, token: config.token },
            migration: { vm: config.vm, disks: config.disks, storageOnly: config.storageOnly, copyMode: config.copyMode, speed: config.speed },
          },
          log,
          screen,
        );
      } catch (error) {
        log.error({ vm: config.vm, reason: (error as Error).message }, 'migration failed');
        await flushLogs();
        fail(new Error(`migration of VM '${config.vm}' failed: ${(error as Error).message}`), 1);
      }
      const summary = {
        vm: report.vm,
        disks: report.disks.map((d) => ({ node: d.node, size: d.size, MBps: d.mbps, readyMs: d.readyMs })),
        ramMBps: report.ram?.mbps ?? null,
        ramBytes: report.ram?.bytes ?? null,
        downtimeMs: report.downtimeMs,
        totalMs: report.totalMs,
        destination: report.destination,
      };
      if (bars) process.stdout.write(`${describe(report)}\n`);
      else log.info(summary, 'migrated');
      await flushLogs();
      process.exit(0);
    });
}

function describe(report: MigrationReport): string {
  const disks = report.disks.map((d) => `${d.node} ${d.mbps} MB/s`).join(', ');
  const ram = report.ram ? `; RAM ${report.ram.mbps} MB/s, downtime ${report.downtimeMs ?? '?'} ms` : '; RAM not migrated (--storage-only)';
  return `migrated ${report.vm}: disks ${disks || '(none)'}${ram}; ${(report.totalMs / 1000).toFixed(1)} s in all; on the destination it is ${report.destination}`;
}
