// Small-request cost: `qemu-img bench` 4 KiB writes then reads against the destination export
// through the path, at queue depth 1 (pure per-request latency) and 16 (pipelining).
// Each depth has its own region and pattern. Writes are verified by replaying them into a local
// blank image and comparing; reads by reading each region back through the path in requests of
// the same size and depth, every byte checked (qemu-img bench does not look at what it reads).
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
/**
 * Each depth's region and the byte its write run writes (qemu-img bench --pattern): apart, and
 * different, so that a write lost by one run cannot be hidden by the other's.
 */
const PATTERNS = { 1: 0xa5, 16: 0x5a } as const;
const MiB = 1 << 20;

type Mode = (typeof MODES)[number];
type Depth = (typeof DEPTHS)[number];

const key = (mode: Mode, depth: Depth, what: 'ops' | 'us'): string => `${mode}${depth}${what}`;

function count(depth: Depth, scale: number): number {
  return Math.max(1000, Math.round(COUNTS[depth] * Math.min(1, scale)));
}

/** Where a depth's run reads and writes: depth 1 from 0, depth 16 from the next MiB after it. */
function region(depth: Depth, scale: number): { offset: number; length: number } {
  const offset = depth === 1 ? 0 : Math.ceil((count(1, scale) * STEP) / MiB) * MiB;
  return { offset, length: count(depth, scale) * STEP };
}

function benchArgs(mode: Mode, depth: Depth, scale: number): string[] {
  const { offset } = region(depth, scale);
  const args = ['bench', '-f', 'raw', '-c', String(count(depth, scale)), '-d', String(depth), '-s', '4096', '-S', String(STEP), '-o', String(offset)];
  // --pattern: a known byte, so the destination can be checked against a local replay.
  return mode === 'write' ? [...args, '-w', `--pattern=${PATTERNS[depth]}`] : args;
}

/**
 * Before the measured runs, the depth-1 write run and read run once each, not recorded: a
 * long-running proxy's code is optimised by the JIT, a fresh one's is not yet (measured:
 * nbd-tunnel's first 10,000 QD1 writes ran at 2,900 requests/s, the fourth 10,000 at 4,400).
 * Every path gets the same, so the tables compare steady states. The warm-up writes are the
 * measured run's own (same region, same pattern), so the destination ends the same.
 */
const WARM_UP: Array<[Mode, Depth]> = [
  ['write', 1],
  ['read', 1],
];

/** Read-back requests per qemu-io process (its command line grows with them). */
const READ_BACK_BATCH = 2048;

/**
 * Reads each depth's region back through the path in 4 KiB requests shaped as its bench run's
 * (one at a time, or aio_read in groups of 16), qemu-io checking every byte against the pattern.
 */
async function verifyReads(url: string, scale: number): Promise<void> {
  for (const depth of DEPTHS) {
    const { offset, length } = region(depth, scale);
    const pattern = `0x${PATTERNS[depth].toString(16)}`;
    for (let at = offset; at < offset + length; at += READ_BACK_BATCH * STEP) {
      const end = Math.min(offset + length, at + READ_BACK_BATCH * STEP);
      const commands: string[] = [];
      for (let o = at; o < end; o += STEP) {
        commands.push(depth === 1 ? `read -P ${pattern} ${o} ${STEP}` : `aio_read -P ${pattern} ${o} ${STEP}`);
        if (depth > 1 && ((o - at) / STEP) % depth === depth - 1) commands.push('aio_flush');
      }
      if (depth > 1) commands.push('aio_flush');
      // qemu-io reports a pattern mismatch on stdout (an aio_read's without an error status).
      const { code, stdout } = await run('qemu-io', ['-f', 'raw', '-r', url, ...commands.flatMap((c) => ['-c', c])], { okCodes: [0, 1] });
      const done = stdout.match(new RegExp(`^read ${STEP}/${STEP} bytes`, 'gm'))?.length ?? 0;
      const failed = stdout.split('\n').find((l) => /verification failed/i.test(l));
      if (code !== 0 || failed || done !== (end - at) / STEP) {
        throw new Error(`depth ${depth}: reading ${at}..${end} back through the path: ${failed ?? `${done} of ${(end - at) / STEP} reads done, exit ${code}`}`);
      }
    }
  }
}

const tables: TableSpec[] = MODES.flatMap((mode) =>
  DEPTHS.map((depth) => ({
    // qemu-img bench does not look at what it reads: the read figures rest on the read-back check.
    title: `4 KiB ${mode}s at queue depth ${depth}${mode === 'read' ? ' (data checked by a read-back after the runs, not by qemu-img bench)' : ''}`,
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
    `qemu-img bench -s 4096 -S 4096 on nbd+unix:///EXPORT?socket=<path's client socket> (a ${scaledSize(SIZE, scale) >> 20} MiB export), after the depth-1 write and read runs once unrecorded (a warm-up for every path: a JIT-compiled proxy reaches its steady speed), writes (--pattern) then reads, -d 1 with -c ${count(1, scale)} and -d 16 with -c ${count(16, scale)}, each depth on its own region with its own pattern; requests/s from the run time qemu-img reports (process start excluded), mean latency = depth / rate. Writes verified against a local replay; reads verified by reading each region back through the path in 4 KiB requests at the same depth with qemu-io read -P / aio_read -P (qemu-img bench does not check what it reads).`,
  tables,
  notApplicable: () => null,
  async run(kind, context) {
    const size = scaledSize(SIZE, context.scale);
    const last = region(16, context.scale);
    if (last.offset + last.length > size) throw new Error(`the regions (${last.offset + last.length} bytes) do not fit the ${size}-byte export`);
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
        for (const [mode, depth] of WARM_UP) await run('qemu-img', [...benchArgs(mode, depth, context.scale), url]);
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
        await verifyReads(url, context.scale);
      },
    );
    return { metrics, peaks, notes };
  },
};
