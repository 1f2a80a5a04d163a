// WebSocket base framing (RFC 6455 §5.2), as much as the destination needs to read the source's
// binary messages straight off the TLS socket: their payload goes on as views of the bytes
// read, cut wherever TLS cut them, with no message reassembled first (the yamux decoder takes
// bytes cut anywhere). Frame layout:
//   FIN RSV1-3 opcode(4) | MASK len(7) | [len 16 or 64 bits] | [masking key, 4 bytes] | payload
import { ProtocolError } from './errors.js';

// §5.2 / §11.8 opcodes
export const OPCODE_CONTINUATION = 0x0;
export const OPCODE_TEXT = 0x1;
export const OPCODE_BINARY = 0x2;
export const OPCODE_CLOSE = 0x8;
export const OPCODE_PING = 0x9;
export const OPCODE_PONG = 0xa;

// §7.4.1 status codes
export const CLOSE_NORMAL = 1000;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_NO_STATUS = 1005; // never sent: the peer's close frame had no code
export const CLOSE_ABNORMAL = 1006; // never sent: the connection ended without a close frame

/** §5.5: control frames carry at most 125 bytes; a close reason after its 2-byte code, 123. */
export const MAX_CONTROL_PAYLOAD = 125;
export const MAX_CLOSE_REASON = 123;
/** A peer that does not answer the close handshake within this is not waited for. */
export const CLOSE_GRACE_MS = 1_000;

const FIN = 0x80;
const RSV = 0x70;
const MASK = 0x80;

/** The header of an unmasked frame (server to client, §5.1) carrying `length` payload bytes. */
export function encodeFrameHeader(opcode: number, length: number): Buffer {
  if (length < 126) return Buffer.from([FIN | opcode, length]);
  if (length < 0x10000) {
    const header = Buffer.allocUnsafe(4);
    header[0] = FIN | opcode;
    header[1] = 126;
    header.writeUInt16BE(length, 2);
    return header;
  }
  const header = Buffer.allocUnsafe(10);
  header[0] = FIN | opcode;
  header[1] = 127;
  header.writeUInt32BE(Math.floor(length / 0x1_0000_0000), 2);
  header.writeUInt32BE(length >>> 0, 6);
  return header;
}

