// One yamux stream: a Duplex whose writes spend the peer's credit and whose reads
// return credit to the peer only when the consumer has taken the bytes.
import { Duplex } from 'node:stream';
import { FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN, INITIAL_STREAM_WINDOW, LOCAL_HIGH_WATER_MARK, TYPE_WINDOW_UPDATE } from './const.js';
import { ProtocolError, StreamError } from './errors.js';

/** What a stream needs from its session; kept narrow so the two lifecycles stay apart. */
export interface StreamHost {
  readonly maxFramePayload: number;
  /** True while the transport holds more than its high-water mark. */
  readonly congested: boolean;
  sendControl(type: number, flags: number, streamId: number, length: number): void;
  sendData(flags: number, streamId: number, payload: Buffer): void;
  /** Calls stream.flush() once the transport drains. */
  waitForDrain(stream: Stream): void;
  /** The stream is fully closed or reset: drop it from the session. */
  forget(stream: Stream): void;
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
  private readonly creditThreshold: number;
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

  constructor(
    private readonly host: StreamHost,
    readonly id: number,
    opening: boolean,
    window: number,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: LOCAL_HIGH_WATER_MARK });
    this.recvCredit = window;
    this.creditThreshold = Math.max(1, Math.floor(window / 4));
    this.openFlags = opening ? FLAG_SYN : FLAG_ACK;
    // Announce the window at once: the peer may write as soon as it sees SYN/ACK.
    this.sendOpenFlags(window - INITIAL_STREAM_WINDOW);
  }

  /** Bytes received and not yet read by the consumer (inbox and the Readable's buffer). */
  get bufferedBytes(): number {
    return this.inboxBytes + this.readableLength;
  }

  // ---- called by the session -------------------------------------------------

  /** A WindowUpdate (or the ACK's) grants more credit. */
  addSendCredit(delta: number): void {
    if (this.sendCredit + delta > 0xffffffff) throw new ProtocolError(`stream ${this.id}: send window overflow`);
    this.sendCredit += delta;
    if (delta > 0) this.flush();
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
    if (this.inbox.length === 0) this.push(null);
    this.maybeForget();
  }

  onRemoteReset(): void {
    this.resetByPeer = true;
    this.destroy(new StreamError(`stream ${this.id} was reset by the peer`, 'ECONNRESET'));
  }

  /** Sends as much of the pending write as credit and the transport allow. */
  flush(): void {
    const pending = this.pending;
    if (!pending) return;
    const { chunk } = pending;
    while (pending.offset < chunk.length) {
      if (this.sendCredit === 0) return; // resumed by addSendCredit
      if (this.host.congested) {
        this.host.waitForDrain(this);
        return;
      }
      const n = Math.min(chunk.length - pending.offset, this.sendCredit, this.host.maxFramePayload);
      const payload = n === chunk.length ? chunk : chunk.subarray(pending.offset, pending.offset + n);
      this.host.sendData(this.takeOpenFlags(), this.id, payload);
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
    const closedCleanly = this.localFin && this.remoteFin;
    if (!closedCleanly && !this.resetByPeer && !this.forgotten) {
      this.host.sendControl(TYPE_WINDOW_UPDATE, this.takeOpenFlags() | FLAG_RST, this.id, 0);
    }
    const pending = this.pending;
    this.pending = null;
    pending?.callback(error ?? new StreamError(`stream ${this.id} closed`, 'ERR_STREAM_DESTROYED'));
    this.forgetNow();
    callback(error);
  }

  // ---- internals -------------------------------------------------------------

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
   * back to the peer in batches of a quarter window, not per read.
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
      this.push(null);
      return;
    }
    this.uncredited += taken;
    if (this.uncredited < this.creditThreshold || this.destroyed) return;
    this.recvCredit += this.uncredited;
    this.host.sendControl(TYPE_WINDOW_UPDATE, this.takeOpenFlags(), this.id, this.uncredited);
    this.uncredited = 0;
  }

  private maybeForget(): void {
    if (this.localFin && this.remoteFin) this.forgetNow();
  }

  private forgetNow(): void {
    if (this.forgotten) return;
    this.forgotten = true;
    this.host.forget(this);
  }
}
