// Command-line options of `npm run bench`.
import { parseArgs } from 'node:util';
import { isPathKind, PATH_KINDS, type PathKind } from './paths/index.js';
import { SCENARIOS, type Scenario } from './scenarios/index.js';

export interface BenchOptions {
  runs: number;
  scenarios: Scenario[];
  paths: PathKind[];
  sizeScale: number;
  /** The arguments as given, for the report. */
  argv: string[];
}

export const USAGE = `usage: npm run bench -- [--runs N] [--only SCENARIO[,SCENARIO...]] [--paths PATH[,PATH...]] [--size-scale F]
  --runs N          runs per scenario and path; the tables show medians and min-max (default 3)
  --only LIST       scenarios: ${SCENARIOS.map((s) => s.id).join(', ')} (default all)
  --paths LIST      paths: ${PATH_KINDS.join(', ')} (default all)
  --size-scale F    multiplies disk sizes and request counts, e.g. 0.125 for a quick smoke run (default 1)`;

export class UsageError extends Error {}

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: '3' },
      only: { type: 'string' },
      paths: { type: 'string' },
      'size-scale': { type: 'string', default: '1' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) throw new UsageError(USAGE);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`--runs: a whole number of at least 1, not '${values.runs}'`);
  const sizeScale = Number(values['size-scale']);
  if (!(sizeScale > 0 && sizeScale <= 4)) throw new UsageError(`--size-scale: a number in (0, 4], not '${values['size-scale']}'`);
  const scenarios = values.only === undefined ? [...SCENARIOS] : list(values.only).map(findScenario);
  const paths = values.paths === undefined ? [...PATH_KINDS] : list(values.paths).map(checkPath);
  // Keep the canonical order whatever order the lists were given in.
  return {
    runs,
    sizeScale,
    scenarios: SCENARIOS.filter((s) => scenarios.includes(s)),
    paths: PATH_KINDS.filter((p) => paths.includes(p)),
    argv,
  };
}

function list(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter(Boolean);
}

function findScenario(id: string): Scenario {
  const found = SCENARIOS.find((s) => s.id === id);
  if (!found) throw new UsageError(`--only: unknown scenario '${id}'; known: ${SCENARIOS.map((s) => s.id).join(', ')}`);
  return found;
}

function checkPath(name: string): PathKind {
  if (!isPathKind(name)) throw new UsageError(`--paths: unknown path '${name}'; known: ${PATH_KINDS.join(', ')}`);
  return name;
}
