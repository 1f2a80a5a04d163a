// The destination's transport: WebSocket frames read and written on the upgraded TLS socket
// itself. Binary payload reaches the session as views of what TLS decrypted (no message is
// reassembled first: one copy and one allocation per byte fewer than through `ws`), and what
// the session sends leaves as one frame per chunk, everything of a tick in one writev.
import type { Socket } from 'node:net';
import { TRANSPORT_HIGH_WATER_MARK } from './const.js';
import { ProtocolError } from './errors.js';
import { corkPerTick } from './tick-cork.js';
import type { Transport, TransportHandlers } from './transport.js';
import {
  CLOSE_ABNORMAL,
  CLOSE_GRACE_MS,
  CLOSE_NO_STATUS,
  CLOSE_NORMAL,
  CLOSE_PROTOCOL_ERROR,
  OPCODE_BINARY,
  OPCODE_CLOSE,
  OPCODE_PING,
  OPCODE_PONG,
  WsFrameReader,
  encodeClosePayload,
  encodeFrameHeader,
} from './ws-frame.js';

export class ServerWsTransport implements Transport {
  private handlers: TransportHandlers | null = null;
  private readonly reader: WsFrameReader;
  /** We sent our close frame: nothing more is sent. */
  private closeSent = false;
  /** The peer's close frame arrived (or the stream broke): nothing more is read. */
  private closeReceived = false;
  /** What the closing line says: the peer's code and reason, or why we ended. */
  private closeCode = CLOSE_ABNORMAL;
  private closeReason = '';
  private failure: Error | null = null;
  private readonly cork: () => void;
  private readonly gone: Promise<void>;

  constructor(
    private readonly socket: Socket,
    /** Bytes read after the upgrade request, before this transport existed: the first frames. */
    private readonly head: Buffer,
    maxFrame: number,
    private readonly highWaterMark = TRANSPORT_HIGH_WATER_MARK,
  ) {
    this.reader = new WsFrameReader({ onBinary: (chunk) => this.handlers?.data(chunk), onControl: (opcode, payload) => this.onControl(opcode, payload) }, maxFrame);
    this.cork = corkPerTick(socket);
    socket.setTimeout(0);
    socket.setNoDelay(true); // NBD is request/response: Nagle would add latency per request
    socket.on('error', (error) => (this.failure ??= error));
    this.gone = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  get congested(): boolean {
    return this.socket.writableLength > this.highWaterMark;
  }

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
    this.socket.on('data', (chunk: Buffer) => this.receive(chunk));
    this.socket.on('drain', handlers.drain);
    this.socket.once('close', () => handlers.close(this.closedError()));
    if (this.head.length > 0) this.receive(this.head);
  }

  send(chunk: Buffer): void {
    if (this.closeSent) return;
    this.cork();
    this.socket.write(encodeFrameHeader(OPCODE_BINARY, chunk.length));
    this.socket.write(chunk);
  }

  /** Sends our close frame and settles once the socket is gone (the peer's answer, or the grace). */
  close(reason: Error): Promise<void> {
    if (!this.closeSent) {
      const code = reason instanceof ProtocolError ? CLOSE_PROTOCOL_ERROR : CLOSE_NORMAL;
      this.sendClose(code, reason.message);
      if (this.closeReceived) this.socket.end();
      // A peer that does not answer the close handshake is not waited for.
      setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
    }
    return this.gone;
  }

  private receive(chunk: Buffer): void {
    if (this.closeReceived) return;
    try {
      this.reader.push(chunk);
    } catch (error) {
      // A broken frame leaves nothing to read after it: say why, and end.
      this.closeReceived = true;
      this.failure = error as Error;
      this.close(error as Error);
    }
  }

  private onControl(opcode: number, payload: Buffer): void {
    if (opcode === OPCODE_PING) {
      if (!this.closeSent) this.socket.write(Buffer.concat([encodeFrameHeader(OPCODE_PONG, payload.length), payload]));
      return;
    }
    if (opcode !== OPCODE_CLOSE) return; // a pong: our keepalive is yamux's Ping, not this
    this.closeReceived = true;
    this.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : CLOSE_NO_STATUS;
    this.closeReason = payload.subarray(2).toString();
    // §5.5.1: answer with the same code, then the server closes the connection.
    if (!this.closeSent) this.sendClose(this.closeCode === CLOSE_NO_STATUS ? CLOSE_NORMAL : this.closeCode, '');
    this.socket.end();
  }

  private sendClose(code: number, reason: string): void {
    this.closeSent = true;
    const payload = encodeClosePayload(code, reason);
    this.socket.write(Buffer.concat([encodeFrameHeader(OPCODE_CLOSE, payload.length), payload]));
  }

  private closedError(): Error {
    if (this.failure instanceof ProtocolError) return this.failure;
    const text = this.closeReason.length > 0 ? `: ${this.closeReason}` : '';
    const cause = this.closeCode === CLOSE_ABNORMAL && this.failure ? ` after ${this.failure.message}` : '';
    return new Error(`WebSocket closed (code ${this.closeCode}${text})${cause}`);
  }
}
