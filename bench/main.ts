// `npm run bench`: every scenario through every path, runs interleaved across paths so a slow
// moment of the machine does not land on one path only; tables on stdout and in
// bench/RESULTS.md, every run in bench/results/latest.json. Progress goes to stderr.
import { rmSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { makePki, makeTempDir, removeDir } from '../test/harness/index.js';
import { parseOptions, UsageError, type BenchOptions } from './options.js';
import { describeEnvironment } from './report/environment.js';
import { renderMarkdown } from './report/markdown.js';
import { warmUp } from './warm-up.js';
import { newScenarioResult, summarise, type PathResult, type RunRecord, type ScenarioResult } from './results.js';
import type { Scenario } from './scenarios/index.js';
import type { Pki } from '../test/harness/index.js';
import type { PathKind } from './paths/index.js';

const HERE = import.meta.dirname;

let options: BenchOptions;
try {
  options = parseOptions(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
}

const root = await makeTempDir('nbdt-bench-');
// On Ctrl-C or SIGTERM: exit, which makes the harness SIGKILL every child it started.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    rmSync(root, { recursive: true, force: true });
    process.exit(130);
  });
}

const started = performance.now();
const scenarios: ScenarioResult[] = [];
try {
  const environment = await describeEnvironment();
  const pki = await makePki(join(root, 'pki'));
  progress('warm-up: one direct mirror, not recorded');
  await warmUp(join(root, 'warm-up'), pki, options.sizeScale);
  for (const scenario of options.scenarios) scenarios.push(await runScenario(scenario, pki));
  const wallSeconds = (performance.now() - started) / 1000;
  const command = ['npm run bench', ...(options.argv.length > 0 ? ['--', ...options.argv] : [])].join(' ');
  const appendix = await readFile(join(HERE, 'PROFILE.md'), 'utf8').catch(() => undefined);
  const markdown = renderMarkdown({ environment, command, wallSeconds, paths: options.paths, scenarios, appendix });
  await mkdir(join(HERE, 'results'), { recursive: true });
  await writeFile(join(HERE, 'results', 'latest.json'), `${JSON.stringify({ ...environment, command, wallSeconds, options: { ...options, scenarios: options.scenarios.map((s) => s.id) }, scenarios }, null, 2)}\n`);
  await writeFile(join(HERE, 'RESULTS.md'), markdown);
  process.stdout.write(markdown);
  const failed = scenarios.flatMap((s) => Object.values(s.paths).flatMap((p) => p.runs)).filter((r) => !r.ok).length;
  progress(`done in ${wallSeconds.toFixed(0)} s; ${failed} failed run(s); bench/RESULTS.md and bench/results/latest.json written`);
  process.exitCode = failed > 0 ? 1 : 0;
} finally {
  await removeDir(root);
}

async function runScenario(scenario: Scenario, pki: Pki): Promise<ScenarioResult> {
  const result = newScenarioResult(scenario, options.sizeScale);
  const runs = Math.min(options.runs, scenario.maxRuns ?? Infinity);
  for (const kind of options.paths) {
    result.paths[kind] = { notApplicable: scenario.notApplicable(kind), runs: [], summary: {}, peakKiB: {} };
  }
  for (let index = 0; index < runs; index++) {
    for (const kind of options.paths) {
      const path = result.paths[kind]!;
      if (path.notApplicable !== null) continue;
      const record = await runOnce(scenario, kind, pki, index);
      path.runs.push(record);
      progress(`${scenario.id} ${kind} run ${index + 1}/${runs}: ${record.ok ? describe(record) : `FAILED: ${record.error}`}`);
    }
  }
  for (const path of Object.values(result.paths) as PathResult[]) summarise(path);
  return result;
}

async function runOnce(scenario: Scenario, kind: PathKind, pki: Pki, index: number): Promise<RunRecord> {
  const dir = join(root, `${scenario.id}-${kind}-${index}`);
  const start = performance.now();
  const seconds = (): number => Math.round(performance.now() - start) / 1000;
  try {
    const outcome = await scenario.run(kind, { dir, pki, scale: options.sizeScale, index });
    return { ok: true, seconds: seconds(), ...outcome };
  } catch (error) {
    return { ok: false, error: (error as Error).message.slice(0, 2000), seconds: seconds(), metrics: {}, peaks: [], notes: [] };
  }
}

function describe(record: RunRecord): string {
  return `${Object.entries(record.metrics).map(([k, v]) => `${k} ${v.toFixed(v < 10 ? 2 : 0)}`).join(', ')} (${record.seconds.toFixed(1)} s)`;
}

function progress(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}
