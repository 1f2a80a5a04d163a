// Joins one of our yamux Sessions to an independent yamux implementation,
// @chainsafe/libp2p-yamux (v8), over an in-memory byte pipe, for wire-compatibility tests.
//
//   our Session ── Transport ──▶ lane "toLibp2p" ──▶ MessageStream.onData ──▶ YamuxMuxer
//   our Session ◀── handlers ◀── lane "toOurs"  ◀── MessageStream.sendData ◀── YamuxMuxer
//
// libp2p-yamux 8 no longer takes a duplex source/sink: a muxer is created over a
// MessageStream (@libp2p/interface 3). PipeConnection is one, built on libp2p's own
// AbstractMessageStream (@libp2p/utils, the same copy the muxer runs on), so the libp2p side
// sees the same write buffering, 'drain' and close behaviour as over a real connection.
//
// Each lane delivers asynchronously (setImmediate), copies the bytes only at delivery time
// (so a sender that modified a buffer after handing it over would be caught, and no receiver
// ever shares memory with a sender), can re-cut the byte stream at seeded pseudo-random points
// (headers split across deliveries included), and has a high-water mark, so both sides'
// backpressure paths run. Every frame header crossing the pipe is parsed by an independent
// decoder (not ours, not libp2p's) and audited: yamux version, known type, stream 0 only for
// Ping/GoAway, and per-stream flow control (no sender ever exceeds the credit granted by the
// 256 KiB initial window plus the receiver's WindowUpdates).
import './with-resolvers.js';
import { createHash, randomBytes } from 'node:crypto';
import { yamux, type YamuxMuxerInit } from '@chainsafe/libp2p-yamux';
import { logger } from '@libp2p/logger';
import { AbstractMessageStream, type SendResult } from '@libp2p/utils';
import { Session, type SessionOptions } from '../../../src/tunnel/session.js';
import type { Transport, TransportHandlers } from '../../../src/tunnel/transport.js';
import { mulberry32 as prng } from '../../harness/prng.js';

export type YamuxMuxer = ReturnType<ReturnType<ReturnType<typeof yamux>>['createStreamMuxer']>;
export type YamuxStream = YamuxMuxer['streams'][number];
/** What @libp2p/utils hands to sendData (its own nested uint8arraylist version, so not named directly). */
type ByteList = Parameters<AbstractMessageStream['sendData']>[0];
type Message = ByteList | Uint8Array;

// ---- wire audit ------------------------------------------------------------------

export const SPEC_INITIAL_WINDOW = 256 * 1024;
export const T_DATA = 0;
export const T_WINDOW_UPDATE = 1;
export const T_PING = 2;
export const T_GO_AWAY = 3;
export const F_SYN = 1;
export const F_ACK = 2;
export const F_FIN = 4;
export const F_RST = 8;

export type Direction = 'toLibp2p' | 'toOurs';

export interface FrameRecord {
  direction: Direction;
  type: number;
  flags: number;
  streamId: number;
  length: number;
}

/** Parses the frame headers of both directions and checks them against the spec. */
export class WireAudit {
  /** Every frame header that crossed the pipe, in delivery order. */
  readonly frames: FrameRecord[] = [];
  /** Spec violations seen on the wire, as text; a healthy link has none. */
  readonly violations: string[] = [];
  /** Credit the sender in a direction has left on a stream, per the frames seen so far. */
  private readonly credit = new Map<string, number>();
  private readonly parsers: Record<Direction, HeaderParser>;

  constructor() {
    this.parsers = {
      toLibp2p: new HeaderParser((type, flags, streamId, length) => this.onFrame('toLibp2p', type, flags, streamId, length)),
      toOurs: new HeaderParser((type, flags, streamId, length) => this.onFrame('toOurs', type, flags, streamId, length)),
    };
  }

  observe(direction: Direction, bytes: Buffer): void {
    const error = this.parsers[direction].push(bytes);
    if (error) this.violations.push(`${direction}: ${error}`);
  }

