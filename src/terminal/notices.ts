// The last warnings and errors, kept for a terminal view: the logger's JSON lines would be drawn
// over at the next redraw, so the view shows them itself, below what it draws.
import { wrap } from './fit.js';

/** pino's numeric levels from warn up. */
const LEVELS: Record<number, string> = { 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Lines one notice may take on screen. */
const NOTICE_LINES = 2;

export interface Notice {
  /** HH:MM:SS, UTC as in the log lines. */
  time: string;
  level: string;
  text: string;
  /** The same text in a row this many times (only the last time is kept). */
  count: number;
}

/** What an operator reads of a log line: its message, the route it is about, the reason. */
function noticeOf(line: string): Notice | null {
  let entry: { level?: unknown; time?: unknown; msg?: unknown; route?: unknown; reason?: unknown };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return null;
  }
  const level = typeof entry.level === 'number' ? LEVELS[entry.level] : undefined;
  if (!level) return null;
  const route = typeof entry.route === 'string' ? ` (route ${entry.route})` : '';
  const reason = typeof entry.reason === 'string' ? `: ${entry.reason}` : '';
  const time = typeof entry.time === 'string' ? entry.time.slice(11, 19) : '--:--:--';
  return { time, level, text: `${String(entry.msg ?? '')}${route}${reason}`, count: 1 };
}

export class Notices {
  private readonly kept: Notice[] = [];

  constructor(private readonly keep: number) {}

  /** Takes a pino JSON line; true when it was a warning or an error, now kept. */
  add(line: string): boolean {
    const notice = noticeOf(line);
    if (!notice) return false;
    const last = this.kept.at(-1);
    if (last && last.level === notice.level && last.text === notice.text) {
      last.count++;
      last.time = notice.time;
      return true;
    }
    this.kept.push(notice);
    if (this.kept.length > this.keep) this.kept.shift();
    return true;
  }

  list(): readonly Notice[] {
    return this.kept;
  }
}

/** The notices, oldest first, each on at most two lines of `width` columns. */
export function noticeLines(notices: readonly Notice[], width: number): string[] {
  return notices.flatMap((n) => wrap(`${n.time} ${n.level}${n.count > 1 ? ` ${n.count}x` : ''} ${n.text}`, width, NOTICE_LINES));
}
