// Renders a /status document as a table, one row per stream, with a progress bar per disk.
import type { SessionStatus, WorkerState } from '../metrics/index.js';

export interface StatusDocument {
  role: string;
  /** The proxy's nbd-tunnel version (absent from versions before 0.1.0's /status had it). */
  version?: string;
  pid: number;
  /** With --workers/--connections: each worker's state; sessions and streams then name their worker. */
  workers?: WorkerState[];
  sessions: SessionStatus[];
}

/** A session as the table names it: its worker's name first when there are workers (ids are per process). */
const sessionName = (s: SessionStatus): string => (s.worker ? `${s.worker}/${s.id}` : String(s.id));

const BAR_WIDTH = 20;

/** A progress bar of BAR_WIDTH cells for a share from 0 to 1 (blank when unknown). */
export function bar(ratio: number | null): string {
  if (ratio === null) return ' '.repeat(BAR_WIDTH + 2);
  const filled = Math.round(Math.min(1, Math.max(0, ratio)) * BAR_WIDTH);
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`;
}

/** Bytes in binary units, one decimal. */
export function size(bytes: number | null): string {
  if (bytes === null) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function renderStatus(doc: StatusDocument, withBars: boolean): string {
  const header = ['SESSION', 'STREAM', 'ROUTE', 'EXPORT', 'SIZE', 'COVERED', 'MB/s', 'TO DEST', 'TO SOURCE'];
  const rows: string[][] = [];
  const bars: string[] = [];
  for (const session of doc.sessions) {
    for (const s of session.streams) {
      rows.push([
        sessionName(session),
        String(s.stream),
        s.route,
        s.export ?? (s.inspection === 'not-nbd' ? '(not NBD)' : '-'),
        size(s.size),
        s.coveredRatio === null ? '-' : `${(s.coveredRatio * 100).toFixed(1)}%`,
        s.mbps.toFixed(1),
        size(s.bytesToDest),
        size(s.bytesToSource),
      ]);
      bars.push(bar(s.coveredRatio));
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  const sessions = doc.sessions.map((s) => `session ${sessionName(s)}: ${s.client ? `${s.client} ` : ''}${s.peer}${s.rttMs === null ? '' : `, rtt ${s.rttMs} ms`}${s.suspended ? ', SUSPENDED (reconnecting)' : ''}`);
  const workers = doc.workers ?? [];
  const troubled = workers.filter((w) => !w.ok).map((w) => `worker ${w.worker} (pid ${w.pid}): ${w.reason}`);
  const processes = workers.length > 0 ? `, ${workers.length} workers` : '';
  const out = [`nbd-tunnel ${doc.role} (pid ${doc.pid}${processes}): ${doc.sessions.length} session(s)`, ...troubled, ...sessions, line(header)];
  rows.forEach((r, i) => out.push(withBars ? `${line(r)}  ${bars[i]}` : line(r)));
  if (rows.length === 0) out.push('(no streams)');
  return `${out.join('\n')}\n`;
}
