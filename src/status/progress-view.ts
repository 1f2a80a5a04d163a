// The source's progress view, when its stdout is a terminal: the /status table with a bar per
// disk, redrawn every second in place, the last warnings and errors below it, and, from the first
// SIGINT/SIGTERM on, how many streams the drain still waits for.
import { terminalView } from '../terminal/index.js';
import { statusLines, type StatusDocument } from './render.js';

const REDRAW_MS = 1_000;

export interface Draining {
  streams: number;
  timeoutMs: number;
}

export const drainingLine = ({ streams, timeoutMs }: Draining): string => `draining (${streams} stream${streams === 1 ? '' : 's'}, up to ${timeoutMs / 1000} s)`;

/** What the view draws above the notices: the title, the drain once it started, the table. */
export function progressLines(doc: StatusDocument | null, draining: Draining | null, width: number): string[] {
  if (!doc) return draining ? [drainingLine(draining)] : [];
  const [title, ...rest] = statusLines(doc, { bars: true, width });
  return draining ? [title, drainingLine(draining), ...rest] : [title, ...rest];
}

export interface ProgressView {
  /** The logger's lines: warnings and errors stay on screen. */
  log(line: string): void;
  /** The proxy serves: draw its status now and every second. */
  show(status: () => StatusDocument): void;
  /** The first signal: says so at once, with the streams still open, at every redraw. */
  draining(openStreams: () => number): void;
}

export function progressView(out: NodeJS.WriteStream, drainTimeoutMs: number): ProgressView {
  let status: (() => StatusDocument) | null = null;
  let openStreams: (() => number) | null = null;
  const view = terminalView(out, (width) => progressLines(status?.() ?? null, openStreams && { streams: openStreams(), timeoutMs: drainTimeoutMs }, width));
  return {
    log: view.log,
    show(next) {
      status = next;
      view.draw();
      setInterval(view.draw, REDRAW_MS).unref();
    },
    draining(next) {
      openStreams = next;
      view.draw();
    },
  };
}
