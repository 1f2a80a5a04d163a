// Carries the yamux byte stream in binary WebSocket messages; message boundaries mean nothing.
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { TRANSPORT_HIGH_WATER_MARK } from './const.js';
import { ProtocolError } from './errors.js';
import { corkPerTick } from './tick-cork.js';
import type { Transport, TransportHandlers } from './transport.js';
import { CLOSE_GRACE_MS, CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, MAX_CLOSE_REASON } from './ws-frame.js';

const SEND_OPTIONS = { binary: true, compress: false, fin: true } as const;

export class WsTransport implements Transport {
  private closing = false;
  private readonly cork: () => void;

  constructor(
    private readonly ws: WebSocket,
    /** The TCP/TLS socket under ws: its 'drain' is what resumes paused streams. */
    private readonly socket: Socket,
    private readonly highWaterMark = TRANSPORT_HIGH_WATER_MARK,
  ) {
    ws.binaryType = 'nodebuffer';
    this.cork = corkPerTick(socket);
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
    this.cork();
    this.ws.send(chunk, SEND_OPTIONS);
  }

  close(reason: Error): Promise<void> {
    const gone = new Promise<void>((resolve) => {
      if (this.ws.readyState === this.ws.CLOSED) resolve();
      else this.ws.once('close', () => resolve());
    });
    if (this.closing) return gone;
    this.closing = true;
    const code = reason instanceof ProtocolError ? CLOSE_PROTOCOL_ERROR : CLOSE_NORMAL;
    this.ws.close(code, Buffer.from(reason.message).subarray(0, MAX_CLOSE_REASON).toString());
    // A peer that does not answer the close handshake is not waited for.
    setTimeout(() => this.ws.terminate(), CLOSE_GRACE_MS).unref();
    return gone;
  }
}
