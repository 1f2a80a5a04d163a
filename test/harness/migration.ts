// QMP's migration commands as libvirt uses them: capabilities, the MIGRATION events, and the
// figures of query-migrate.
import { setTimeout as sleep } from 'node:timers/promises';
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

/**
 * Polls until the running migration has sent `bytes` of RAM; resolves with its query-migrate
 * then, or null if it left the `active` state first. Rejects after `timeoutMs`.
 */
export async function waitRamTransferred(qmp: QmpClient, bytes: number, timeoutMs = 60_000): Promise<MigrationInfo | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await queryMigrate(qmp);
    if (info.status === 'active' && (info.ram?.transferred ?? 0) >= bytes) return info;
    if (info.status !== 'active' && info.status !== 'setup') return null;
    if (Date.now() > deadline) throw new Error(`migration sent only ${info.ram?.transferred ?? 0} of ${bytes} bytes within ${timeoutMs} ms`);
    await sleep(50);
  }
}
