// A TCP relay on 127.0.0.1 that forwards every connection to one target and can stand in for
// a bad network: delay, throttle, reset, black-hole. `tc netem` is not available on these
// machines, so the benchmarks (round-trip time) and the fault tests use this instead.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface TcpRelayOptions {
  /** Where each accepted connection is forwarded. */
  target: { host: string; port: number };
  /** Added to each direction separately, so a round trip gains twice this. Default 0. */
  oneWayDelayMs?: number;
  /** Bytes per second per direction; 0 (default) for unlimited. */
  rateBytesPerSecond?: number;
  /**
   * Bytes one direction may hold (received, not yet written on) before the relay stops
   * reading that side; reading resumes below half of it. Bounds memory like a real link's
   * bandwidth-delay product. Default 32 MiB: above 1 GB/s at 25 ms one way.
   */
  maxHeldBytes?: number;
}

export interface TcpRelay {
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections currently open (client side). */
  readonly open: number;
  setOneWayDelay(ms: number): void;
  setRate(bytesPerSecond: number): void;
  /** Sends RST on both sides of every open connection, as a middlebox dropping state would. */
  resetAll(): void;
  /**
   * On: nothing is forwarded and the relay stops reading, so senders fill their socket buffers
   * and block, as on a partitioned network; connections stay open. Off: what was held is
   * delivered in order and reading resumes, as after TCP retransmits once the network heals.
   */
  blackhole(on: boolean): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

const DEFAULT_MAX_HELD = 32 << 20;
/**
 * Chunks due within this are sent now: timers fire at best every millisecond, so waiting for
 * the exact instant would cap a throttle at one slice per millisecond.
 */
const TIMER_SLACK_MS = 1;
/** Throttled writes are cut to this size so a slow rate is smooth rather than 64 KiB bursts. */
const THROTTLE_SLICE = 16 << 10;

interface Settings {
  delayMs: number;
  rate: number;
  maxHeld: number;
  blackholed: boolean;
}

/** A queued chunk, or `null` for the reading side's end (half-close), due at `due`. */
interface Held {
  data: Buffer | null;
  due: number;
}

/**
 * One direction of one connection: reads `from`, holds each chunk until it is due (arrival +
 * delay, and no earlier than the rate allows), writes it to `to` in arrival order, and stops
 * reading `from` while too much is held or `to` is not draining.
 */
class Direction {
  private readonly queue: Held[] = [];
  private head = 0;
  private held = 0;
  private timer: NodeJS.Timeout | null = null;
  private waitingForDrain = false;
  private stopped = false;
  /** Earliest time the throttle lets the next byte out. */
  private nextFree = 0;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly settings: Settings,
  ) {
    from.on('data', (chunk: Buffer) => {
      this.enqueue(chunk, chunk.length);
      if (this.held > settings.maxHeld || settings.blackholed) from.pause();
    });
    from.on('end', () => this.enqueue(null, 0));
    to.on('drain', () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }

  /** Re-evaluates after a settings change (delay, rate, black hole). */
  kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pump();
    this.maybeResume();
  }

  /** Drops what is held; for when `to` is gone or the relay closes. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
    this.head = 0;
    this.held = 0;
  }

  private enqueue(data: Buffer | null, length: number): void {
    if (this.stopped) return;
    this.queue.push({ data, due: performance.now() + this.settings.delayMs });
    this.held += length;
    if (this.timer === null) this.pump();
  }

  /** Writes every chunk that is due, in order; arms one timer for the next one. */
  private pump(): void {
    const { settings } = this;
    while (this.head < this.queue.length && !this.waitingForDrain && !settings.blackholed && !this.stopped) {
      const item = this.queue[this.head];
      const now = performance.now();
      const due = Math.max(item.due, settings.rate > 0 ? this.nextFree : 0);
      if (due > now + TIMER_SLACK_MS) {
        this.arm(due - now);
        return;
      }
      if (item.data === null) {
        this.shift();
        this.to.end();
        continue;
      }
      const data = settings.rate > 0 && item.data.length > THROTTLE_SLICE ? item.data.subarray(0, THROTTLE_SLICE) : item.data;
      if (data === item.data) this.shift();
      else item.data = item.data.subarray(data.length);
      this.held -= data.length;
      if (settings.rate > 0) this.nextFree = Math.max(this.nextFree, now) + (data.length / settings.rate) * 1000;
      if (!this.to.write(data)) this.waitingForDrain = true;
      this.maybeResume();
    }
  }

  private shift(): void {
    this.head++;
    // Compact now and then rather than Array.shift() per chunk, which is O(n).
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  private arm(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, Math.max(1, Math.ceil(ms)));
  }

  private maybeResume(): void {
    if (this.from.isPaused() && !this.settings.blackholed && this.held <= this.settings.maxHeld / 2) this.from.resume();
  }
}

interface Connection {
  client: Socket;
  upstream: Socket;
  /** Null until the upstream connection is established. */
  toUpstream: Direction | null;
  toClient: Direction | null;
}

export async function startTcpRelay(options: TcpRelayOptions): Promise<TcpRelay> {
  const settings: Settings = {
    delayMs: options.oneWayDelayMs ?? 0,
    rate: options.rateBytesPerSecond ?? 0,
    maxHeld: options.maxHeldBytes ?? DEFAULT_MAX_HELD,
    blackholed: false,
  };
  const connections = new Set<Connection>();
  let accepted = 0;

  // allowHalfOpen: a FIN from one side must reach the other as a FIN while replies still flow back.
  const server: Server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    accepted++;
    const upstream = createConnection({ host: options.target.host, port: options.target.port, allowHalfOpen: true });
    const connection: Connection = { client, upstream, toUpstream: null, toClient: null };
    connections.add(connection);
    const resetBoth = (): void => {
      for (const s of [client, upstream]) if (!s.destroyed) s.resetAndDestroy();
    };
    for (const socket of [client, upstream]) {
      socket.setNoDelay(true);
      // A reset (or refused connect) on one side is passed on as a reset, as a real path would show it.
      socket.on('error', resetBoth);
      socket.on('close', () => {
        // Nothing more can be written to this socket; what is held for the other side still goes out.
        (socket === client ? connection.toClient : connection.toUpstream)?.stop();
        if (client.destroyed && upstream.destroyed) connections.delete(connection);
      });
    }
    upstream.once('connect', () => {
      // Both sides read only once both exist; data arriving before waits in the kernel.
      upstream.pause();
      connection.toUpstream = new Direction(client, upstream, settings);
      connection.toClient = new Direction(upstream, client, settings);
      if (!settings.blackholed) {
        client.resume();
        upstream.resume();
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay has no TCP address');

  const kickAll = (): void => {
    for (const c of connections) {
      c.toUpstream?.kick();
      c.toClient?.kick();
    }
  };
  return {
    port: address.port,
    get accepted() {
      return accepted;
    },
    get open() {
      return connections.size;
    },
    setOneWayDelay(ms) {
      settings.delayMs = ms;
      kickAll();
    },
    setRate(bytesPerSecond) {
      settings.rate = bytesPerSecond;
      kickAll();
    },
    resetAll() {
      for (const c of connections) for (const s of [c.client, c.upstream]) if (!s.destroyed) s.resetAndDestroy();
    },
    blackhole(on) {
      settings.blackholed = on;
      if (on) for (const c of connections) for (const s of [c.client, c.upstream]) s.pause();
      kickAll();
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const c of connections) {
        c.toUpstream?.stop();
        c.toClient?.stop();
        for (const s of [c.client, c.upstream]) s.destroy();
      }
      await closed;
    },
  };
}
