// The results as markdown: one table per measurement, medians with min-max, ratios of the
// table's main metric to direct, ssh and stunnel, and the proxies' peak memory.
import type { PathKind } from '../paths/index.js';
import type { PathResult, ScenarioResult } from '../results.js';
import type { TableSpec } from '../scenarios/types.js';
import type { Environment } from './environment.js';

const REFERENCES: readonly PathKind[] = ['direct', 'ssh', 'stunnel'];

const PATH_NOTES: Record<PathKind, string> = {
  direct: "QEMU's NBD client on the destination NBD socket itself (the ceiling; no proxy, no TCP)",
  socat: 'socat UNIX-LISTEN → TCP 127.0.0.1 → socat → UNIX-CONNECT, no encryption (-b 128 KiB, TCP_NODELAY)',
  stunnel: 'stunnel client → TLS 1.3 with mutual certificates → stunnel server, one TLS connection per NBD connection',
  ssh: 'ssh -L local.sock:dest.sock to an sshd of its own on 127.0.0.1, one SSH connection for all disks, default ciphers',
  'nbd-tunnel': "this project's source and dest (dist/cli.js): one TLS 1.3 WebSocket, yamux streams",
};

export interface ReportInput {
  environment: Environment;
  command: string;
  wallSeconds: number;
  paths: PathKind[];
  scenarios: ScenarioResult[];
  /** Markdown kept by hand (bench/PROFILE.md: where the CPU goes), appended as it is. */
  appendix?: string;
}

export function renderMarkdown(input: ReportInput): string {
  const { environment: env } = input;
  const lines = [
    '# nbd-tunnel benchmark results',
    '',
    `- Date: ${env.date}; wall time ${formatDuration(input.wallSeconds)}`,
    `- Command: \`${input.command}\``,
    `- Machine: ${env.machine.cpus} CPUs (${env.machine.cpuModel}), ${env.machine.memoryGiB} GiB RAM, Linux ${env.machine.kernel}`,
    `- Versions: ${Object.entries(env.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    '- Everything runs on this one machine: both QEMU daemons, both halves of every path, and the delay relay; disk images live in the page cache.',
    '- Each cell: the median over the runs that verified (qemu-img compare identical), then (min–max). Ratio columns (× direct, × ssh, × stunnel) divide this path\'s median rate (the table\'s MB/s, writes/s or requests/s column) by the reference path\'s: above 1 is faster. Peak RSS: VmHWM in MiB per proxy process (per-connection children: the largest), median over runs, read after the measurement and before the QEMU daemons quit.',
    '',
    '## Paths',
    '',
    ...input.paths.map((p) => `- \`${p}\`: ${PATH_NOTES[p]}`),
  ];
  for (const scenario of input.scenarios) lines.push('', ...renderScenario(scenario, input.paths));
  if (input.appendix) lines.push('', input.appendix.trimEnd());
  return `${lines.join('\n')}\n`;
}

function renderScenario(scenario: ScenarioResult, paths: PathKind[]): string[] {
  const lines = [`## ${scenario.title} (\`${scenario.id}\`)`, '', scenario.description];
  scenario.tables.forEach((table, i) => {
    if (scenario.tables.length > 1) lines.push('', `### ${table.title}`);
    lines.push('', ...renderTable(scenario, table, paths, i === 0));
  });
  const notes = paths.flatMap((kind) => {
    const result = scenario.paths[kind];
    const facts = [...new Set(result?.runs.flatMap((r) => r.notes) ?? [])];
    const failures = result?.runs.flatMap((r, i) => (r.ok ? [] : [`run ${i + 1} FAILED: ${r.error}`])) ?? [];
    return [...facts, ...failures].map((text) => `- ${kind}: ${text}`);
  });
  if (notes.length > 0) lines.push('', ...notes);
  return lines;
}

function renderTable(scenario: ScenarioResult, table: TableSpec, paths: PathKind[], withMemory: boolean): string[] {
  const refs = table.ratioOf === null ? [] : REFERENCES.filter((r) => paths.includes(r) && scenario.paths[r]?.summary[table.ratioOf!]);
  const header = ['path', ...table.metrics.map((m) => m.label), ...refs.map((r) => `× ${r}`), ...(withMemory ? ['peak RSS MiB'] : []), 'runs ok'];
  // A scenario for one path only (the stall check) needs no row per other path saying so.
  const applicable = paths.filter((kind) => scenario.paths[kind]?.notApplicable === null).length;
  const rows = paths.flatMap((kind) => {
    const result = scenario.paths[kind];
    if (!result || (result.notApplicable !== null && applicable < 2)) return [];
    if (result.notApplicable !== null) return [[kind, `n/a: ${result.notApplicable}`, ...Array(header.length - 2).fill('')]];
    return [[
      kind,
      ...table.metrics.map((m) => cell(result, m.key, m.digits)),
      ...refs.map((r) => ratio(result, scenario.paths[r]!, table.ratioOf!)),
      ...(withMemory ? [memory(result, kind)] : []),
      `${result.runs.filter((r) => r.ok).length}/${result.runs.length}`,
    ]];
  });
  return [row(header), row(header.map(() => '---')), ...rows.map(row)];
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

function cell(result: PathResult, key: string, digits: number): string {
  const s = result.summary[key];
  if (!s) return '—';
  const f = (x: number): string => x.toFixed(digits);
  return s.n === 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

function ratio(result: PathResult, reference: PathResult, key: string): string {
  const a = result.summary[key]?.median;
  const b = reference.summary[key]?.median;
  return a !== undefined && b !== undefined && b > 0 ? a / b >= 10 ? (a / b).toFixed(1) : (a / b).toFixed(2) : '—';
}

function memory(result: PathResult, kind: PathKind): string {
  const entries = Object.entries(result.peakKiB);
  if (entries.length === 0) return kind === 'direct' ? 'none' : '—';
  // "socat dest child (socat)" reads better as "dest child (socat)" in the socat row.
  return entries.map(([name, kiB]) => `${name.startsWith(`${kind} `) ? name.slice(kind.length + 1) : name} ${(kiB / 1024).toFixed(1)}`).join(', ');
}

function formatDuration(seconds: number): string {
  const m = Math.floor(seconds / 60);
  return m > 0 ? `${m} min ${Math.round(seconds % 60)} s` : `${seconds.toFixed(0)} s`;
}