  /** Frames sent by one side: ours ('toLibp2p') or libp2p's ('toOurs'). */
  sentBy(side: 'ours' | 'libp2p'): FrameRecord[] {
    const direction: Direction = side === 'ours' ? 'toLibp2p' : 'toOurs';
    return this.frames.filter((f) => f.direction === direction);
  }

  private onFrame(direction: Direction, type: number, flags: number, streamId: number, length: number): void {
    this.frames.push({ direction, type, flags, streamId, length });
    const where = `${direction} type=${type} flags=0x${flags.toString(16)} stream=${streamId} length=${length}`;
    if (type === T_PING || type === T_GO_AWAY) {
      if (streamId !== 0) this.violations.push(`${where}: Ping/GoAway must use stream 0`);
      return;
    }
    if (streamId === 0) {
      this.violations.push(`${where}: Data/WindowUpdate on stream 0`);
      return;
    }
    if (type === T_WINDOW_UPDATE) {
      // The receiver in `direction` grants its peer (the sender in the other direction) more credit.
      const key = `${direction === 'toLibp2p' ? 'toOurs' : 'toLibp2p'}:${streamId}`;
      this.credit.set(key, (this.credit.get(key) ?? SPEC_INITIAL_WINDOW) + length);
      return;
    }
    const key = `${direction}:${streamId}`;
    const left = (this.credit.get(key) ?? SPEC_INITIAL_WINDOW) - length;
    this.credit.set(key, left);
    if (left < 0) this.violations.push(`${where}: exceeds the receive window by ${-left} bytes`);
  }
}

/** A third, deliberately naive yamux header decoder: 12-byte big-endian headers, Data payloads skipped. */
class HeaderParser {
  private readonly header = Buffer.alloc(12);
  private fill = 0;
  private skip = 0;
  private broken = false;

  constructor(private readonly onFrame: (type: number, flags: number, streamId: number, length: number) => void) {}

  /** Returns an error text on a header no yamux peer may send; stops parsing then. */
  push(bytes: Buffer): string | null {
    let at = 0;
    while (at < bytes.length && !this.broken) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, bytes.length - at);
        this.skip -= n;
        at += n;
        continue;
      }
      const n = Math.min(12 - this.fill, bytes.length - at);
      bytes.copy(this.header, this.fill, at, at + n);
      this.fill += n;
      at += n;
      if (this.fill < 12) break;
      this.fill = 0;
      const version = this.header[0]!;
      const type = this.header[1]!;
      if (version !== 0 || type > T_GO_AWAY) {
        this.broken = true;
        return `bad header ${this.header.toString('hex')} (version ${version}, type ${type})`;
      }
      const length = this.header.readUInt32BE(8);
      this.onFrame(type, this.header.readUInt16BE(2), this.header.readUInt32BE(4), length);
      if (type === T_DATA) this.skip = length;
    }
    return null;
  }
}

// ---- the pipe --------------------------------------------------------------------

/**
 * One direction of the in-memory pipe: queues by reference, delivers asynchronously as a
 * fresh copy, optionally re-cut at seeded points, and reports drain below its high-water mark.
 */
class Lane {
  closed = false;
  private queue: Uint8Array[] = [];
  private queued = 0;
  private scheduled = false;

  constructor(
    private readonly direction: Direction,
    private readonly highWaterMark: number,
    private readonly random: (() => number) | null,
    private readonly audit: WireAudit,
    private readonly deliver: (piece: Buffer) => void,
    private readonly onDrained: () => void,
  ) {}

  get congested(): boolean {
    return this.queued > this.highWaterMark;
  }

