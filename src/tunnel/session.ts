// One yamux session: frame dispatch, stream table, keepalive and GoAway, and, when resumable,
// suspension on a lost transport and resumption on a new one:
//   open --transport lost--> suspended --resume(t)--> resuming --peer's state--> open
//   any --GoAway, violation, close(), resume timeout--> closed
// On resumption the client sends its streams' state first; the server reconciles (creates the
// streams whose SYN it missed, forgets those the client no longer has: resume-reconcile.ts),
// answers with its own state, and both re-send what the other did not receive.
import { EventEmitter } from 'node:events';
import {
  DEFAULT_INITIAL_STREAM_WINDOW,
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
  RST_STREAM_LIMIT,
  SESSION_STREAM_ID,
  SMALL_FRAME_PAYLOAD,
  TYPE_DATA,
  TYPE_GO_AWAY,
  TYPE_PING,
  TYPE_WINDOW_UPDATE,
} from './const.js';
import { ProtocolError, StreamError } from './errors.js';
import { FrameDecoder, describeFrame, encodeHeader, type FrameSink } from './frame.js';
import { replayMemory } from './replay-buffer.js';
import { reconcileStreams, resendToPeer } from './resume-reconcile.js';
import { SessionStateReader, encodeSessionState, type SessionState } from './resume-state.js';
import { Stream, type StreamHost } from './stream.js';
import type { Transport } from './transport.js';

export interface SessionOptions {
  /** The client opens odd stream ids, the server even ones. */
  client: boolean;
  /** The most a stream's receive window grows to. At least 256 KiB. */
  streamWindow?: number;
  /** Where a stream's receive window starts (default the smaller of 1 MiB and streamWindow). */
  initialStreamWindow?: number;
  maxFramePayload?: number;
  /** Streams the peer may have open at once; more are reset. */
  maxStreams?: number;
  keepaliveIntervalMs?: number;
  /** No frame at all from the peer this long after a ping: the session is dead (or suspended). */
  keepaliveTimeoutMs?: number;
  /** Above 0: a lost transport suspends the session for this long, waiting for resume(). */
  resumeTimeoutMs?: number;
}

export interface ResumeInfo {
  streams: number;
  /** Bytes sent again because the peer had not received them. */
  replayedBytes: number;
  outageMs: number;
  /** Most replay bytes this process has held at once, over all streams. */
  peakReplayBytes: number;
}

export interface SessionEvents {
  stream: [stream: Stream];
  /** Once, with why the session ended. */
  close: [reason: Error];
  rtt: [ms: number];
  /** The transport was lost; streams wait for resume() or the resume timeout. */
  suspend: [reason: Error];
  resume: [info: ResumeInfo];
  /** A stream the peer opened was reset at once: the session already had `limit` streams. */
  refused: [streamId: number, limit: number];
}

type Phase = 'open' | 'suspended' | 'resuming';

/** Stands in for the transport while suspended: takes nothing, holds streams back. */
const DETACHED: Transport = {
  congested: true,
  send: () => {},
  attach: () => {},
  close: () => {},
};

const GO_AWAY_REASONS: Readonly<Record<number, string>> = {
  [GO_AWAY_NORMAL]: 'normal termination',
  [GO_AWAY_PROTO_ERR]: 'protocol error',
  [GO_AWAY_INTERNAL_ERR]: 'internal error',
};

