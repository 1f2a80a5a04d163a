import { createConnection, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface QmpEvent {
  event: string;
  /** QEMU omits `data` for some events; normalised to `{}`. */
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export type EventPredicate = (event: QmpEvent) => boolean;

/** A command QEMU answered with `{"error": ...}`. */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${errorClass}: ${desc}`);
    this.name = 'QmpError';
  }
}

/** Union of the shapes QEMU sends; one line of JSON per message. */
interface QmpMessage {
  QMP?: unknown;
  event?: string;
  data?: Record<string, unknown>;
  timestamp?: QmpEvent['timestamp'];
  id?: number;
  return?: unknown;
  error?: { class: string; desc: string };
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

interface Waiter {
  matches: EventPredicate;
  resolve: (event: QmpEvent) => void;
  fail: (why: string) => void;
}

const RETRYABLE_CONNECT_ERRORS = new Set(['ENOENT', 'ECONNREFUSED']);

export class QmpClient {
  /** Every event received since connecting, oldest first. */
  readonly events: QmpEvent[] = [];
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly waiters = new Set<Waiter>();
  private closed: Error | undefined;
  private readonly greeting: Promise<void>;

  private constructor(private readonly socket: Socket) {
    let buffered = '';
    let greeted: () => void = () => {};
    let notGreeted: (err: Error) => void = () => {};
    this.greeting = new Promise((resolve, reject) => {
      greeted = resolve;
      notGreeted = reject;
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        const msg: QmpMessage = JSON.parse(line);
        if (msg.QMP !== undefined) greeted();
        else this.dispatch(msg);
      }
    });
    let lastError: Error | undefined;
    socket.on('error', (err) => (lastError = err));
    socket.on('close', () => {
      this.closed ??= new Error(`QMP connection closed${lastError ? `: ${lastError.message}` : ''}`);
      notGreeted(this.closed);
      for (const p of this.pending.values()) p.reject(new Error(`${this.closed.message} (awaiting reply to ${p.command})`));
      this.pending.clear();
      for (const w of this.waiters) w.fail(this.closed.message);
      this.waiters.clear();
    });
  }

  /**
   * Connects, retrying until the socket appears (the daemon creates it a moment
   * after starting), then negotiates capabilities. `signal` aborts the retries,
   * e.g. when the daemon has already died.
   */
  static async connect(socketPath: string, timeoutMs = 10_000, signal?: AbortSignal): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    const client = new QmpClient(await connectWithRetry(socketPath, deadline, signal));
    // Only one monitor client is served at a time, so a busy monitor accepts but never greets.
    const noGreeting = setTimeout(
      () => client.socket.destroy(new Error(`no QMP greeting on ${socketPath} within ${timeoutMs} ms`)),
      Math.max(0, deadline - Date.now()),
    );
    try {
      await client.greeting;
    } finally {
      clearTimeout(noGreeting);
    }
    await client.execute('qmp_capabilities');
    return client;
  }

  /** Sends a command; resolves with its `return` value, rejects with QmpError on a QMP error. */
  execute<T = unknown>(command: string, args?: object): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`${this.closed.message} (cannot send ${command})`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      // The reply's shape is the caller's claim via T; QMP itself is untyped JSON.
      this.pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject });
      this.socket.write(`${JSON.stringify({ execute: command, arguments: args, id })}\n`);
    });
  }

  /**
   * Resolves with the first event, already received or future, whose name is
   * one of `names` and that satisfies `predicate`. Looking at past events means
   * a caller never misses one that arrived before it started waiting.
   */
  waitEvent(names: string | readonly string[], predicate: EventPredicate = () => true, timeoutMs = 10_000): Promise<QmpEvent> {
    const wanted = typeof names === 'string' ? [names] : names;
    const matches = (e: QmpEvent): boolean => wanted.includes(e.event) && predicate(e);
    const seen = this.events.find(matches);
    if (seen) return Promise.resolve(seen);
    const what = `QMP event ${wanted.join('|')}`;
    if (this.closed) return Promise.reject(new Error(`${this.closed.message} before ${what}; ${this.describeEvents()}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => waiter.fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      const waiter: Waiter = {
        matches,
        resolve: (event) => {
          clearTimeout(timer);
          resolve(event);
        },
        fail: (why) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(new Error(`${why} waiting for ${what}; ${this.describeEvents()}`));
        },
      };
      this.waiters.add(waiter);
    });
  }

  /** Closes the connection; pending commands and waits reject. */
  async close(): Promise<void> {
    if (this.socket.closed) return;
    this.closed ??= new Error('QMP connection closed by the client');
    const closed = new Promise((resolve) => this.socket.once('close', resolve));
    this.socket.destroy();
    await closed;
  }

  private dispatch(msg: QmpMessage): void {
    if (msg.event !== undefined) {
      const event: QmpEvent = {
        event: msg.event,
        data: msg.data ?? {},
        timestamp: msg.timestamp ?? { seconds: 0, microseconds: 0 },
      };
      this.events.push(event);
      for (const w of this.waiters) {
        if (!w.matches(event)) continue;
        this.waiters.delete(w);
        w.resolve(event);
      }
      return;
    }
    if (msg.id === undefined) return;
    const pending = this.pending.get(msg.id);
    if (!pending) return;
    this.pending.delete(msg.id);
    if (msg.error) pending.reject(new QmpError(pending.command, msg.error.class, msg.error.desc));
    else pending.resolve(msg.return);
  }

  private describeEvents(): string {
    if (this.events.length === 0) return 'no events seen';
    const recent = this.events.slice(-50).map((e) => `${e.event} ${JSON.stringify(e.data)}`);
    return `events seen (last ${recent.length} of ${this.events.length}): ${recent.join(', ')}`;
  }
}

/** Connects to a UNIX socket, retrying while it does not exist or refuses, until `deadline` (epoch ms). */
export async function connectWithRetry(path: string, deadline: number, signal?: AbortSignal): Promise<Socket> {
  for (;;) {
    signal?.throwIfAborted();
    try {
      return await connectOnce(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (!RETRYABLE_CONNECT_ERRORS.has(code) || Date.now() >= deadline) {
        throw new Error(`cannot connect to ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    await sleep(50);
  }
}

function connectOnce(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}