  /** Queues a reference; the bytes are copied when delivered. */
  push(chunk: Uint8Array): void {
    if (this.closed || chunk.byteLength === 0) return;
    this.queue.push(chunk);
    this.queued += chunk.byteLength;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** Delivers everything queued, now. */
  flush(): void {
    if (this.closed || this.queue.length === 0) return;
    const wasCongested = this.congested;
    const bytes = Buffer.concat(this.queue); // always a fresh copy
    this.queue = [];
    this.queued = 0;
    this.audit.observe(this.direction, bytes);
    for (const piece of this.cut(bytes)) {
      if (this.closed) return;
      this.deliver(piece);
    }
    if (wasCongested) this.onDrained();
  }

  private cut(bytes: Buffer): Buffer[] {
    if (!this.random) return [bytes];
    const pieces: Buffer[] = [];
    let at = 0;
    while (at < bytes.length) {
      // Mostly large pieces, one in eight tiny enough to split a 12-byte header.
      const size = this.random() < 0.125 ? 1 + Math.floor(this.random() * 13) : 1 + Math.floor(this.random() * 96 * 1024);
      pieces.push(bytes.subarray(at, at + size));
      at += size;
    }
    return pieces;
  }
}

/** The libp2p end of the pipe: a MessageStream the muxer reads from and writes to. */
class PipeConnection extends AbstractMessageStream {
  constructor(
    direction: 'inbound' | 'outbound',
    private readonly hooks: { send(chunk: Uint8Array): boolean; reset(error: Error): void; close(): void },
  ) {
    super({ log: logger('nbd-tunnel:yamux-interop'), direction });
  }

  sendData(data: ByteList): SendResult {
    let canSendMore = true;
    for (const chunk of data) canSendMore = this.hooks.send(chunk);
    return { sentBytes: data.byteLength, canSendMore };
  }

  /** The muxer aborts the connection, e.g. on a protocol error in what we sent. */
  sendReset(error: Error): void {
    this.hooks.reset(error);
  }

  sendPause(): void {
    // The muxer never pauses its connection; nothing to model.
  }

  sendResume(): void {}

  async close(): Promise<void> {
    this.hooks.close();
  }
}

/** Our end of the pipe. */
class PipeTransport implements Transport {
  handlers: TransportHandlers | null = null;

  constructor(
    private readonly lane: Lane,
    private readonly onClose: (reason: Error) => void,
  ) {}

  get congested(): boolean {
    return this.lane.congested;
  }

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }

  send(chunk: Buffer): void {
    this.lane.push(chunk);
  }

  close(reason: Error): void {
    this.onClose(reason);
  }
}

// ---- the link ---------------------------------------------------------------------

export interface LinkOptions {
  /** Our session's options. libp2p takes the other role: client if ours is the server. */
  session: SessionOptions;
  /** libp2p-yamux options; keepalive is off unless enabled here. */
  libp2p?: YamuxMuxerInit;
  /** Bytes queued in one direction before the sender is told to wait; default 256 KiB. */
  highWaterMark?: number;
  /** Seed for re-cutting the byte stream; null delivers each batch whole. Default 1. */
  seed?: number | null;
}

export interface Link {
  readonly session: Session;
  readonly muxer: YamuxMuxer;
  readonly audit: WireAudit;
  /** Errors libp2p aborted the connection with (for example a protocol error it found in our frames). */
  readonly libp2pErrors: Error[];
  /** Why our session closed, once it has. */
  readonly sessionClosed: Promise<Error>;
  /** Resolves once the pipe is closed at both ends. */
  readonly pipeClosed: Promise<void>;
  /** Puts raw bytes on the wire, behind whatever the sending side has queued (to fake a broken peer). */
  sendRaw(direction: Direction, bytes: Buffer): void;
  /** Closes our session (GoAway, then the transport) and waits until libp2p has seen the end. */
  close(): Promise<void>;
}

