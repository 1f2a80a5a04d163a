// Small-request cost: `qemu-img bench` 4 KiB writes then reads against the destination export
// through the path, at queue depth 1 (pure per-request latency) and 16 (pipelining).
// Verified by replaying the same writes into a local blank image and comparing.
import { join } from 'node:path';
import { createBlankImage, compareImages, run } from '../../test/harness/index.js';
import { withPathRig } from '../rig-run.js';
import { scaledSize, type MetricSpec, type Scenario, type TableSpec } from './types.js';

const SIZE = 256 << 20;
const STEP = 4096;
/** Requests per qemu-img bench run at --size-scale 1: a few seconds each, ssh's (slowest) under a minute in all. */
const COUNTS = { 1: 10_000, 16: 30_000 } as const;
const DEPTHS = [1, 16] as const;
const MODES = ['write', 'read'] as const;
/** Written by every write run (qemu-img bench --pattern), so the result is known in advance. */
const PATTERN = 0xa5;

type Mode = (typeof MODES)[number];
type Depth = (typeof DEPTHS)[number];

const key = (mode: Mode, depth: Depth, what: 'ops' | 'us'): string => `${mode}${depth}${what}`;

function count(depth: Depth, scale: number): number {
  return Math.max(1000, Math.round(COUNTS[depth] * Math.min(1, scale)));
}

function benchArgs(mode: Mode, depth: Depth, scale: number): string[] {
  const args = ['bench', '-f', 'raw', '-c', String(count(depth, scale)), '-d', String(depth), '-s', '4096', '-S', String(STEP)];
  // --pattern: a known byte, so the destination can be checked against a local replay.
  return mode === 'write' ? [...args, '-w', `--pattern=${PATTERN}`] : args;
}

const tables: TableSpec[] = MODES.flatMap((mode) =>
  DEPTHS.map((depth) => ({
    title: `4 KiB ${mode}s at queue depth ${depth}`,
    metrics: [
      { key: key(mode, depth, 'ops'), label: 'requests/s', digits: 0 },
      { key: key(mode, depth, 'us'), label: 'mean latency µs', digits: 0 },
    ] satisfies MetricSpec[],
    ratioOf: key(mode, depth, 'ops'),
  })),
);

export const requestLatencyScenario: Scenario = {
  id: 'qemu-img-bench',
  title: 'qemu-img bench, 4 KiB requests',
  description: (scale) =>
    `qemu-img bench -s 4096 -S 4096 on nbd+unix:///EXPORT?socket=<path's client socket> (a ${scaledSize(SIZE, scale) >> 20} MiB export), writes (--pattern) then reads, -d 1 with -c ${count(1, scale)} and -d 16 with -c ${count(16, scale)}; requests/s from the run time qemu-img reports (process start excluded), mean latency = depth / rate.`,
  tables,
  notApplicable: () => null,
  async run(kind, context) {
    const size = scaledSize(SIZE, context.scale);
    const expected = join(context.dir, 'expected.img');
    const metrics: Record<string, number> = {};
    const { peaks, notes } = await withPathRig(
      {
        kind,
        dir: context.dir,
        pki: context.pki,
        disks: [{ name: 'disk0', size, seed: 4000 + context.index }],
        // The bench wrote to the destination only: compare it with the same writes replayed locally.
        verify: async (rig) => {
          await rig.source.quit();
          await rig.dest.quit();
          await createBlankImage(expected, size);
          for (const depth of DEPTHS) await run('qemu-img', [...benchArgs('write', depth, context.scale), expected]);
          return [{ name: 'disk0', ...(await compareImages(rig.disks[0].destImage, expected)) }];
        },
      },
      async (rig) => {
        const url = `nbd+unix:///disk0?socket=${rig.disks[0].clientSocket}`;
        for (const mode of MODES) {
          for (const depth of DEPTHS) {
            const { stdout } = await run('qemu-img', [...benchArgs(mode, depth, context.scale), url]);
            const seconds = Number(stdout.match(/Run completed in ([\d.]+) seconds/)?.[1]);
            if (!(seconds > 0)) throw new Error(`qemu-img bench printed no run time: ${stdout}`);
            const rate = count(depth, context.scale) / seconds;
            metrics[key(mode, depth, 'ops')] = rate;
            metrics[key(mode, depth, 'us')] = (depth / rate) * 1e6;
          }
        }
      },
    );
    return { metrics, peaks, notes };
  },
};
