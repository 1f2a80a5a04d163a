// A terminal view: what the caller draws (bars, a table), with the last warnings and errors
// below it, redrawn in place.
import { clip } from './fit.js';
import { noticeLines, Notices, type Notice } from './notices.js';
import { screen } from './screen.js';

/** Warnings and errors kept on screen. */
const KEEP_NOTICES = 5;

export interface TerminalView {
  /** A line from the logger (pino JSON): a warning or an error is kept and drawn at once. */
  log(line: string): void;
  draw(): void;
  /** Leaves the last drawing; a later warning is written below it instead of redrawing. */
  stop(): void;
}

/** The body, then, after a blank line, the notices; no line wider than `width`. */
export function viewLines(body: string[], notices: readonly Notice[], width: number): string[] {
  const below = notices.length > 0 ? ['', ...noticeLines(notices, width)] : [];
  return [...body, ...below].map((line) => clip(line, width));
}

export function terminalView(out: NodeJS.WriteStream, body: (width: number) => string[]): TerminalView {
  const notices = new Notices(KEEP_NOTICES);
  const drawing = screen(out, (width) => viewLines(body(width), notices.list(), width));
  let stopped = false;
  return {
    log(line) {
      if (!notices.add(line)) return;
      if (!stopped) return drawing.draw();
      out.write(`${noticeLines(notices.list().slice(-1), drawing.width()).join('\n')}\n`);
    },
    draw() {
      if (!stopped) drawing.draw();
    },
    stop() {
      stopped = true;
      drawing.stop();
    },
  };
}
