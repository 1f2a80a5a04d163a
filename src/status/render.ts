// Renders a /status document as a table, one row per stream, with a progress bar per disk. On a
// terminal it fits the width: the bar shrinks first, then route and export names are cut in the
// middle, then the byte columns go, then the bar.
import type { SessionStatus, WorkerState } from '../metrics/index.js';
import { bar, barCells, clip, clipMiddle } from '../terminal/index.js';

export interface StatusDocument {
  role: string;
  /** The proxy's nbd-tunnel version (absent from versions before 0.1.0's /status had it). */
  version?: string;
  pid: number;
  /** With --workers/--connections: each worker's state; sessions and streams then name their worker. */
  workers?: WorkerState[];
  sessions: SessionStatus[];
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

/** A session as the table names it: its worker's name first when there are workers (ids are per process). */
const sessionName = (s: SessionStatus): string => (s.worker ? `${s.worker}/${s.id}` : String(s.id));

const HEADER = ['SESSION', 'STREAM', 'ROUTE', 'EXPORT', 'SIZE', 'COVERED', 'MB/s', 'TO DEST', 'TO SOURCE'];
const GAP = 2;
/** Columns cut in the middle before any is dropped, and how narrow they may get. */
const NAMES = [2, 3];
const MIN_NAME = 8;
/** Columns that go, in this order, for the bar (the bytes each way), then for the table itself (MB/s, SIZE). */
const DROPPED_FOR_BAR = [8, 7];
const DROPPED_FOR_TABLE = [8, 7, 6, 4];

interface Layout {
  shown: number[];
  widths: number[];
  /** The bar's cells; 0: no bar. */
  cells: number;
}

const tableWidth = ({ shown, widths }: Pick<Layout, 'shown' | 'widths'>): number => shown.reduce((sum, i) => sum + widths[i], 0) + GAP * (shown.length - 1);

/** Cuts names, then drops `droppable` columns, until a row (with a bar, when `bars`) fits `width`. */
function attempt(natural: number[], width: number, bars: boolean, droppable: number[]): Layout {
  const shown = natural.map((_, i) => i);
  const widths = [...natural];
  const cells = (): number => (bars ? barCells(width - tableWidth({ shown, widths }) - GAP) : 0);
  const fits = (): boolean => (bars ? cells() > 0 : tableWidth({ shown, widths }) <= width);
  // Names give a column at a time, the wider first.
  while (!fits() && NAMES.some((i) => widths[i] > MIN_NAME)) {
    const widest = NAMES.reduce((a, b) => (widths[b] > widths[a] ? b : a));
    widths[widest]--;
  }
  for (const column of droppable) {
    if (fits()) break;
    shown.splice(shown.indexOf(column), 1);
  }
  return { shown, widths, cells: cells() };
}

/** Which columns, how wide, and the bar's cells: a bar when it fits beside the main columns, else the table alone. */
function layout(natural: number[], width: number, bars: boolean): Layout {
  const withBar = bars ? attempt(natural, width, true, DROPPED_FOR_BAR) : null;
  return withBar && withBar.cells > 0 ? withBar : attempt(natural, width, false, DROPPED_FOR_TABLE);
}

/** `bars`: a progress bar per stream; `width`: the terminal's columns (none: as wide as it takes). */
export function statusLines(doc: StatusDocument, { bars, width = Infinity }: { bars: boolean; width?: number }): string[] {
  const rows: string[][] = [];
  const ratios: Array<number | null> = [];
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
      ratios.push(s.coveredRatio);
    }
  }
  const natural = HEADER.map((h, i) => Math.max(h.length, ...rows.map((r) => [...r[i]].length)));
  const { shown, widths, cells } = layout(natural, width, bars && rows.length > 0);
  const cell = (text: string, i: number): string => (NAMES.includes(i) ? clipMiddle(text, widths[i]) : text).padEnd(widths[i]);
  const line = (row: string[]): string => shown.map((i) => cell(row[i], i)).join(' '.repeat(GAP)).trimEnd();
  const workers = doc.workers ?? [];
  const troubled = workers.filter((w) => !w.ok).map((w) => `worker ${w.worker} (pid ${w.pid}): ${w.reason}`);
  const processes = workers.length > 0 ? `, ${workers.length} workers` : '';
  const sessions = doc.sessions.map(
    (s) => `session ${sessionName(s)}: ${s.client ? `${s.client} ` : ''}${s.peer}${s.rttMs === null ? '' : `, rtt ${s.rttMs} ms`}${s.suspended ? ', SUSPENDED (reconnecting)' : ''}`,
  );
  const out = [`nbd-tunnel ${doc.role} (pid ${doc.pid}${processes}): ${doc.sessions.length} session(s)`, ...troubled, ...sessions, line(HEADER)];
  rows.forEach((r, i) => out.push(cells > 0 ? `${line(r).padEnd(tableWidth({ shown, widths }))}${' '.repeat(GAP)}${bar(ratios[i], cells)}`.trimEnd() : line(r)));
  if (rows.length === 0) out.push('(no streams)');
  return out.map((l) => clip(l, width));
}
