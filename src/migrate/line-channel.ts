// JSON messages one a line over a stream, read in order: the migration channel's framing.
import type { Duplex } from 'node:stream';
import { StreamError } from '../tunnel/index.js';

/** A line longer than this is a protocol error, not something to buffer. */
const MAX_LINE = 64 * 1024;

export class LineChannel {
  private buffered = '';
  private readonly lines: string[] = [];
  private waiter: ((line: string | null) => void) | null = null;
  private ended = false;
  private failure: Error | null = null;

  constructor(private readonly stream: Duplex) {
    stream.setEncoding('utf8');
    stream.on('data', (text: string) => this.onText(text));
    stream.on('end', () => this.finish(null));
    stream.on('close', () => this.finish(null));
    stream.on('error', (error: Error) => this.finish(error));
    stream.resume(); // the open handshake leaves it paused
  }

  send(message: object): void {
    this.stream.write(`${JSON.stringify(message)}\n`);
  }

  /** The next message; null once the peer has closed the stream. Rejects on a stream error or a bad line. */
  async next(): Promise<unknown> {
    const line = this.lines.shift() ?? (await this.wait());
    if (line === null) return null;
    try {
      return JSON.parse(line) as unknown;
    } catch {
      throw new StreamError('migration channel: a line is not valid JSON', 'EMIGRATEMALFORMED');
    }
  }

  /** Why the stream ended, when it failed. */
  get error(): Error | null {
    return this.failure;
  }

  close(): void {
    this.stream.end();
  }

  private wait(): Promise<string | null> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  private onText(text: string): void {
    const parts = (this.buffered + text).split('\n');
    this.buffered = parts.pop()!;
    if (this.buffered.length > MAX_LINE) {
      this.stream.destroy(new StreamError(`migration channel: a line longer than ${MAX_LINE} bytes`, 'EMIGRATEMALFORMED'));
      return;
    }
    for (const line of parts) this.deliver(line);
  }

  private deliver(line: string): void {
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter) waiter(line);
    else this.lines.push(line);
  }

  private finish(error: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = error;
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.(null);
  }
}
