// One yamux stream: a Duplex whose writes spend the peer's credit and whose reads
// return credit to the peer only when the consumer has taken the bytes.
// With resumption on, it also keeps what the peer has not confirmed (ReplayBuffer) and tells
// the peer when it has read everything up to the FIN (a WindowUpdate with ACK: "fin-ack"), so
// that both sides forget a stream only once neither can need it again.
import { constants as osConstants } from 'node:os';
import { Duplex } from 'node:stream';
import { CREDIT_BATCHES, FLAG_ACK, FLAG_FIN, FLAG_GROW, FLAG_RST, FLAG_SYN, INITIAL_STREAM_WINDOW, LOCAL_HIGH_WATER_MARK, RST_STREAM_LIMIT, TYPE_WINDOW_UPDATE } from './const.js';
import { ProtocolError, StreamError } from './errors.js';
import { ReplayBuffer } from './replay-buffer.js';
import { RESUME_EOF_DELIVERED, RESUME_FIN_RECEIVED, type StreamState } from './resume-state.js';

const ERRNO_NAMES = new Map(Object.entries(osConstants.errno).map(([name, value]) => [value, name]));

/** What a stream needs from its session; kept narrow so the two lifecycles stay apart. */
export interface StreamHost {
  readonly maxFramePayload: number;
  /** True while the transport holds more than its high-water mark. */
  readonly congested: boolean;
  /** The session's last measured round trip, ms; 0 until one is. */
  readonly rttMs: number;
  sendControl(type: number, flags: number, streamId: number, length: number): void;
  sendData(flags: number, streamId: number, payload: Buffer): void;
  /** Calls stream.flush() once the transport drains. */
  waitForDrain(stream: Stream): void;
  /** The stream is fully closed or reset: drop it from the session. */
  forget(stream: Stream): void;
}

export interface StreamOptions {
  /** Our receive window, announced to the peer. */
  window: number;
  /** What the window may grow to when the peer reports waiting for credit (see FLAG_GROW). */
  maxWindow: number;
  /** We open it (SYN) rather than accept it (ACK). */
  opening: boolean;
  /** Keep unconfirmed bytes for a resumed session, and send fin-acks. */
  resumable: boolean;
  /** Send the SYN/ACK now; false for a stream recreated during a resume, which the state message announces. */
  announce?: boolean;
}

interface PendingWrite {
  chunk: Buffer;
  offset: number;
  callback: (error?: Error | null) => void;
}

/**
 * Write callbacks fire once a chunk is queued on the transport, which holds it by reference
 * until the socket takes it: like any buffering stream, do not modify a chunk after writing it.
 */
export class Stream extends Duplex {
  /** Bytes this side has sent / received on the stream (payload only). */
  bytesSent = 0;
  bytesReceived = 0;

  private sendCredit = INITIAL_STREAM_WINDOW;
  private recvCredit = INITIAL_STREAM_WINDOW;
  private creditThreshold: number;
  /** Received bytes the reader has not asked for yet: at most one window. */
  private readonly inbox: Buffer[] = [];
  private inboxBytes = 0;
  /** The reader asked for data (_read) and has not been given enough yet. */
  private wantsData = false;
  /** Bytes the reader has taken and the peer has not been credited for. */
  private uncredited = 0;
  /** Flags to put on the next frame sent: SYN on an opened stream, ACK on an accepted one. */
  private openFlags: number;
  private pending: PendingWrite | null = null;
  private localFin = false;
  private remoteFin = false;
  private resetByPeer = false;
  private forgotten = false;
  private window: number;
  private readonly maxWindow: number;
  /** We told the peer we are out of credit, and no credit has come since. */
  private waitReported = false;
  /** Where the receive rate is measured from: a time (performance.now()) and bytesReceived then. */
  private rateSince = 0;
  private rateBytes = 0;
  /** The peer's receive window, once its SYN/ACK (or a resume) announced it. */
  private peerWindow = INITIAL_STREAM_WINDOW;
  private peerAnnounced = false;
  private readonly replay: ReplayBuffer | null;
  /** The reader has been given everything up to the peer's FIN (and the peer told so). */
  private eofDelivered = false;
  /** The peer has read everything we sent, FIN included. */
  private finAcked = false;

