// What a scenario is: runs of one measurement per path, and how its table looks.
import type { Pki } from '../../test/harness/index.js';
import type { PathKind } from '../paths/index.js';
import type { ProcessPeak } from '../rig-run.js';

export interface MetricSpec {
  key: string;
  label: string;
  /** Decimal places in the table. */
  digits: number;
}

export interface TableSpec {
  title: string;
  metrics: MetricSpec[];
  /** A higher-is-better metric the ratio columns (× direct, × ssh, × stunnel) compare; null for none. */
  ratioOf: string | null;
}

export interface RunContext {
  /** A fresh directory for this run, removed after it. */
  dir: string;
  pki: Pki;
  /** --size-scale: multiplies disk sizes and request counts. */
  scale: number;
  /** 0-based run number; seeds vary with it. */
  index: number;
}

export interface RunOutcome {
  metrics: Record<string, number>;
  peaks: ProcessPeak[];
  notes: string[];
}

export interface Scenario {
  id: string;
  title: string;
  /** One line on what is measured and how. */
  description(scale: number): string;
  tables: TableSpec[];
  /** Paths it does not apply to are shown as n/a, with the reason. */
  notApplicable(kind: PathKind): string | null;
  /** At most this many runs whatever --runs says (the stall check needs one). */
  maxRuns?: number;
  run(kind: PathKind, context: RunContext): Promise<RunOutcome>;
}

const MiB = 1 << 20;
export const GiB = 1 << 30;

/** A disk size scaled by --size-scale, in whole MiB and at least 16 MiB. */
export function scaledSize(bytes: number, scale: number): number {
  return Math.max(16, Math.round((bytes * scale) / MiB)) * MiB;
}

/** Megabytes (10^6 bytes, as QEMU and dd report) per second. */
export function mbPerSecond(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

export function formatSize(bytes: number): string {
  return bytes >= GiB && bytes % GiB === 0 ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`;
}
