// One yamux session: frame dispatch, stream table, keepalive and GoAway.
import { EventEmitter } from 'node:events';
import {
  DEFAULT_KEEPALIVE_INTERVAL_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_MAX_FRAME_PAYLOAD,
  DEFAULT_MAX_STREAMS,
  DEFAULT_STREAM_WINDOW,
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  GO_AWAY_INTERNAL_ERR,
  HEADER_LENGTH,
  GO_AWAY_NORMAL,
  GO_AWAY_PROTO_ERR,
  INITIAL_STREAM_WINDOW,
  MAX_STREAM_ID,
  SESSION_STREAM_ID,
  SMALL_FRAME_PAYLOAD,
  TYPE_DATA,
  TYPE_GO_AWAY,
  TYPE_PING,
  TYPE_WINDOW_UPDATE,
} from './const.js';
import { ProtocolError, StreamError } from './errors.js';
import { FrameDecoder, describeFrame, encodeHeader, type FrameSink } from './frame.js';
import { Stream, type StreamHost } from './stream.js';
import type { Transport } from './transport.js';

export interface SessionOptions {
  /** The client opens odd stream ids, the server even ones. */
  client: boolean;
  /** Receive window per stream, announced to the peer on open. At least 256 KiB. */
  streamWindow?: number;
  maxFramePayload?: number;
  /** Streams the peer may have open at once; more are reset. */
  maxStreams?: number;
  keepaliveIntervalMs?: number;
  /** No frame at all from the peer this long after a ping: the session is dead. */
  keepaliveTimeoutMs?: number;
}

export interface SessionEvents {
  stream: [stream: Stream];
  /** Once, with why the session ended. */
  close: [reason: Error];
  rtt: [ms: number];
}

const GO_AWAY_REASONS: Readonly<Record<number, string>> = {
  [GO_AWAY_NORMAL]: 'normal termination',
  [GO_AWAY_PROTO_ERR]: 'protocol error',
  [GO_AWAY_INTERNAL_ERR]: 'internal error',
};

export class Session extends EventEmitter<SessionEvents> implements StreamHost, FrameSink {
  readonly maxFramePayload: number;
  private readonly streamWindow: number;
  private readonly maxStreams: number;
  private readonly streams = new Map<number, Stream>();
  private readonly decoder = new FrameDecoder(this);
  private readonly drainWaiters = new Set<Stream>();
  private nextStreamId: number;
  /** The stream the Data frame being decoded belongs to; null if unknown (payload dropped). */
  private dataStream: Stream | null = null;
  private dataFlags = 0;
  private remoteGoAway = false;
  private localGoAway = false;
  private closedReason: Error | null = null;
  private keepalive: NodeJS.Timeout | null = null;
  private pingSentAt = 0;
  private pingId = 0;
  private lastReceiveAt = Date.now();
  private readonly keepaliveTimeoutMs: number;

  constructor(
    private readonly transport: Transport,
    options: SessionOptions,
  ) {
    super();
    this.streamWindow = options.streamWindow ?? DEFAULT_STREAM_WINDOW;
    if (this.streamWindow < INITIAL_STREAM_WINDOW || this.streamWindow > MAX_STREAM_ID) {
      throw new RangeError(`stream window must be between ${INITIAL_STREAM_WINDOW} and ${MAX_STREAM_ID} bytes`);
    }
    this.maxFramePayload = options.maxFramePayload ?? DEFAULT_MAX_FRAME_PAYLOAD;
    this.maxStreams = options.maxStreams ?? DEFAULT_MAX_STREAMS;
    this.nextStreamId = options.client ? 1 : 2;
    this.keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS;
    transport.attach({
      data: (chunk) => this.receive(chunk),
      drain: () => this.onDrain(),
      close: (reason) => this.terminate(reason),
    });
    const interval = options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS;
    if (interval > 0) {
      this.keepalive = setInterval(() => this.tickKeepalive(), interval);
      this.tickKeepalive(); // a first RTT right away, for logs and metrics
    }
  }

