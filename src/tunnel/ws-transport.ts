// Carries the yamux byte stream in binary WebSocket messages; message boundaries mean nothing.
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { TRANSPORT_HIGH_WATER_MARK } from './const.js';
import { ProtocolError } from './errors.js';
import type { Transport, TransportHandlers } from './transport.js';

const SEND_OPTIONS = { binary: true, compress: false, fin: true } as const;
const CLOSE_GRACE_MS = 1_000;
const WS_CLOSE_NORMAL = 1000;
const WS_CLOSE_PROTOCOL_ERROR = 1002;

export class WsTransport implements Transport {
  private closing = false;
  private corked = false;
  /** Everything sent in one tick leaves in one writev: one TLS write and syscall, not one per frame. */
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly ws: WebSocket,
    /** The TCP/TLS socket under ws: its 'drain' is what resumes paused streams. */
    private readonly socket: Socket,
    private readonly highWaterMark = TRANSPORT_HIGH_WATER_MARK,
  ) {
    ws.binaryType = 'nodebuffer';
    socket.setNoDelay(true); // NBD is request/response: Nagle would add latency per request
  }

  get congested(): boolean {
    return this.ws.bufferedAmount > this.highWaterMark;
  }

  attach(handlers: TransportHandlers): void {
    this.ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        this.close(new ProtocolError('peer sent a text WebSocket message; only binary is allowed'));
        return;
      }
      handlers.data(data as Buffer); // binaryType 'nodebuffer': always a Buffer
    });
    this.socket.on('drain', handlers.drain);
    this.ws.on('error', (error) => handlers.close(error));
    this.ws.on('close', (code, reason) => {
      const text = reason.length > 0 ? `: ${reason.toString()}` : '';
      handlers.close(new Error(`WebSocket closed (code ${code}${text})`));
    });
  }

  send(chunk: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.ws.send(chunk, SEND_OPTIONS);
  }

  close(reason: Error): Promise<void> {
    const gone = new Promise<void>((resolve) => {
      if (this.ws.readyState === this.ws.CLOSED) resolve();
      else this.ws.once('close', () => resolve());
    });
    if (this.closing) return gone;
    this.closing = true;
    const code = reason instanceof ProtocolError ? WS_CLOSE_PROTOCOL_ERROR : WS_CLOSE_NORMAL;
    // A close reason is at most 123 bytes on the wire.
    this.ws.close(code, Buffer.from(reason.message).subarray(0, 123).toString());
    // A peer that does not answer the close handshake is not waited for.
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
    return gone;
  }
}
