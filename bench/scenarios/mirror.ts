// Bulk copy: blockdev-mirror (sync=full, background) of one or more disks to READY, with an
// optional round-trip time between the path's TCP ends. The metric is disk bytes per second.
import { withPathRig } from '../rig-run.js';
import { GiB, formatSize, mbPerSecond, scaledSize, type Scenario } from './types.js';

export interface MirrorScenarioSpec {
  id: string;
  title: string;
  disks: number;
  /** Bytes per disk at --size-scale 1. */
  size: number;
  rttMs: number;
}

export function mirrorScenario(spec: MirrorScenarioSpec): Scenario {
  const label = spec.disks === 1 ? 'MB/s to READY' : `aggregate MB/s, ${spec.disks} disks to READY`;
  return {
    id: spec.id,
    title: spec.title,
    description: (scale) =>
      `${spec.disks} × ${formatSize(scaledSize(spec.size, scale))} test image (random, pattern and hole regions), blockdev-mirror sync=full to READY${spec.rttMs > 0 ? `, ${spec.rttMs} ms RTT added by the delay relay` : ''}; MB/s = disk bytes / time from the first blockdev-mirror to the last READY; proxy CPU s per GiB = user+system CPU seconds of the path's processes (both ends, children included, from /proc) over the mirror and its completion, per GiB of disk (— for direct: no proxy).`,
    tables: [{ title: spec.title, metrics: [{ key: 'mbps', label, digits: 0 }, { key: 'cpuPerGiB', label: 'proxy CPU s per GiB', digits: 2 }], ratioOf: 'mbps' }],
    notApplicable: (kind) => (kind === 'direct' && spec.rttMs > 0 ? 'no TCP leg to delay' : null),
    async run(kind, context) {
      const size = scaledSize(spec.size, context.scale);
      const disks = Array.from({ length: spec.disks }, (_, i) => ({ name: `disk${i}`, size, seed: 1000 * context.index + i + 1 }));
      const run = await withPathRig({ kind, dir: context.dir, pki: context.pki, disks, rttMs: spec.rttMs }, (rig) => rig.mirrorAll());
      const bytes = size * spec.disks;
      const metrics: Record<string, number> = { mbps: mbPerSecond(bytes, run.value) };
      if (run.cpuSeconds !== null) metrics.cpuPerGiB = run.cpuSeconds / (bytes / GiB);
      return { metrics, peaks: run.peaks, notes: run.notes };
    },
  };
}
