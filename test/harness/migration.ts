// QMP's migration commands as libvirt uses them: capabilities, the MIGRATION events, and the
// figures of query-migrate.
import type { QmpClient, QmpEvent } from './qmp.js';

export interface MigrationInfo {
  status: string;
  /** Milliseconds, once completed. */
  'total-time'?: number;
  downtime?: number;
  'setup-time'?: number;
  ram?: { transferred: number; total: number; duplicate: number; normal: number; mbps: number; 'dirty-sync-count': number };
}

export async function setMigrationCapabilities(qmp: QmpClient, capabilities: Record<string, boolean>): Promise<void> {
  await qmp.execute('migrate-set-capabilities', {
    capabilities: Object.entries(capabilities).map(([capability, state]) => ({ capability, state })),
  });
}

/**
 * Resolves with the MIGRATION event of `status` (needs the `events` capability); rejects if
 * the migration failed or was cancelled first.
 */
export async function waitMigration(qmp: QmpClient, status: string, timeoutMs = 300_000): Promise<QmpEvent> {
  const ends = [status, 'failed', 'cancelled'];
  const event = await qmp.waitEvent('MIGRATION', (e) => ends.includes(String(e.data.status)), timeoutMs);
  if (event.data.status !== status) {
    const info = await queryMigrate(qmp).catch((error: Error) => ({ status: `query-migrate failed: ${error.message}` }));
    throw new Error(`migration ${String(event.data.status)} while waiting for ${status}: ${JSON.stringify(info)}`);
  }
  return event;
}

export function queryMigrate(qmp: QmpClient): Promise<MigrationInfo> {
  return qmp.execute<MigrationInfo>('query-migrate');
}
