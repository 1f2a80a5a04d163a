// `nbd-tunnel migrate`: its own tunnel session and QMP connection around migrate(), with
// Ctrl-C (SIGINT) or SIGTERM turned into an undo instead of an exit halfway.
import type { Logger } from '../log.js';
import { QmpClient } from '../qmp/index.js';
import { Connector, type ClientOptions } from '../tunnel/index.js';
import { progressView, type MigrationScreen } from './progress.js';
import { migrate, type MigrateOptions, type MigrationReport } from './sequence.js';

export interface MigrateConfig {
  /** The source QEMU's QMP socket. */
  qmp: string;
  tunnel: ClientOptions;
  migration: MigrateOptions;
}

const QMP_CONNECT_MS = 5_000;
/** How long a lost connection may take to come back before the migration fails (and is undone). */
const RESUME_TIMEOUT_MS = 60_000;

export async function runMigrate(config: MigrateConfig, log: Logger, screen: MigrationScreen | null): Promise<MigrationReport> {
  const interrupt = new AbortController();
  const onSignal = (signal: string): void => interrupt.abort(new Error(`interrupted by ${signal}: the migration was undone`));
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  try {
    const qmp = await QmpClient.connect(config.qmp, QMP_CONNECT_MS).catch((error: Error) => {
      throw new Error(`--qmp ${config.qmp}: ${error.message}`);
    });
    // Resumable, as the source proxy's: a network blip pauses the migration instead of failing it.
    const connector = new Connector({ session: { resumeTimeoutMs: RESUME_TIMEOUT_MS }, ...config.tunnel }, log);
    try {
      const session = await connector.acquire().catch((error: Error) => {
        throw new Error(`--connect ${config.tunnel.url}: ${error.message}`);
      });
      const view = progressView(log, screen);
      const report = await migrate(qmp, config.qmp, session, config.migration, log, (p) => view.update(p), interrupt.signal);
      view.end();
      return report;
    } finally {
      await connector.stop('migration over');
      await qmp.close();
    }
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
  }
}
