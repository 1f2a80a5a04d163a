// "Peak RSS flat while a destination stalls": mid-mirror the destination qemu-storage-daemon
// is frozen (SIGSTOP), so its NBD server reads nothing, then thawed (SIGCONT). Both proxies'
// RSS is sampled every 100 ms during the stall, and so is what the source proxy has read: once
// the stream's window is spent it must stop reading QEMU's socket, so its memory stays bounded.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Rig } from '../../test/harness/index.js';
import type { PathHandle } from '../paths/index.js';
import { bytesRead, statusKiB } from '../proc.js';
import { withPathRig } from '../rig-run.js';
import { formatSize, mbPerSecond, scaledSize, type Scenario } from './types.js';

const SIZE = 1 << 30;
const STALL_MS = 5000;
const SAMPLE_MS = 100;
/** The stall starts once the job has copied this share of the disk, so it hits a busy stream. */
const STALL_AT = 0.25;
const MiB = 1 << 20;
const JOB = 'm-disk0';

export const stallScenario: Scenario = {
  id: 'stall',
  title: 'Destination stall (nbd-tunnel only)',
  description: (scale) =>
    `1 × ${formatSize(scaledSize(SIZE, scale))} mirror; at ${STALL_AT * 100}% the destination qemu-storage-daemon gets SIGSTOP for ${STALL_MS / 1000} s, then SIGCONT; the job must still reach READY and the images be identical. VmRSS of both proxies sampled every ${SAMPLE_MS} ms; "source read" is the growth of the source proxy's rchar (/proc/<pid>/io: bytes read from QEMU's socket and the tunnel), in the whole stall and in its last ${(STALL_MS - 1000) / 1000} s.`,
  tables: [
    {
      title: 'Memory while the destination is frozen',
      metrics: [
        { key: 'sourceBeforeMiB', label: 'source RSS before, MiB', digits: 1 },
        { key: 'sourceMaxMiB', label: 'source RSS max in stall, MiB', digits: 1 },
        { key: 'destBeforeMiB', label: 'dest RSS before, MiB', digits: 1 },
        { key: 'destMaxMiB', label: 'dest RSS max in stall, MiB', digits: 1 },
        { key: 'readInStallMiB', label: 'source read in stall, MiB', digits: 1 },
        { key: 'readLateMiB', label: `source read in last ${(STALL_MS - 1000) / 1000} s, MiB`, digits: 2 },
        { key: 'mbps', label: 'MB/s to READY (stall included)', digits: 0 },
      ],
      ratioOf: null,
    },
  ],
  notApplicable: (kind) => (kind === 'nbd-tunnel' ? null : 'checks the tunnel only'),
  maxRuns: 1,
  async run(kind, context) {
    const size = scaledSize(SIZE, context.scale);
    const disks = [{ name: 'disk0', size, seed: 5000 + context.index }];
    const { value, peaks, notes } = await withPathRig({ kind, dir: context.dir, pki: context.pki, disks }, async (rig, path) => {
      const start = performance.now();
      await rig.startMirrors();
      await waitForProgress(rig, JOB, size * STALL_AT);
      const stall = await freezeDestination(rig, path);
      await rig.waitReady();
      const readyMs = performance.now() - start;
      await rig.completeMirrors();
      return { ...stall, readyMs };
    });
    const { source, dest } = value;
    return {
      metrics: {
        sourceBeforeMiB: source.before / 1024,
        sourceMaxMiB: source.max / 1024,
        destBeforeMiB: dest.before / 1024,
        destMaxMiB: dest.max / 1024,
        readInStallMiB: value.readInStall / MiB,
        readLateMiB: value.readLate / MiB,
        mbps: mbPerSecond(size, value.readyMs),
      },
      peaks,
      notes: [...notes, `job offset moved ${(value.offsetMoved / MiB).toFixed(1)} MiB during the stall`],
    };
  },
};

interface JobState {
  device: string;
  offset: number;
  len: number;
  ready: boolean;
}

async function jobState(rig: Rig, jobId: string): Promise<JobState> {
  const jobs = await rig.source.qmp.execute<JobState[]>('query-block-jobs');
  const job = jobs.find((j) => j.device === jobId);
  if (!job) throw new Error(`job ${jobId} is gone`);
  return job;
}

/** Throws unless the job is still copying: a stall of an idle (READY) job measures nothing under load. */
function assertCopying(job: JobState, when: string): void {
  if (job.ready || job.offset >= job.len) {
    throw new Error(`the job was not copying ${when} (offset ${job.offset} of ${job.len}, ready ${job.ready}): use a larger --size-scale`);
  }
}

async function waitForProgress(rig: Rig, jobId: string, bytes: number): Promise<void> {
  for (;;) {
    const job = await jobState(rig, jobId);
    assertCopying(job, `when it reached ${bytes} bytes`);
    if (job.offset >= bytes) return;
    await sleep(20);
  }
}

interface RssTrack {
  before: number;
  max: number;
}

/** SIGSTOP the destination daemon for STALL_MS, sampling the proxies; SIGCONT even if sampling fails. */
async function freezeDestination(rig: Rig, path: PathHandle) {
  const pids = Object.fromEntries(path.processes().map((p) => [p.name, p.pid]));
  const sourcePid = pids['nbd-tunnel source'];
  const destPid = pids['nbd-tunnel dest'];
  if (sourcePid === undefined || destPid === undefined) throw new Error('the stall check needs the nbd-tunnel path');
  const rss = (pid: number): number => statusKiB(pid, 'VmRSS') ?? Number.NaN;
  const source: RssTrack = { before: rss(sourcePid), max: 0 };
  const dest: RssTrack = { before: rss(destPid), max: 0 };
  const offsetBefore = (await jobState(rig, JOB)).offset;
  const readAtStart = bytesRead(sourcePid) ?? 0;
  let readAtOneSecond = readAtStart;
  let readAtEnd = readAtStart;
  let offsetMoved = 0;
  // By PID, the daemon's own: SIGSTOP cannot be caught, so its NBD server simply stops reading.
  process.kill(rig.dest.pid, 'SIGSTOP');
  const stalled = performance.now();
  try {
    // READY is never left: not READY now means not READY when the destination froze.
    assertCopying(await jobState(rig, JOB), 'when the destination froze');
    for (let elapsed = 0; elapsed < STALL_MS; elapsed = performance.now() - stalled) {
      source.max = Math.max(source.max, rss(sourcePid));
      dest.max = Math.max(dest.max, rss(destPid));
      if (elapsed < 1000) readAtOneSecond = bytesRead(sourcePid) ?? readAtOneSecond;
      await sleep(SAMPLE_MS);
    }
    readAtEnd = bytesRead(sourcePid) ?? 0;
    offsetMoved = (await jobState(rig, JOB)).offset - offsetBefore;
  } finally {
    process.kill(rig.dest.pid, 'SIGCONT');
  }
  return { source, dest, readInStall: readAtEnd - readAtStart, readLate: readAtEnd - readAtOneSecond, offsetMoved };
}