export class Session extends EventEmitter<SessionEvents> implements StreamHost, FrameSink {
  readonly maxFramePayload: number;
  private readonly streamWindow: number;
  private readonly initialStreamWindow: number;
  private readonly maxStreams: number;
  private readonly streams = new Map<number, Stream>();
  private decoder = new FrameDecoder(this);
  private transport: Transport = DETACHED;
  private phase: Phase = 'open';
  private readonly client: boolean;
  /** How long a lost transport may stay lost (0: not resumable). */
  readonly resumeTimeoutMs: number;
  private resumeTimer: NodeJS.Timeout | null = null;
  private suspendedAt = 0;
  private resumingSince = 0;
  /** While resuming: the peer's state message being read. */
  private stateReader: SessionStateReader | null = null;
  /** Client, while resuming: frames made after our state was sent, to send once it is applied. */
  private held: Buffer[] = [];
  private highestPeerStreamId = 0;
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
  /** When the ping in flight left, by the monotonic clock (for rttMs; pingSentAt's resolution is 1 ms). */
  private pingSentPrecise = 0;
  /** The last round trip measured by a ping, in ms (fractions included); 0 until one is. */
  rttMs = 0;
  private pingId = 0;
  private lastReceiveAt = Date.now();
  private readonly keepaliveTimeoutMs: number;

  constructor(transport: Transport, options: SessionOptions) {
    super();
    this.client = options.client;
    this.resumeTimeoutMs = options.resumeTimeoutMs ?? 0;
    this.streamWindow = options.streamWindow ?? DEFAULT_STREAM_WINDOW;
    if (this.streamWindow < INITIAL_STREAM_WINDOW || this.streamWindow > MAX_STREAM_ID) {
      throw new RangeError(`stream window must be between ${INITIAL_STREAM_WINDOW} and ${MAX_STREAM_ID} bytes`);
    }
    this.initialStreamWindow = Math.max(INITIAL_STREAM_WINDOW, Math.min(options.initialStreamWindow ?? DEFAULT_INITIAL_STREAM_WINDOW, this.streamWindow));
    this.maxFramePayload = options.maxFramePayload ?? DEFAULT_MAX_FRAME_PAYLOAD;
    this.maxStreams = options.maxStreams ?? DEFAULT_MAX_STREAMS;
    this.nextStreamId = options.client ? 1 : 2;
    this.keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS;
    this.attach(transport);
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
    return this.phase !== 'open' || this.transport.congested;
  }

  /** Open, and the peer has not said it is going away: new streams may be opened. */
  get acceptsStreams(): boolean {
    return this.closedReason === null && !this.remoteGoAway;
  }

  get resumable(): boolean {
    return this.resumeTimeoutMs > 0;
  }

  get suspended(): boolean {
    return this.phase !== 'open' && this.closedReason === null;
  }

  /** Opens a stream towards the peer. */
  open(): Stream {
    if (this.closedReason) throw new StreamError(`session closed: ${this.closedReason.message}`, 'ESESSIONCLOSED');
    if (this.remoteGoAway) throw new StreamError('the peer is going away and accepts no new streams', 'EGOAWAY');
    const id = this.nextStreamId;
    if (id > MAX_STREAM_ID) throw new StreamError('stream ids exhausted on this session', 'EIDSEXHAUSTED');
    this.nextStreamId += 2;
    const stream = new Stream(this, id, { opening: true, ...this.windows(), resumable: this.resumable });
    this.streams.set(id, stream);
    return stream;
  }

  /** Continues a suspended (or, on the server, a still-open) session over a new transport. */
  resume(transport: Transport): void {
    if (this.closedReason) {
      transport.close(new Error(`session closed: ${this.closedReason.message}`));
      throw new StreamError(`session closed: ${this.closedReason.message}`, 'ESESSIONCLOSED');
    }
    if (this.phase !== 'suspended') this.suspend(new Error('replaced by a new connection from the peer'));
    this.phase = 'resuming';
    this.resumingSince = Date.now();
    this.attach(transport);
    this.stateReader = new SessionStateReader();
    if (this.client) transport.send(encodeSessionState(this.snapshot()));
  }

  /** Tells the peer to open no more streams (and refuses its new ones); open streams go on. */
  goAway(code = GO_AWAY_NORMAL): void {
    if (this.closedReason || this.localGoAway) return;
    this.localGoAway = true;
    this.sendControl(TYPE_GO_AWAY, 0, SESSION_STREAM_ID, code);
  }

