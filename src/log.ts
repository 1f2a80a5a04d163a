// One pino logger per process: JSON lines on stdout, one event a line.
import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `toStderr`: when stdout shows the progress view, the JSON lines that remain go to stderr. */
export function createLogger(level: LogLevel, role: string, toStderr = false): Logger {
  const options = { level, base: { role, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  return toStderr ? pino(options, pino.destination(2)) : pino(options);
}
