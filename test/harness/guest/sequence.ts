// libvirt's live migration with --copy-storage-all, step by step over QMP (its Prepare,
// Perform and Finish phases), up to a destination that holds the whole guest, paused.
import { performance } from 'node:perf_hooks';
import { compareImages } from '../images.js';
import { queryMigrate, setMigrationCapabilities, waitMigration, type MigrationInfo } from '../migration.js';
import { DISK_ROUTE, RAM_ROUTE, type MigrationPair } from './pair.js';
import type { Progress } from './protocol.js';
import { DISK_NODE } from './vm.js';

const TARGET_NODE = 'migration-vda';
export const MIRROR_JOB = 'drive-mirror-vda';
const JOB = MIRROR_JOB;

export interface SequenceOptions {
  copyMode: 'background' | 'write-blocking';
  timeoutMs?: number;
  /** Runs while the mirror copies (started with it; READY is awaited alongside). */
  duringMirror?: () => Promise<void>;
  /** Runs while RAM is sent (started with `migrate`; pre-switchover is awaited alongside). */
  duringRam?: () => Promise<void>;
  /** Compare the images at switch-over (default true); the compare adds to the downtime. */
  compareAtSwitchover?: boolean;
}

export interface SequenceResult {
  /** From blockdev-mirror to BLOCK_JOB_READY. */
  mirrorReadyMs: number;
  /** qemu-img compare of the two images at switch-over: source paused, mirror completed; null when not asked for. */
  atSwitchover: { identical: boolean; output: string } | null;
  /** The source's query-migrate once completed: downtime, RAM figures. */
  sourceInfo: MigrationInfo;
  /** The source guest's last progress line before it was paused for good. */
  sourceLast: Progress | null;
}

export async function migrateLikeLibvirt(pair: MigrationPair, options: SequenceOptions): Promise<SequenceResult> {
  const { source, dest } = pair;
  const { copyMode, timeoutMs = 300_000 } = options;
  // Prepare, on the destination: capabilities, the NBD server with the disk writable, and the
  // RAM stream's listener.
  await setMigrationCapabilities(dest.qmp, { events: true, 'late-block-activate': true });
  await dest.startNbdServer(pair.destNbdSocket);
  await dest.exportNbd(DISK_NODE, DISK_ROUTE, true);
  await dest.qmp.execute('migrate-incoming', { uri: `unix:${pair.destIncomingSocket}` });

  // Perform, on the source: mirror the disk while the guest writes, to READY...
  await source.addNbdClient(TARGET_NODE, pair.link.clientSocket(DISK_ROUTE), DISK_ROUTE);
  const mirrorStart = performance.now();
  await source.mirror({ jobId: JOB, device: DISK_NODE, target: TARGET_NODE, copyMode });
  await Promise.all([source.waitJobReady(JOB, timeoutMs), options.duringMirror?.()]);
  const mirrorReadyMs = performance.now() - mirrorStart;
  // ...then RAM through its own route, stopping before the switch-over.
  await setMigrationCapabilities(source.qmp, { events: true, 'pause-before-switchover': true });
  await source.qmp.execute('migrate', { uri: `unix:${pair.link.clientSocket(RAM_ROUTE)}` });
  await Promise.all([waitMigration(source.qmp, 'pre-switchover', timeoutMs), options.duringRam?.()]);

  // The guest is paused: the mirror ends with the destination holding every write it made.
  const sourceLast = source.lastProgress();
  await source.cancelJob(JOB);
  await source.waitJobCompleted(JOB, timeoutMs);
  const atSwitchover = options.compareAtSwitchover === false ? null : await compareImages(pair.sourceImage, pair.destImage, { forceShare: true });
  await source.qmp.execute('migrate-continue', { state: 'pre-switchover' });
  await waitMigration(source.qmp, 'completed', timeoutMs);
  await waitMigration(dest.qmp, 'completed', timeoutMs);
  const sourceInfo = await queryMigrate(source.qmp);

  // Finish: the destination stops serving its disk; the source drops its NBD client.
  await dest.qmp.execute('nbd-server-stop');
  await source.qmp.execute('blockdev-del', { 'node-name': TARGET_NODE });
  return { mirrorReadyMs, atSwitchover, sourceInfo, sourceLast };
}
