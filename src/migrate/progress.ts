// What `nbd-tunnel migrate` shows while it runs: on a terminal, a bar per disk and one for RAM,
// redrawn in place at the terminal's width with the last warnings below; otherwise a JSON line
// every few seconds and at each change of phase.
import type { Logger } from '../log.js';
import { size } from '../status/index.js';
import { bar, barCells, clipMiddle, columns, terminalView } from '../terminal/index.js';
import type { DiskProgress, MigrationProgress } from './sequence.js';

const REDRAW_MS = 500;
const LOG_EVERY_MS = 5_000;
/** How narrow a disk's name may be cut before its bar is left out. */
const MIN_LABEL = 8;

export interface MigrationState {
  disks: DiskProgress[];
  ram: MigrationProgress['ram'];
  phase: string;
}

/** A bar per disk and for RAM, then the phase; the names cut and the bars shrunk to fit `width`. */
export function migrationLines({ disks, ram, phase }: MigrationState, width: number): string[] {
  const rows = disks.map((d) => ({ label: d.node, ratio: d.len > 0 ? d.offset / d.len : 0, tail: `${size(d.offset)} / ${size(d.len)}${d.ready ? '  READY' : ''}` }));
  if (ram) rows.push({ label: 'RAM', ratio: ram.transferred / Math.max(1, ram.transferred + ram.remaining), tail: `${size(ram.transferred)} sent, ${size(ram.remaining)} left` });
  const tail = Math.max(0, ...rows.map((r) => columns(r.tail)));
  let label = Math.max(3, ...rows.map((r) => columns(r.label)));
  const cells = (): number => barCells(width - label - tail - 2);
  while (cells() === 0 && label > MIN_LABEL) label--;
  const drawn = cells();
  const lines = rows.map((r) => [clipMiddle(r.label, label).padEnd(label), ...(drawn > 0 ? [bar(r.ratio, drawn)] : []), r.tail].join(' '));
  return [...lines, `phase: ${phase}`];
}

/** The terminal side: the bars and, below them, the warnings the logger hands over. */
export interface MigrationScreen {
  log(line: string): void;
  show(state: MigrationState): void;
  /** Leaves the last drawing on screen; later output starts below it. */
  end(): void;
}

export function migrationScreen(out: NodeJS.WriteStream): MigrationScreen {
  let state: MigrationState | null = null;
  const view = terminalView(out, (width) => (state ? migrationLines(state, width) : []));
  return {
    log: view.log,
    show(next) {
      state = next;
      view.draw();
    },
    end: view.stop,
  };
}

export interface ProgressView {
  update(progress: MigrationProgress): void;
  end(): void;
}

export function progressView(log: Logger, screen: MigrationScreen | null): ProgressView {
  let lastAt = 0;
  let lastPhase = '';
  const disks = new Map<string, DiskProgress>();
  let ram: MigrationProgress['ram'] = null;
  return {
    update(progress) {
      for (const d of progress.disks) disks.set(d.node, d);
      if (progress.ram) ram = progress.ram;
      const now = Date.now();
      const changed = progress.phase !== lastPhase;
      if (!changed && now - lastAt < (screen ? REDRAW_MS : LOG_EVERY_MS)) return;
      lastAt = now;
      lastPhase = progress.phase;
      if (screen) return screen.show({ disks: [...disks.values()], ram, phase: progress.phase });
      const pct = (done: number, of: number): number => (of > 0 ? Math.round((1000 * done) / of) / 10 : 0);
      const diskFields = [...disks].map(([node, d]) => ({ node, pct: pct(d.offset, d.len), ready: d.ready }));
      log.info({ phase: progress.phase, disks: diskFields, ram: ram && { pct: pct(ram.transferred, ram.transferred + ram.remaining), transferred: ram.transferred } }, 'migration progress');
    },
    end: () => screen?.end(),
  };
}