export function connectLibp2p(options: LinkOptions): Link {
  const highWaterMark = options.highWaterMark ?? 256 * 1024;
  const seed = options.seed === undefined ? 1 : options.seed;
  const audit = new WireAudit();
  const libp2pErrors: Error[] = [];
  let closed = false;
  let pipeClosedResolve!: () => void;
  const pipeClosed = new Promise<void>((resolve) => (pipeClosedResolve = resolve));

  // Late-bound: the lanes and both ends refer to each other.
  let connection: PipeConnection | null = null;
  let transport: PipeTransport | null = null;

  const toLibp2p = new Lane('toLibp2p', highWaterMark, seed === null ? null : prng(seed), audit,
    (piece) => connection?.onData(piece),
    () => transport?.handlers?.drain());
  const toOurs = new Lane('toOurs', highWaterMark, seed === null ? null : prng(seed ^ 0x5bd1e995), audit,
    (piece) => transport?.handlers?.data(piece),
    () => {
      if (connection?.writableNeedsDrain) connection.safeDispatchEvent('drain');
    });

  /** Ends the pipe like a socket does: what one side already sent is delivered, then both see the end. */
  const shutDown = (from: 'ours' | 'libp2p', reason: Error): void => {
    if (closed) return;
    closed = true;
    setImmediate(() => {
      (from === 'ours' ? toLibp2p : toOurs).flush();
      toLibp2p.closed = true;
      toOurs.closed = true;
      transport?.handlers?.close(reason);
      connection?.onTransportClosed();
      pipeClosedResolve();
    });
  };

  connection = new PipeConnection(options.session.client ? 'inbound' : 'outbound', {
    send: (chunk) => {
      toOurs.push(chunk);
      return !toOurs.congested;
    },
    reset: (error) => {
      libp2pErrors.push(error);
      shutDown('libp2p', new Error(`libp2p aborted the connection: ${error.message}`));
    },
    close: () => shutDown('libp2p', new Error('libp2p closed the connection')),
  });
  transport = new PipeTransport(toLibp2p, (reason) => shutDown('ours', reason));

  const muxer = yamux({ enableKeepAlive: false, ...options.libp2p })().createStreamMuxer(connection);
  const session = new Session(transport, options.session);
  const sessionClosed = new Promise<Error>((resolve) => session.once('close', resolve));

  return {
    session,
    muxer,
    audit,
    libp2pErrors,
    sessionClosed,
    pipeClosed,
    sendRaw: (direction, bytes) => (direction === 'toLibp2p' ? toLibp2p : toOurs).push(bytes),
    async close() {
      session.close(new Error('test teardown'));
      await pipeClosed;
    },
  };
}

// ---- driving libp2p streams ---------------------------------------------------------

export interface Digest {
  bytes: number;
  sha256: string;
}

function chunksOf(data: Message): Iterable<Uint8Array> {
  return data instanceof Uint8Array ? [data] : data;
}

/** Resolves on the stream's next 'drain'; rejects if it closes first. */
function nextDrain(stream: YamuxStream): Promise<void> {
  // Not stream.onDrain(): in @libp2p/utils 7.4 its promise is created once and never
  // replaced, so after the first drain it resolves at once for every later wait.
  return new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      stream.removeEventListener('close', onClose);
      resolve();
    };
    const onClose = (evt: Event): void => {
      stream.removeEventListener('drain', onDrain);
      reject((evt as Event & { error?: Error }).error ?? new Error(`libp2p stream ${stream.id} closed while waiting for drain`));
    };
    stream.addEventListener('drain', onDrain, { once: true });
    stream.addEventListener('close', onClose, { once: true });
  });
}

function aborted(stream: YamuxStream): boolean {
  return stream.status === 'aborted' || stream.status === 'reset';
}

/** Rejects when the stream closes with an error (reset by us, or aborted). */
function closedWithError(stream: YamuxStream): Promise<never> {
  return new Promise<never>((_resolve, reject) => {
    stream.addEventListener('close', (evt) => {
      if (evt.error) reject(evt.error);
    }, { once: true });
  });
}

/**
 * Writes `total` random bytes in pieces of varied size, honouring backpressure, then closes
 * the writable end (FIN) unless told not to. Resolves with what was written.
 */
export async function libp2pWrite(stream: YamuxStream, total: number, options: { close?: boolean } = {}): Promise<Digest> {
  const hash = createHash('sha256');
  let left = total;
  while (left > 0) {
    const n = Math.min(left, 1 + Math.floor(Math.random() * 200 * 1024));
    const chunk = randomBytes(n);
    hash.update(chunk);
    left -= n;
    if (!stream.send(chunk)) await nextDrain(stream);
  }
  if (options.close !== false) await stream.close();
  return { bytes: total, sha256: hash.digest('hex') };
}