/** A close frame's payload (§5.5.1): the code, then a UTF-8 reason cut to what fits. */
export function encodeClosePayload(code: number, reason: string): Buffer {
  const text = Buffer.from(reason).subarray(0, MAX_CLOSE_REASON);
  const payload = Buffer.allocUnsafe(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return payload;
}

export interface WsFrameSink {
  /** Payload bytes of binary messages, unmasked, in order: views of the input, not copies. */
  onBinary(chunk: Buffer): void;
  /** A whole close, ping or pong frame. */
  onControl(opcode: number, payload: Buffer): void;
}

/** Reads the frames a client sends (masked, §5.1), split at arbitrary points. */
export class WsFrameReader {
  /** The longest header: 2 bytes, 8 of extended length, 4 of masking key. */
  private readonly header = Buffer.alloc(14);
  private headerFill = 0;
  private headerLength = 2;
  private opcode = 0;
  private payloadLeft = 0;
  private readonly mask = Buffer.alloc(4);
  /** False for an all-zero masking key (what nbd-tunnel's source sends): nothing to undo. */
  private masked = false;
  private maskAt = 0;
  /** The payload of the control frame being read (they are small and must be whole). */
  private control: Buffer | null = null;
  private controlFill = 0;
  /** A fragmented binary message has begun and not ended. */
  private inMessage = false;

  constructor(
    private readonly sink: WsFrameSink,
    /** Larger frames are refused: the peer is not an nbd-tunnel source. */
    private readonly maxFrame: number,
  ) {}

  /** Feeds bytes; throws ProtocolError on a frame RFC 6455 or this tunnel does not allow. */
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.payloadLeft > 0) {
        const n = Math.min(this.payloadLeft, chunk.length - offset);
        const piece = offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n);
        offset += n;
        this.payloadLeft -= n;
        if (this.masked) this.unmask(piece);
        if (this.control) {
          piece.copy(this.control, this.controlFill);
          this.controlFill += n;
        } else {
          this.sink.onBinary(piece);
        }
        if (this.payloadLeft === 0) this.endFrame();
        continue;
      }
      const n = Math.min(this.headerLength - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + n);
      this.headerFill += n;
      offset += n;
      if (this.headerFill === 2) this.headerLength = headerLength(this.header[1]);
      if (this.headerFill === this.headerLength) this.onHeader();
    }
  }

  private onHeader(): void {
    const first = this.header[0];
    const second = this.header[1];
    if (first & RSV) throw new ProtocolError('WebSocket frame with RSV bits set, and no extension was agreed');
    if (!(second & MASK)) throw new ProtocolError('unmasked WebSocket frame from the client (RFC 6455 §5.1)');
    this.opcode = first & 0x0f;
    const length = this.payloadLength(second & 0x7f);
    this.checkOpcode(this.opcode, (first & FIN) !== 0, length);
    this.header.copy(this.mask, 0, this.headerLength - 4, this.headerLength);
    this.masked = this.mask.readUInt32BE(0) !== 0;
    this.maskAt = 0;
    this.payloadLeft = length;
    if (this.opcode >= OPCODE_CLOSE) {
      this.control = Buffer.allocUnsafe(length);
      this.controlFill = 0;
    }
    if (length === 0) this.endFrame();
  }

  private payloadLength(short: number): number {
    if (short < 126) return short;
    if (short === 126) return this.header.readUInt16BE(2);
    const high = this.header.readUInt32BE(2);
    const length = high * 0x1_0000_0000 + this.header.readUInt32BE(6);
    if (high > 0x1f_ffff) throw new ProtocolError('WebSocket frame length above 2^53');
    return length;
  }

  private checkOpcode(opcode: number, fin: boolean, length: number): void {
    switch (opcode) {
      case OPCODE_CLOSE:
      case OPCODE_PING:
      case OPCODE_PONG:
        if (!fin || length > MAX_CONTROL_PAYLOAD) throw new ProtocolError('fragmented or oversized WebSocket control frame (RFC 6455 §5.5)');
        return;
      case OPCODE_TEXT:
        throw new ProtocolError('peer sent a text WebSocket message; only binary is allowed');
      case OPCODE_BINARY:
      case OPCODE_CONTINUATION:
        if ((opcode === OPCODE_BINARY) === this.inMessage) {
          throw new ProtocolError(this.inMessage ? 'new WebSocket message before the last one ended' : 'WebSocket continuation frame without a message');
        }
        if (length > this.maxFrame) throw new ProtocolError(`WebSocket frame of ${length} bytes exceeds the limit of ${this.maxFrame}`);
        this.inMessage = !fin;
        return;
      default:
        throw new ProtocolError(`unknown WebSocket opcode ${opcode}`);
    }
  }

  /** XORs in place with the masking key, continuing where the last piece of the frame stopped. */
  private unmask(piece: Buffer): void {
    const mask = this.mask;
    let at = this.maskAt;
    for (let i = 0; i < piece.length; i++) {
      piece[i] ^= mask[at];
      at = (at + 1) & 3;
    }
    this.maskAt = at;
  }

  private endFrame(): void {
    this.headerFill = 0;
    this.headerLength = 2;
    const control = this.control;
    this.control = null;
    if (control) this.sink.onControl(this.opcode, control);
  }
}

/** The whole header's length, known from its second byte: extended length and masking key. */
function headerLength(second: number): number {
  const short = second & 0x7f;
  const extended = short === 126 ? 2 : short === 127 ? 8 : 0;
  return 2 + extended + (second & MASK ? 4 : 0);
}
