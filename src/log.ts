// One pino logger per process: JSON lines on stdout, one event a line, never waiting on the reader.
import { pino, type Logger } from 'pino';
import { logOutput, viewOutput, type LogOutput } from './log-output.js';

export type { Logger };
export { droppedLogLines } from './log-output.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

let output: LogOutput | null = null;

/**
 * `view`: stdout shows a terminal view, which takes the lines (it keeps the warnings and errors
 * on screen); they go to stderr as well, unless stderr is a terminal too (the same screen).
 */
export function createLogger(level: LogLevel, role: string, view?: (line: string) => void): Logger {
  output = view ? viewOutput(view, process.stderr.isTTY ? null : logOutput(2)) : logOutput(1);
  return pino({ level, base: { role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, output);
}

/** At exit, how long log lines still queued for a slow reader may hold the process. */
const LOG_FLUSH_MS = 500;

/** Before exiting: lets queued lines out, but waits no longer than `timeoutMs` for a reader. */
export function flushLogs(timeoutMs = LOG_FLUSH_MS): Promise<void> {
  return output?.flush(timeoutMs) ?? Promise.resolve();
}
