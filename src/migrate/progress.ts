// What `nbd-tunnel migrate` shows while it runs: on a terminal, a bar per disk and one for RAM,
// redrawn in place; otherwise a JSON line every few seconds and at each change of phase.
import type { Logger } from '../log.js';
import { bar, size } from '../status/index.js';
import type { MigrationProgress } from './sequence.js';

const REDRAW_MS = 500;
const LOG_EVERY_MS = 5_000;

export interface ProgressView {
  update(progress: MigrationProgress): void;
  /** Leaves the last drawing on screen; later output starts below it. */
  end(): void;
}

export function progressView(log: Logger, terminal: NodeJS.WriteStream | null): ProgressView {
  let lastAt = 0;
  let lastPhase = '';
  let drawnLines = 0;
  const disks = new Map<string, { offset: number; len: number; ready: boolean }>();
  let ram: MigrationProgress['ram'] = null;
  return {
    update(progress) {
      for (const d of progress.disks) disks.set(d.node, d);
      if (progress.ram) ram = progress.ram;
      const now = Date.now();
      const changed = progress.phase !== lastPhase;
      if (!changed && now - lastAt < (terminal ? REDRAW_MS : LOG_EVERY_MS)) return;
      lastAt = now;
      lastPhase = progress.phase;
      if (!terminal) {
        const pct = (done: number, of: number): number => (of > 0 ? Math.round((1000 * done) / of) / 10 : 0);
        const diskFields = [...disks].map(([node, d]) => ({ node, pct: pct(d.offset, d.len), ready: d.ready }));
        log.info({ phase: progress.phase, disks: diskFields, ram: ram && { pct: pct(ram.transferred, ram.transferred + ram.remaining), transferred: ram.transferred } }, 'migration progress');
        return;
      }
      const lines = [...disks].map(([node, d]) => `${node.padEnd(12)} ${bar(d.len > 0 ? d.offset / d.len : 0)} ${size(d.offset)} / ${size(d.len)}${d.ready ? '  READY' : ''}`);
      if (ram) lines.push(`${'RAM'.padEnd(12)} ${bar(ram.transferred / Math.max(1, ram.transferred + ram.remaining))} ${size(ram.transferred)} sent, ${size(ram.remaining)} left`);
      lines.push(`phase: ${progress.phase}`);
      // Back to the top of the previous drawing, then draw over it line by line.
      terminal.write(`${drawnLines > 0 ? `\x1b[${drawnLines}F` : ''}${lines.map((l) => `\x1b[2K${l}`).join('\n')}\n`);
      drawnLines = lines.length;
    },
    end() {
      drawnLines = 0;
    },
  };
}