  /**
   * Ends the session: GoAway to the peer, every stream closed with the reason. The promise
   * settles once the transport is gone (its GoAway and close sent), where it can tell.
   */
  async close(reason: Error = new Error('session closed'), code = GO_AWAY_NORMAL): Promise<void> {
    if (this.closedReason) return;
    this.goAway(code);
    this.terminate(reason);
    await this.transport.close(reason);
  }

  // ---- StreamHost --------------------------------------------------------------

  sendControl(type: number, flags: number, streamId: number, length: number): void {
    if (this.closedReason) return;
    const frame = encodeHeader(type, flags, streamId, length);
    if (this.phase === 'open') this.transport.send(frame);
    // The client's state was sent before these: they follow it. A FIN is not held: the peer's
    // state says whether it has one, and a FIN must not overtake the data re-sent before it.
    else if (this.phase === 'resuming' && this.client && !(flags & FLAG_FIN)) this.held.push(frame);
    // Otherwise the state message, made later, carries what these frames would have said.
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
        if (flags & FLAG_RST) {
          if (type === TYPE_WINDOW_UPDATE) {
            stream?.onRemoteReset(length); // a RST's Length: the errno behind it, or 0
            return;
          }
          stream?.onRemoteReset(0);
        }
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
        stream.addSendCredit(length, flags);
        if (flags & FLAG_FIN) stream.onRemoteFin();
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
    if (stream && this.dataFlags & FLAG_FIN && !(this.dataFlags & FLAG_RST)) stream.onRemoteFin();
  }

  // ---- internals ---------------------------------------------------------------

  private attach(transport: Transport): void {
    this.transport = transport;
    // Events of a transport this session has left behind are not its business any more.
    transport.attach({
      data: (chunk) => this.transport === transport && this.receive(chunk),
      drain: () => this.transport === transport && this.onDrain(),
      close: (reason) => this.transport === transport && this.onTransportClosed(reason),
    });
  }

  private onTransportClosed(reason: Error): void {
    if (this.resumable && !this.localGoAway && !this.remoteGoAway) this.suspend(reason);
    else if (this.remoteGoAway && !this.localGoAway) this.terminate(new Error(this.client ? `destination lost the session: it went away (${reason.message})` : `the source closed the session (${reason.message})`));
    else this.terminate(reason);
  }

  private suspend(reason: Error): void {
    if (this.closedReason || this.phase === 'suspended') return;
    const transport = this.transport;
    this.transport = DETACHED;
    transport.close(reason);
    this.phase = 'suspended';
    this.stateReader = null;
    this.held = [];
    this.decoder = new FrameDecoder(this);
    this.dataStream = null;
    this.pingSentAt = 0;
    if (this.resumeTimer === null) {
      this.suspendedAt = Date.now();
      const seconds = this.resumeTimeoutMs / 1000;
      this.resumeTimer = setTimeout(() => this.close(new Error(`session not resumed within ${seconds} s (--resume-timeout) after: ${reason.message}`)), this.resumeTimeoutMs);
    }
    this.emit('suspend', reason);
  }

  private snapshot(): SessionState {
    return { highestPeerStreamId: this.highestPeerStreamId, streams: [...this.streams.values()].map((s) => s.resumeState()) };
  }

  /** The peer's state arrived on the resumed transport: reconcile, answer (server), re-send, go on. */
  private onPeerState(peer: SessionState): void {
    reconcileStreams(
      {
        streams: this.streams,
        highestPeerStreamId: this.highestPeerStreamId,
        isPeerStreamId: (id) => this.isPeerStreamId(id),
        acceptMissed: (id) => this.acceptStream(id, false),
      },
      peer,
    );
    // The server's state answers the client's; then what was held, then the re-sent bytes.
    if (!this.client) this.transport.send(encodeSessionState(this.snapshot()));
    this.phase = 'open';
    for (const frame of this.held) this.transport.send(frame);
    this.held = [];
    const replayedBytes = resendToPeer(this.streams, peer);
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.resumeTimer = null;
    this.lastReceiveAt = Date.now();
    const outageMs = Date.now() - this.suspendedAt;
    this.emit('resume', { streams: this.streams.size, replayedBytes, outageMs, peakReplayBytes: replayMemory.peak });
    this.onDrain();
  }