  constructor(
    private readonly host: StreamHost,
    readonly id: number,
    options: StreamOptions,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: LOCAL_HIGH_WATER_MARK });
    this.window = options.window;
    this.maxWindow = Math.max(options.window, options.maxWindow);
    this.recvCredit = options.window;
    this.creditThreshold = creditThresholdOf(options.window);
    this.replay = options.resumable ? new ReplayBuffer() : null;
    this.openFlags = options.opening ? FLAG_SYN : FLAG_ACK;
    // Announce the window at once: the peer may write as soon as it sees SYN/ACK.
    if (options.announce ?? true) this.sendOpenFlags(options.window - INITIAL_STREAM_WINDOW);
    else this.openFlags = 0;
  }

  /** Bytes received and not yet read by the consumer (inbox and the Readable's buffer). */
  get bufferedBytes(): number {
    return this.inboxBytes + this.readableLength;
  }

  // ---- called by the session -------------------------------------------------

  /**
   * A WindowUpdate grants more credit; the first with SYN/ACK also announces the peer's window,
   * one with GROW enlarges it, and one with neither delta nor flags says the peer waits for credit.
   */
  addSendCredit(delta: number, flags: number): void {
    if (delta === 0 && flags === 0) {
      this.onPeerWaiting();
      return;
    }
    if (this.sendCredit + delta > 0xffffffff) throw new ProtocolError(`stream ${this.id}: send window overflow`);
    if (flags & FLAG_GROW) this.peerWindow += delta;
    const finAck = (flags & FLAG_ACK) !== 0 && this.peerAnnounced && this.replay !== null;
    if (flags & (FLAG_SYN | FLAG_ACK) && !this.peerAnnounced) {
      this.peerAnnounced = true;
      this.peerWindow += delta;
    }
    this.sendCredit += delta;
    // Credit returned means read: those bytes will never be asked for again.
    this.replay?.releaseTo(this.bytesSent + this.sendCredit - this.peerWindow);
    if (finAck) {
      if (!this.localFin) throw new ProtocolError(`stream ${this.id}: fin-ack before this side's FIN`);
      this.finAcked = true;
      this.maybeForget();
    }
    if (delta > 0) {
      this.waitReported = false;
      this.flush();
    }
  }

  /** Checked on the Data header, before any payload is accepted. */
  admit(length: number): void {
    if (this.remoteFin) throw new ProtocolError(`stream ${this.id}: data after FIN`);
    if (length > this.recvCredit) {
      throw new ProtocolError(`stream ${this.id}: peer sent ${length} bytes with ${this.recvCredit} bytes of window left`);
    }
  }

  receive(chunk: Buffer): void {
    if (this.destroyed) return;
    this.bytesReceived += chunk.length;
    this.recvCredit -= chunk.length;
    this.inbox.push(chunk);
    this.inboxBytes += chunk.length;
    if (this.wantsData) this.deliver();
  }

  onRemoteFin(): void {
    if (this.remoteFin) return;
    this.remoteFin = true;
    if (this.inbox.length === 0) this.endOfInput();
    this.maybeForget();
  }

  /** `reason`: the RST's Length, an errno or the peer's stream limit (see RST_STREAM_LIMIT); 0: none given. */
  onRemoteReset(reason: number): void {
    this.resetByPeer = true;
    // Already destroyed here (closed cleanly, waiting for a fin-ack): the peer gave up on it.
    if (this.destroyed) {
      this.forgetNow();
      return;
    }
    this.destroy(resetError(this.id, reason));
  }

  // ---- resumption --------------------------------------------------------------

  /** Where this stream stands, for the peer of a resumed session. */
  resumeState(): StreamState {
    const flags = (this.remoteFin ? RESUME_FIN_RECEIVED : 0) | (this.eofDelivered ? RESUME_EOF_DELIVERED : 0);
    return { id: this.id, flags, window: this.window, received: this.bytesReceived, limit: this.bytesReceived + this.recvCredit };
  }

  /**
   * Continues after a resume from where the peer says it stands: its window and credit replace
   * ours, what it did not receive is sent again, and a FIN it missed is repeated. Returns the
   * bytes re-sent.
   */
  applyPeerState(peer: StreamState): number {
    if (!this.replay) throw new Error('applyPeerState on a stream without replay');
    const badWindow = peer.window < INITIAL_STREAM_WINDOW || peer.window > 0xffffffff;
    if (badWindow || peer.received > this.bytesSent || peer.limit < this.bytesSent || peer.limit - this.bytesSent > 0xffffffff) {
      throw new ProtocolError(`stream ${this.id}: resume state (window ${peer.window}, received ${peer.received}, limit ${peer.limit}) does not fit the ${this.bytesSent} bytes sent`);
    }
    this.peerAnnounced = true;
    this.openFlags = 0;
    this.peerWindow = peer.window;
    this.sendCredit = peer.limit - this.bytesSent;
    this.waitReported = false;
    let resent = 0;
    for (const chunk of this.replay.from(peer.received)) {
      this.host.sendData(0, this.id, chunk);
      resent += chunk.length;
    }
    if (this.localFin && !(peer.flags & RESUME_FIN_RECEIVED)) this.host.sendControl(TYPE_WINDOW_UPDATE, FLAG_FIN, this.id, 0);
    if (peer.flags & RESUME_EOF_DELIVERED) this.finAcked = true;
    this.maybeForget();
    this.flush();
    return resent;
  }

  /** The peer no longer knows this stream: it finished it, or reset it while we could not hear. */
  onPeerForgot(): void {
    if (this.localFin && this.remoteFin) {
      this.finAcked = true;
      this.maybeForget();
      return;
    }
    this.resetByPeer = true;
    this.destroy(new StreamError(`stream ${this.id} was reset by the peer while the session was suspended`, 'ECONNRESET'));
  }

  /** Sends as much of the pending write as credit and the transport allow. */
  flush(): void {
    const pending = this.pending;
    if (!pending) return;
    const { chunk } = pending;
    while (pending.offset < chunk.length) {
      if (this.sendCredit === 0) {
        this.reportWaiting();
        return; // resumed by addSendCredit
      }
      if (this.host.congested) {
        this.host.waitForDrain(this);
        return;
      }
      const n = Math.min(chunk.length - pending.offset, this.sendCredit, this.host.maxFramePayload);
      const payload = n === chunk.length ? chunk : chunk.subarray(pending.offset, pending.offset + n);
      this.host.sendData(this.takeOpenFlags(), this.id, payload);
      this.replay?.push(payload);
      this.sendCredit -= n;
      this.bytesSent += n;
      pending.offset += n;
    }
    this.pending = null;
    pending.callback();
  }

  // ---- Duplex implementation -------------------------------------------------

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.pending = { chunk, offset: 0, callback };
    this.flush();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.localFin = true;
    this.host.sendControl(TYPE_WINDOW_UPDATE, this.takeOpenFlags() | FLAG_FIN, this.id, 0);
    callback();
    this.maybeForget();
  }

  override _read(): void {
    this.wantsData = true;
    this.deliver();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // An error after both FINs still fails the stream: its reader or writer is gone, so no
    // fin-ack would ever settle it; a RST tells the peer to forget it too.
    const closedCleanly = this.localFin && this.remoteFin && !error;
    if (!closedCleanly && !this.resetByPeer && !this.forgotten) {
      this.host.sendControl(TYPE_WINDOW_UPDATE, this.takeOpenFlags() | FLAG_RST, this.id, errnoOf(error));
    }
    const pending = this.pending;
    this.pending = null;
    pending?.callback(error ?? new StreamError(`stream ${this.id} closed`, 'ERR_STREAM_DESTROYED'));
    // A cleanly closed resumable stream stays until the peer's fin-ack: a resume may still need it.
    if (!closedCleanly || !this.replay) this.forgetNow();
    callback(error);
  }

  // ---- internals -------------------------------------------------------------

  /** Out of credit with bytes to send: once per wait, the peer may answer by growing its window. */
  private reportWaiting(): void {
    if (this.waitReported) return;
    this.waitReported = true;
    this.host.sendControl(TYPE_WINDOW_UPDATE, 0, this.id, 0);
  }

  /**
   * The peer waited for credit. The window held it back, and doubles (up to maxWindow), when
   * over the last round trip or more about half a window or more arrived per round trip (the
   * window is near the bandwidth-delay product) and our reader takes bytes as they come
   * (flowing, not paused by a full destination). Otherwise the wait was the reader's, or the
   * machine's: on a busy loopback a larger window would only hold more bytes in memory.
   */
  private onPeerWaiting(): void {
    if (this.window >= this.maxWindow || this.remoteFin || this.destroyed) return;
    const now = performance.now();
    const rtt = this.host.rttMs;
    if (rtt <= 0 || now - this.rateSince < rtt) return;
    const perRoundTrip = ((this.bytesReceived - this.rateBytes) / (now - this.rateSince)) * rtt;
    this.rateSince = now;
    this.rateBytes = this.bytesReceived;
    if (perRoundTrip < this.window / 2 || this.readableFlowing !== true) return;
    const grown = Math.min(this.window * 2, this.maxWindow);
    const delta = grown - this.window;
    this.window = grown;
    this.recvCredit += delta;
    this.creditThreshold = creditThresholdOf(grown);
    this.host.sendControl(TYPE_WINDOW_UPDATE, FLAG_GROW, this.id, delta);
  }

  private sendOpenFlags(delta: number): void {
    this.host.sendControl(TYPE_WINDOW_UPDATE, this.takeOpenFlags(), this.id, delta);
  }

  private takeOpenFlags(): number {
    const flags = this.openFlags;
    this.openFlags = 0;
    return flags;
  }

  /**
   * Hands queued bytes to the reader while it asks for more. Bytes it has taken are credited
   * back to the peer in batches of 1/CREDIT_BATCHES of the window, not per read.
   */
  private deliver(): void {
    let taken = 0;
    while (this.wantsData && this.inbox.length > 0) {
      const chunk = this.inbox.shift()!;
      taken += chunk.length;
      this.wantsData = this.push(chunk);
    }
    this.inboxBytes -= taken;
    if (this.inbox.length === 0 && this.remoteFin) {
      this.endOfInput();
      return;
    }
    this.uncredited += taken;
    if (this.uncredited < this.creditThreshold || this.destroyed) return;
    this.recvCredit += this.uncredited;
    this.host.sendControl(TYPE_WINDOW_UPDATE, this.takeOpenFlags(), this.id, this.uncredited);
    this.uncredited = 0;
  }

  /** The reader has everything up to the FIN; with resumption, the peer is told (and credited). */
  private endOfInput(): void {
    if (this.eofDelivered) return;
    this.eofDelivered = true;
    this.push(null);
    if (!this.replay) return;
    this.recvCredit += this.uncredited;
    this.host.sendControl(TYPE_WINDOW_UPDATE, FLAG_ACK, this.id, this.uncredited);
    this.uncredited = 0;
  }

  private maybeForget(): void {
    if (!this.localFin || !this.remoteFin) return;
    if (this.replay && !(this.finAcked && this.eofDelivered)) return;
    this.forgetNow();
  }

  private forgetNow(): void {
    if (this.forgotten) return;
    this.forgotten = true;
    this.replay?.clear();
    this.host.forget(this);
  }
}

/** Credit goes back in batches of this much (see CREDIT_BATCHES). */
function creditThresholdOf(window: number): number {
  return Math.max(1, Math.floor(window / CREDIT_BATCHES));
}

/** What a peer's RST says, as the error the stream is destroyed with. */
function resetError(id: number, reason: number): StreamError {
  if (reason & RST_STREAM_LIMIT) {
    const limit = reason & ~RST_STREAM_LIMIT;
    return new StreamError(`stream ${id} was refused by the peer: its session already has ${limit} streams open, the limit (--max-streams ${limit})`, 'ESTREAMLIMIT');
  }
  const name = ERRNO_NAMES.get(reason);
  const why = name ? `: ${name} on the peer's side` : '';
  return new StreamError(`stream ${id} was reset by the peer${why}`, name ?? 'ECONNRESET');
}

/** The errno number a local socket error carries, sent in the RST so the peer can name it. */
function errnoOf(error: Error | null): number {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (!code || error instanceof StreamError) return 0;
  return osConstants.errno[code as keyof typeof osConstants.errno] ?? 0;
}
