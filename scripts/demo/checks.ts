// After a live migration: what the destination must show (QEMU running, the same guest going on
// and verifying every block, the disks identical) and the figures QEMU itself measured.
import { run, type QmpClient, type QmpEvent } from '../../test/harness/index.js';
import { queryMigrate } from '../../test/harness/migration.js';
import { GUEST_BLOCK } from '../../test/harness/guest/blocks.js';
import type { MigrationPair } from '../../test/harness/guest/pair.js';
import type { Progress } from '../../test/harness/guest/protocol.js';

export interface Check {
  ok: boolean;
  text: string;
}

export interface Figures {
  /** Disk bytes over the time from the mirror job's creation to its READY event. */
  diskMBps: number;
  /** RAM bytes sent over the RAM migration's total time. */
  ramMBps: number;
  ramBytes: number;
  /** As QEMU counts it: from the source's pause (pause-before-switchover: mirrors completed then) to the end. */
  downtimeMs: number;
}

const status = async (qmp: QmpClient): Promise<string> => (await qmp.execute<{ status: string }>('query-status')).status;

/**
 * `sourceLast`: the source guest's last progress line. The destination must be running (as
 * `nbd-tunnel dest` leaves it); it is paused at the end, for the image compare.
 */
export async function checkDestination(pair: MigrationPair, sourceLast: Progress | null, blocks: number): Promise<Check[]> {
  const checks: Check[] = [];
  const [source, dest] = [await status(pair.source.qmp), await status(pair.dest.qmp)];
  checks.push({ ok: dest === 'running' && source === 'postmigrate', text: `destination QEMU ${dest}, source QEMU ${source} (query-status)` });
  const first = await pair.dest.progress(0, 30_000);
  checks.push({
    ok: sourceLast !== null && first.boot === sourceLast.boot && first.n > sourceLast.n,
    text: `the same guest goes on: boot ${first.boot} (source: ${sourceLast?.boot}), write ${first.n} after the source's last ${sourceLast?.n}`,
  });
  const verified = await pair.dest.verify();
  const everyBlock = new RegExp(` blocks ${blocks} boot ${first.boot}$`).test(verified.line);
  checks.push({ ok: verified.ok && everyBlock, text: `the guest read back every block it wrote: "${verified.line}"` });
  await pair.dest.qmp.execute('stop');
  // The guest rewrote its blocks on the destination since; the guest checked those itself.
  const guestBytes = blocks * GUEST_BLOCK;
  const rest = await compareFrom(pair.sourceImage, pair.destImage, guestBytes);
  checks.push({
    ok: rest.identical,
    text: `disks identical (qemu-img compare -U, destination stopped, source postmigrate) past the guest's ${guestBytes / 1024} KiB of blocks: ${rest.output}`,
  });
  return checks;
}

/** qemu-img compare -U of two raw images from byte `offset` on. */
async function compareFrom(a: string, b: string, offset: number): Promise<{ identical: boolean; output: string }> {
  const opts = (file: string): string => `driver=raw,offset=${offset},file.driver=file,file.filename=${file}`;
  const { code, stdout } = await run('qemu-img', ['compare', '-U', '--image-opts', opts(a), opts(b)], { okCodes: [0, 1] });
  return { identical: code === 0, output: stdout.trim() };
}

const eventMs = (e: QmpEvent): number => e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;

/** From the source's monitor: its mirror job's events and query-migrate once completed. */
export async function figuresFromQemu(qmp: QmpClient, diskBytes: number): Promise<Figures> {
  const created = qmp.events.find((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.status === 'created');
  const ready = qmp.events.find((e) => e.event === 'BLOCK_JOB_READY');
  if (!created || !ready) throw new Error(`no mirror job events on the source's monitor (created: ${Boolean(created)}, READY: ${Boolean(ready)})`);
  const info = await queryMigrate(qmp);
  if (info.status !== 'completed') throw new Error(`query-migrate on the source: ${info.status}`);
  const ramBytes = info.ram?.transferred ?? 0;
  return {
    diskMBps: diskBytes / 1e3 / (eventMs(ready) - eventMs(created)),
    ramMBps: ramBytes / 1e3 / (info['total-time'] ?? NaN),
    ramBytes,
    downtimeMs: info.downtime ?? NaN,
  };
}