  private windows(): { window: number; maxWindow: number } {
    return { window: this.initialStreamWindow, maxWindow: this.streamWindow };
  }

  private isPeerStreamId(id: number): boolean {
    return id % 2 === (this.client ? 0 : 1);
  }

  private receive(chunk: Buffer): void {
    if (this.closedReason) return;
    this.lastReceiveAt = Date.now();
    try {
      if (this.stateReader) {
        const message = this.stateReader.push(chunk);
        if (!message) return;
        this.stateReader = null;
        this.onPeerState(message.state);
        chunk = message.rest;
      }
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
    if (!this.isPeerStreamId(streamId)) {
      throw new ProtocolError(`peer opened stream ${streamId} with this side's id parity`);
    }
    return this.acceptStream(streamId, true);
  }

  /** A stream the peer opened, by SYN or (announce false) named in its resume state. */
  private acceptStream(streamId: number, announce: boolean): Stream | null {
    this.highestPeerStreamId = Math.max(this.highestPeerStreamId, streamId);
    const full = this.streams.size >= this.maxStreams;
    if (this.localGoAway || full || this.listenerCount('stream') === 0) {
      // Refuse this stream only; the session stays up. (When resuming, leaving it out of our state refuses it.)
      if (announce) this.sendControl(TYPE_WINDOW_UPDATE, FLAG_RST, streamId, full ? RST_STREAM_LIMIT + Math.min(this.maxStreams, RST_STREAM_LIMIT - 1) : 0);
      if (full) this.emit('refused', streamId, this.maxStreams);
      return null;
    }
    const stream = new Stream(this, streamId, { opening: false, ...this.windows(), resumable: this.resumable, announce });
    this.streams.set(streamId, stream);
    this.emit('stream', stream);
    return stream;
  }

  private onPing(flags: number, opaque: number): void {
    if (flags & FLAG_SYN) {
      this.sendControl(TYPE_PING, FLAG_ACK, SESSION_STREAM_ID, opaque);
    } else if (flags & FLAG_ACK && opaque === this.pingId && this.pingSentAt !== 0) {
      this.rttMs = performance.now() - this.pingSentPrecise;
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
    if (this.phase === 'resuming' && now - this.resumingSince >= this.keepaliveTimeoutMs && now - this.lastReceiveAt >= this.keepaliveTimeoutMs) {
      // A new connection that never carries the peer's state is as dead as the old one.
      this.suspend(new Error(`no resume state from the peer within ${this.keepaliveTimeoutMs} ms`));
      return;
    }
    if (this.phase !== 'open') return;
    if (this.pingSentAt !== 0 && now - this.pingSentAt >= this.keepaliveTimeoutMs && now - this.lastReceiveAt >= this.keepaliveTimeoutMs) {
      const reason = new Error(`keepalive timeout: nothing received from the peer for ${now - this.lastReceiveAt} ms`);
      if (this.resumable) this.suspend(reason);
      else this.close(reason);
      return;
    }
    if (this.pingSentAt !== 0) return;
    this.pingId = (this.pingId + 1) >>> 0;
    this.pingSentAt = now;
    this.pingSentPrecise = performance.now();
    this.sendControl(TYPE_PING, FLAG_SYN, SESSION_STREAM_ID, this.pingId);
  }

  private terminate(reason: Error): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = null;
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    this.resumeTimer = null;
    this.stateReader = null;
    this.held = [];
    const streamError = new StreamError(`session closed: ${reason.message}`, 'ESESSIONCLOSED');
    for (const stream of [...this.streams.values()]) stream.destroy(streamError);
    this.streams.clear();
    this.drainWaiters.clear();
    this.emit('close', reason);
  }
}

