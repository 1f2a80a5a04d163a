// An in-memory Transport pair for unit tests: bytes delivered asynchronously, optionally re-cut
// at arbitrary points, with a high-water mark so backpressure is exercised as on a socket.
import type { Transport, TransportHandlers } from '../../../src/tunnel/index.js';

export type Rechunk = (bytes: Buffer) => Buffer[];

export class MemoryTransport implements Transport {
  peer!: MemoryTransport;
  /** Every byte this side sent, when recording is on. */
  readonly sent: Buffer[] = [];
  record = false;
  /** While true, nothing is delivered (a blackholed link). */
  blackhole = false;
  private handlers: TransportHandlers | null = null;
  private queue: Buffer[] = [];
  private queued = 0;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly highWaterMark: number,
    private readonly rechunk?: Rechunk,
    /** One-way delay of the link: bytes queued are delivered this long after the first of them. */
    private readonly delayMs = 0,
  ) {}

  get congested(): boolean {
    return this.queued > this.highWaterMark;
  }

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  send(chunk: Buffer): void {
    if (this.closed) return;
    if (this.record) this.sent.push(Buffer.from(chunk));
    this.queue.push(chunk);
    this.queued += chunk.length;
    this.schedule();
  }

  close(reason: Error): void {
    if (this.closed) return;
    this.closed = true;
    setImmediate(() => {
      this.handlers?.close(reason);
      this.peer.close(reason);
    });
  }

  /** Delivers raw bytes to this side as if the peer had sent them. */
  inject(bytes: Buffer): void {
    this.handlers?.data(bytes);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    if (this.delayMs > 0) setTimeout(() => this.deliver(), this.delayMs);
    else setImmediate(() => this.deliver());
  }

  private deliver(): void {
    this.scheduled = false;
    if (this.closed || this.blackhole) return;
    const wasCongested = this.congested;
    const chunks = this.queue;
    this.queue = [];
    this.queued = 0;
    const pieces = this.rechunk ? this.rechunk(Buffer.concat(chunks)) : chunks;
    for (const piece of pieces) {
      if (this.peer.closed) break;
      this.peer.handlers?.data(piece);
    }
    if (wasCongested) this.handlers?.drain();
  }

  /** Resumes delivery after a blackhole. */
  flushNow(): void {
    this.schedule();
  }
}

export interface LinkOptions {
  highWaterMark?: number;
  rechunk?: Rechunk;
  delayMs?: number;
}

export function memoryPair(options: LinkOptions = {}): [MemoryTransport, MemoryTransport] {
  const hwm = options.highWaterMark ?? 1024 * 1024;
  const a = new MemoryTransport(hwm, options.rechunk, options.delayMs);
  const b = new MemoryTransport(hwm, options.rechunk, options.delayMs);
  a.peer = b;
  b.peer = a;
  return [a, b];
}
