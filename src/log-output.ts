// Where log lines go: stdout or stderr, written so that the process never waits on them. A
// sidecar's stdout is a pipe to a supervisor or a terminal that may stop reading, close or
// vanish; a blocked or failed write must cost a log line, never a drain or a shutdown.
import { fstatSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';

/** Bytes a slow reader may leave queued before lines are dropped instead. */
const MAX_QUEUED_BYTES = 1024 * 1024;

/** Lines not written since start (queue full, reader gone, write failed): for /metrics. */
export const droppedLogLines = { count: 0 };

export interface LogOutput {
  write(line: string): void;
  /** Settles when queued lines are written, or after `timeoutMs`, whichever is first. */
  flush(timeoutMs: number): Promise<void>;
}

export function logOutput(fd: 1 | 2): LogOutput {
  try {
    const stat = fstatSync(fd);
    // A pipe or socket (a supervisor, `| head`, journald) may stop reading: write it without blocking.
    if (stat.isFIFO() || stat.isSocket()) return pipeOutput(fd);
  } catch {
    return { write: () => void droppedLogLines.count++, flush: async () => {} };
  }
  return syncOutput(fd); // a file or a terminal: a write either completes or fails at once
}

/** Lines for a terminal view, and to `copy` (stderr, when it is not that terminal). */
export function viewOutput(view: (line: string) => void, copy: LogOutput | null): LogOutput {
  return {
    write(line) {
      copy?.write(line);
      view(line);
    },
    flush: (timeoutMs) => copy?.flush(timeoutMs) ?? Promise.resolve(),
  };
}

/** The fd in a libuv pipe handle, which makes it non-blocking: writes queue, and the queue is bounded. */
function pipeOutput(fd: number): LogOutput {
  const socket = new Socket({ fd, readable: false, writable: true });
  let broken = false;
  socket.on('error', () => {
    broken = true; // EPIPE: the reader is gone for good
    droppedLogLines.count += 1;
    socket.destroy();
  });
  socket.unref(); // lines waiting for a reader never keep the process alive
  return {
    write(line) {
      if (broken || socket.writableLength > MAX_QUEUED_BYTES) {
        droppedLogLines.count++;
        return;
      }
      socket.write(line);
    },
    flush(timeoutMs) {
      if (broken || socket.writableLength === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        timer.unref();
        socket.once('drain', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}

function syncOutput(fd: number): LogOutput {
  return {
    write(line) {
      try {
        writeSync(fd, line);
      } catch {
        droppedLogLines.count++; // EIO from a terminal that went away, ENOSPC, EAGAIN
      }
    },
    flush: async () => {},
  };
}