  get closed(): boolean {
    return this.closedReason !== null;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get congested(): boolean {
    return this.transport.congested;
  }

  /** Opens a stream towards the peer. */
  open(): Stream {
    if (this.closedReason) throw new StreamError(`session closed: ${this.closedReason.message}`, 'ESESSIONCLOSED');
    if (this.remoteGoAway) throw new StreamError('the peer is going away and accepts no new streams', 'EGOAWAY');
    const id = this.nextStreamId;
    if (id > MAX_STREAM_ID) throw new StreamError('stream ids exhausted on this session', 'EIDSEXHAUSTED');
    this.nextStreamId += 2;
    const stream = new Stream(this, id, true, this.streamWindow);
    this.streams.set(id, stream);
    return stream;
  }

  /** Ends the session: GoAway to the peer, every stream closed with the reason. */
  close(reason: Error = new Error('session closed'), code = GO_AWAY_NORMAL): void {
    if (this.closedReason) return;
    if (!this.localGoAway) {
      this.localGoAway = true;
      this.sendControl(TYPE_GO_AWAY, 0, SESSION_STREAM_ID, code);
    }
    this.terminate(reason);
    this.transport.close(reason);
  }

  // ---- StreamHost --------------------------------------------------------------

  sendControl(type: number, flags: number, streamId: number, length: number): void {
    if (this.closedReason) return;
    this.transport.send(encodeHeader(type, flags, streamId, length));
  }

  sendData(flags: number, streamId: number, payload: Buffer): void {
    if (this.closedReason) return;
    if (payload.length <= SMALL_FRAME_PAYLOAD) {
      // One message for a small frame: copying a few KiB costs less than a second WebSocket
      // message on both ends, and request/response latency is made of such small frames.
      const frame = encodeHeader(TYPE_DATA, flags, streamId, payload.length, HEADER_LENGTH + payload.length);
      payload.copy(frame, HEADER_LENGTH);
      this.transport.send(frame);
      return;
    }
    this.transport.send(encodeHeader(TYPE_DATA, flags, streamId, payload.length));
    this.transport.send(payload);
  }

  waitForDrain(stream: Stream): void {
    this.drainWaiters.add(stream);
  }

  forget(stream: Stream): void {
    this.streams.delete(stream.id);
    this.drainWaiters.delete(stream);
  }

  // ---- FrameSink ---------------------------------------------------------------

  onFrame(type: number, flags: number, streamId: number, length: number): void {
    switch (type) {
      case TYPE_PING:
        this.onPing(flags, length);
        return;
      case TYPE_GO_AWAY:
        this.onGoAway(length);
        return;
      case TYPE_WINDOW_UPDATE:
      case TYPE_DATA: {
        const stream = this.streamFor(type, flags, streamId, length);
        if (type === TYPE_DATA) {
          if (length > this.maxFramePayload) {
            throw new ProtocolError(`Data frame of ${length} bytes exceeds the frame limit of ${this.maxFramePayload}`);
          }
          stream?.admit(length);
          this.dataStream = stream;
          this.dataFlags = flags;
          return;
        }
        if (!stream) return;
        stream.addSendCredit(length);
        this.applyCloseFlags(stream, flags);
        return;
      }
    }
  }

  onPayload(chunk: Buffer): void {
    this.dataStream?.receive(chunk);
  }

  onDataEnd(): void {
    const stream = this.dataStream;
    this.dataStream = null;
    if (stream) this.applyCloseFlags(stream, this.dataFlags);
  }

  // ---- internals ---------------------------------------------------------------

  private receive(chunk: Buffer): void {
    if (this.closedReason) return;
    this.lastReceiveAt = Date.now();
    try {
      this.decoder.push(chunk);
    } catch (error) {
      if (error instanceof ProtocolError) {
        this.close(new ProtocolError(`protocol violation by peer: ${error.message}`), GO_AWAY_PROTO_ERR);
      } else {
        this.close(new Error(`internal error: ${(error as Error).message}`), GO_AWAY_INTERNAL_ERR);
      }
    }
  }

  /** Finds (or, on SYN, creates) the stream a Data/WindowUpdate frame is for. */
  private streamFor(type: number, flags: number, streamId: number, length: number): Stream | null {
    if (streamId === SESSION_STREAM_ID) {
      throw new ProtocolError(`stream frame on stream 0 (${describeFrame(type, flags, streamId, length)})`);
    }
    const known = this.streams.get(streamId);
    if (!(flags & FLAG_SYN)) return known ?? null; // unknown: closed recently; its frames are dropped
    if (known) throw new ProtocolError(`SYN for stream ${streamId}, which is already open`);
    const peerIsClient = streamId % 2 === 1;
    if (peerIsClient === (this.nextStreamId % 2 === 1)) {
      throw new ProtocolError(`peer opened stream ${streamId} with this side's id parity`);
    }
    if (this.localGoAway || this.streams.size >= this.maxStreams || this.listenerCount('stream') === 0) {
      // Refuse this stream only; the session stays up.
      this.transport.send(encodeHeader(TYPE_WINDOW_UPDATE, FLAG_RST, streamId, 0));
      return null;
    }
    const stream = new Stream(this, streamId, false, this.streamWindow);
    this.streams.set(streamId, stream);
    this.emit('stream', stream);
    return stream;
  }

  private applyCloseFlags(stream: Stream, flags: number): void {
    if (flags & FLAG_RST) stream.onRemoteReset();
    else if (flags & FLAG_FIN) stream.onRemoteFin();
  }

  private onPing(flags: number, opaque: number): void {
    if (flags & FLAG_SYN) {
      this.sendControl(TYPE_PING, FLAG_ACK, SESSION_STREAM_ID, opaque);
    } else if (flags & FLAG_ACK && opaque === this.pingId && this.pingSentAt !== 0) {
      this.emit('rtt', Date.now() - this.pingSentAt);
      this.pingSentAt = 0;
    }
  }

  private onGoAway(code: number): void {
    this.remoteGoAway = true;
    if (code !== GO_AWAY_NORMAL) {
      const reason = GO_AWAY_REASONS[code] ?? `code ${code}`;
      this.close(new Error(`peer closed the session: GoAway(${reason})`));
    }
  }

  private onDrain(): void {
    // Round-robin: a stream that congests the transport again goes to the back.
    const waiting = [...this.drainWaiters];
    this.drainWaiters.clear();
    for (const stream of waiting) {
      if (this.transport.congested) {
        this.drainWaiters.add(stream);
        continue;
      }
      stream.flush();
    }
  }

  private tickKeepalive(): void {
    const now = Date.now();
    if (this.pingSentAt !== 0 && now - this.pingSentAt >= this.keepaliveTimeoutMs && now - this.lastReceiveAt >= this.keepaliveTimeoutMs) {
      this.close(new Error(`keepalive timeout: nothing received from the peer for ${now - this.lastReceiveAt} ms`));
      return;
    }
    if (this.pingSentAt !== 0) return;
    this.pingId = (this.pingId + 1) >>> 0;
    this.pingSentAt = now;
    this.sendControl(TYPE_PING, FLAG_SYN, SESSION_STREAM_ID, this.pingId);
  }

  private terminate(reason: Error): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = null;
    const streamError = new StreamError(`session closed: ${reason.message}`, 'ESESSIONCLOSED');
    for (const stream of [...this.streams.values()]) stream.destroy(streamError);
    this.streams.clear();
    this.drainWaiters.clear();
    this.emit('close', reason);
  }
}

