// The guest's serial console, on QEMU's UNIX chardev socket: lines out (progress, verify
// results), lines in (commands). QEMU drops console output while no client is connected, so
// connect before the guest runs (QEMU started with -S).
import type { Socket } from 'node:net';
import { connectWithRetry } from '../qmp.js';

export interface ConsoleMatch {
  line: string;
  match: RegExpExecArray;
  /** Position in `lines`; wait from index + 1 for the next one. */
  index: number;
}

export class SerialConsole {
  /** Every complete line so far, without its line ending. */
  readonly lines: string[] = [];
  private partial = '';
  private closed: Error | null = null;
  private readonly listeners = new Set<() => void>();

  private constructor(
    private readonly socket: Socket,
    private readonly name: string,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      const parts = (this.partial + text).split('\n');
      this.partial = parts.pop()!;
      for (const raw of parts) this.lines.push(raw.replace(/\r$/, ''));
      this.notify();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed ??= new Error(`console of ${name} closed`);
      this.notify();
    });
  }

  /** `died`: the QEMU process's exit, which ends waits at once with its reason. */
  static async connect(path: string, name: string, died?: AbortSignal, timeoutMs = 10_000): Promise<SerialConsole> {
    const console = new SerialConsole(await connectWithRetry(path, Date.now() + timeoutMs, died), name);
    died?.addEventListener('abort', () => {
      console.closed = died.reason instanceof Error ? died.reason : new Error(String(died.reason));
      console.notify();
    });
    return console;
  }

  /** Types a line on the guest's console. */
  send(line: string): void {
    this.socket.write(`${line}\n`);
  }

  /** The first line at or after `from` that matches; rejects after `timeoutMs` with the tail seen. */
  waitLine(pattern: RegExp, from = 0, timeoutMs = 60_000): Promise<ConsoleMatch> {
    let scanned = from;
    const scan = (): ConsoleMatch | null => {
      for (; scanned < this.lines.length; scanned++) {
        const match = pattern.exec(this.lines[scanned]);
        if (match) return { line: this.lines[scanned], match, index: scanned };
      }
      return null;
    };
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = scan();
        if (found) finish(() => resolve(found));
        else if (this.closed) finish(() => reject(this.failure(pattern, this.closed!.message)));
      };
      const timer = setTimeout(() => finish(() => reject(this.failure(pattern, `timed out after ${timeoutMs} ms`))), timeoutMs);
      const finish = (settle: () => void): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        settle();
      };
      this.listeners.add(check);
      check();
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  private failure(pattern: RegExp, why: string): Error {
    return new Error(`console of ${this.name}: ${why} waiting for ${pattern}; last lines:\n${this.lines.slice(-20).join('\n')}`);
  }
}
