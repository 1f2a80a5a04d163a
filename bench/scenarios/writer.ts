// A busy guest during migration: a write-blocking mirror of one disk while a QD1 writer (our
// NBD client on the source daemon's export of that disk) writes 4 KiB at random offsets. The
// writer runs through the copy and on for a while after READY, when every guest write waits
// for the destination: its latency there is the path's round trip plus the destination write.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGuestWriter, type WriteSample } from '../guest-writer.js';
import { withPathRig } from '../rig-run.js';
import { percentile } from '../stats.js';
import { formatSize, mbPerSecond, scaledSize, type Scenario } from './types.js';

const SIZE = 512 << 20;
/** How long the writer goes on after READY. */
const STEADY_MS = 3000;

export const writerScenario: Scenario = {
  id: 'writer',
  title: 'Write-blocking mirror under a guest-like writer',
  description: (scale) =>
    `1 × ${formatSize(scaledSize(SIZE, scale))}, blockdev-mirror copy-mode=write-blocking; meanwhile a writer of our own (test/harness/nbd-client.ts) on the source daemon's NBD export of that disk writes 4 KiB at random offsets at queue depth 1, from the start of the mirror to READY ("during copy") and for ${STEADY_MS / 1000} s after READY ("after READY"). Latencies in µs.`,
  tables: [
    {
      title: 'Writer during the copy',
      metrics: [
        { key: 'mbps', label: 'mirror MB/s to READY', digits: 0 },
        { key: 'copyOps', label: 'writes/s', digits: 0 },
        { key: 'copyP50', label: 'p50 µs', digits: 0 },
        { key: 'copyP99', label: 'p99 µs', digits: 0 },
      ],
      ratioOf: 'copyOps',
    },
    {
      title: 'Writer after READY (every write mirrored synchronously)',
      metrics: [
        { key: 'steadyOps', label: 'writes/s', digits: 0 },
        { key: 'steadyP50', label: 'p50 µs', digits: 0 },
        { key: 'steadyP99', label: 'p99 µs', digits: 0 },
      ],
      ratioOf: 'steadyOps',
    },
  ],
  notApplicable: () => null,
  async run(kind, context) {
    const size = scaledSize(SIZE, context.scale);
    const writerSocket = join(context.dir, 'writer.sock');
    const disks = [{ name: 'disk0', size, seed: 3000 + context.index }];
    const { value, peaks, notes } = await withPathRig({ kind, dir: context.dir, pki: context.pki, disks, writerSocket }, async (rig) => {
      const start = performance.now();
      await rig.startMirrors('write-blocking');
      const writer = await startGuestWriter(writerSocket, 'disk0', 77 + context.index);
      let samples: WriteSample[];
      let ready: number;
      try {
        await rig.waitReady();
        ready = performance.now();
        await sleep(STEADY_MS);
      } finally {
        samples = await writer.stop();
      }
      await rig.completeMirrors();
      return { readyMs: ready - start, copy: phase(samples, start, ready), steady: phase(samples, ready, Infinity) };
    });
    return {
      metrics: {
        mbps: mbPerSecond(size, value.readyMs),
        copyOps: value.copy.opsPerSecond,
        copyP50: value.copy.p50,
        copyP99: value.copy.p99,
        steadyOps: value.steady.opsPerSecond,
        steadyP50: value.steady.p50,
        steadyP99: value.steady.p99,
      },
      peaks,
      notes,
    };
  },
};

/** Writes completed in [from, to): rate over that span, latency percentiles in µs. */
function phase(samples: WriteSample[], from: number, to: number): { opsPerSecond: number; p50: number; p99: number } {
  const inside = samples.filter((s) => s.at >= from && s.at < to);
  const end = Number.isFinite(to) ? to : inside.reduce((last, s) => Math.max(last, s.at), from);
  const latencies = inside.map((s) => s.latencyMs * 1000);
  return { opsPerSecond: inside.length / ((end - from) / 1000), p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}
