// The record of a benchmark: every run of every scenario and path, and their summaries.
import type { PathKind } from './paths/index.js';
import type { ProcessPeak } from './rig-run.js';
import type { Scenario } from './scenarios/index.js';
import type { TableSpec } from './scenarios/types.js';
import { spread, type Spread } from './stats.js';

export interface RunRecord {
  ok: boolean;
  /** Why the run does not count (an error, or images that differ). */
  error?: string;
  seconds: number;
  metrics: Record<string, number>;
  peaks: ProcessPeak[];
  notes: string[];
}

export interface PathResult {
  /** Set when the scenario does not apply to this path; then there are no runs. */
  notApplicable: string | null;
  runs: RunRecord[];
  /** Per metric, over the runs that count. */
  summary: Record<string, Spread>;
  /** Per process name, the median over the runs that count of its peak RSS (KiB); per-connection children of one name: the largest. */
  peakKiB: Record<string, number>;
}

export interface ScenarioResult {
  id: string;
  title: string;
  description: string;
  tables: TableSpec[];
  paths: Partial<Record<PathKind, PathResult>>;
}

export function newScenarioResult(scenario: Scenario, scale: number): ScenarioResult {
  return { id: scenario.id, title: scenario.title, description: scenario.description(scale), tables: scenario.tables, paths: {} };
}

export function summarise(path: PathResult): void {
  const ok = path.runs.filter((r) => r.ok);
  const keys = new Set(ok.flatMap((r) => Object.keys(r.metrics)));
  path.summary = {};
  for (const key of keys) {
    const s = spread(ok.map((r) => r.metrics[key]).filter(Number.isFinite));
    if (s) path.summary[key] = s;
  }
  const perRun = ok.map((r) => {
    const byName = new Map<string, number>();
    for (const p of r.peaks) byName.set(p.name, Math.max(byName.get(p.name) ?? 0, p.peakKiB));
    return byName;
  });
  path.peakKiB = {};
  for (const name of new Set(perRun.flatMap((m) => [...m.keys()]))) {
    const s = spread(perRun.flatMap((m) => (m.has(name) ? [m.get(name)!] : [])));
    if (s) path.peakKiB[name] = s.median;
  }
}
