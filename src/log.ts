// One pino logger per process: JSON lines on stdout, one event a line, never waiting on the reader.
import { pino, type Logger } from 'pino';
import { logOutput, type LogOutput } from './log-output.js';

export type { Logger };
export { droppedLogLines } from './log-output.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

let output: LogOutput | null = null;

/** `toStderr`: when stdout shows the progress view, the JSON lines that remain go to stderr. */
export function createLogger(level: LogLevel, role: string, toStderr = false): Logger {
  output = logOutput(toStderr ? 2 : 1);
  return pino({ level, base: { role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, output);
}

/** At exit, how long log lines still queued for a slow reader may hold the process. */
const LOG_FLUSH_MS = 500;

/** Before exiting: lets queued lines out, but waits no longer than `timeoutMs` for a reader. */
export function flushLogs(timeoutMs = LOG_FLUSH_MS): Promise<void> {
  return output?.flush(timeoutMs) ?? Promise.resolve();
}
