// Bytes a stream has sent and the peer has not yet confirmed, kept to re-send after a
// reconnect. The peer confirms by crediting the window, so this never holds more than the
// peer's window; chunks are the payloads as sent, held by reference (never copied).
import { ProtocolError } from './errors.js';

/** Replay bytes held by every stream of a process: for the peak in logs and metrics. */
export const replayMemory = { bytes: 0, peak: 0 };

function account(delta: number): void {
  replayMemory.bytes += delta;
  if (replayMemory.bytes > replayMemory.peak) replayMemory.peak = replayMemory.bytes;
}

export class ReplayBuffer {
  private readonly chunks: Buffer[] = [];
  private head = 0;
  /** Stream offset of the first byte held. */
  private start = 0;
  private held = 0;

  /** Appends a payload just sent. */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.held += chunk.length;
    account(chunk.length);
  }

  /** The peer has everything before `offset`: drop it. */
  releaseTo(offset: number): void {
    let drop = offset - this.start;
    if (drop <= 0) return;
    if (drop > this.held) throw new ProtocolError(`peer confirmed ${offset} bytes of ${this.start + this.held} sent`);
    this.start = offset;
    this.held -= drop;
    account(-drop);
    while (drop > 0) {
      const chunk = this.chunks[this.head];
      if (chunk.length <= drop) {
        drop -= chunk.length;
        this.head++;
      } else {
        this.chunks[this.head] = chunk.subarray(drop);
        drop = 0;
      }
    }
    if (this.head > 64 && this.head * 2 > this.chunks.length) {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }

  /** What was sent from `offset` on, in order, to send again. */
  from(offset: number): Buffer[] {
    if (offset < this.start) throw new ProtocolError(`peer asks for bytes from ${offset}, after confirming up to ${this.start}`);
    this.releaseTo(offset);
    return this.chunks.slice(this.head);
  }

  clear(): void {
    account(-this.held);
    this.chunks.length = 0;
    this.head = 0;
    this.start += this.held;
    this.held = 0;
  }
}