export interface ReadResult extends Digest {
  /** The last `tailLength` bytes read; `sha256` covers everything before them. */
  tail: Buffer;
}

/**
 * Reads until the remote end's FIN. Resolves with the count of all bytes read, the last
 * `tailLength` of them, and the SHA-256 of everything before that tail.
 */
export function libp2pRead(stream: YamuxStream, tailLength = 0): Promise<ReadResult> {
  return new Promise<ReadResult>((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    let tail = Buffer.alloc(0);
    stream.addEventListener('message', (evt) => {
      for (const chunk of chunksOf(evt.data)) {
        bytes += chunk.byteLength;
        if (tailLength === 0) {
          hash.update(chunk);
          continue;
        }
        const joined = Buffer.concat([tail, chunk]);
        const cut = Math.max(0, joined.length - tailLength);
        hash.update(joined.subarray(0, cut));
        tail = joined.subarray(cut);
      }
    });
    const finish = (): void => {
      if (aborted(stream)) return; // libp2p emits 'end' on abort/reset too; the close listener rejects
      resolve({ bytes, sha256: hash.digest('hex'), tail });
    };
    if (stream.readableEnded) finish();
    else stream.addEventListener('end', finish, { once: true });
    closedWithError(stream).catch(reject);
  });
}

export interface EchoOptions {
  /** Keep this many bytes back until our FIN arrives, so some of the echo surely follows it. */
  holdBack?: number;
  /** Called with the running byte count after each message; may abort the stream. */
  onProgress?: (received: number) => void;
}

export interface EchoResult extends Digest {
  /** Bytes received before our FIN was seen (it must be all of them). */
  bytesAtFin: number;
}

/**
 * Echoes a libp2p stream: everything read is written back, with backpressure (reading pauses,
 * so libp2p stops granting window, while the echo cannot be sent). After the remote FIN the
 * held-back tail is sent and the writable end closed. Resolves with what was echoed.
 */
export function libp2pEcho(stream: YamuxStream, options: EchoOptions = {}): Promise<EchoResult> {
  const holdBack = options.holdBack ?? 0;
  return new Promise<EchoResult>((resolve, reject) => {
    const hash = createHash('sha256');
    let bytes = 0;
    let bytesAtFin = -1;
    const held: Uint8Array[] = [];
    let heldBytes = 0;
    const send = (chunk: Uint8Array): void => {
      if (stream.writeStatus !== 'writable') return; // reset or aborted: the close listener reports it
      if (stream.send(chunk) || stream.readStatus !== 'readable') return;
      stream.pause();
      nextDrain(stream).then(() => {
        if (stream.readStatus === 'paused') stream.resume();
      }, () => {});
    };
    stream.addEventListener('message', (evt) => {
      for (const chunk of chunksOf(evt.data)) {
        hash.update(chunk);
        bytes += chunk.byteLength;
        held.push(chunk);
        heldBytes += chunk.byteLength;
      }
      while (held.length > 0 && heldBytes - held[0]!.byteLength >= holdBack) {
        const chunk = held.shift()!;
        heldBytes -= chunk.byteLength;
        send(chunk);
      }
      options.onProgress?.(bytes);
    });
    stream.addEventListener('remoteCloseWrite', () => {
      bytesAtFin = bytes + stream.readBufferLength;
    }, { once: true });
    stream.addEventListener('end', () => {
      if (aborted(stream) || stream.writeStatus !== 'writable') return; // the close listener rejects
      for (const chunk of held.splice(0)) stream.send(chunk);
      heldBytes = 0;
      // close() waits until the write queue has gone out, then sends FIN.
      stream.close().then(() => resolve({ bytes, sha256: hash.digest('hex'), bytesAtFin }), reject);
    }, { once: true });
    closedWithError(stream).catch(reject);
  });
}
