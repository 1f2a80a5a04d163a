// Encoding and incremental decoding of yamux frame headers (see const.ts).
import { HEADER_LENGTH, PROTO_VERSION, TYPE_DATA, TYPE_GO_AWAY, TYPE_NAMES } from './const.js';
import { ProtocolError } from './errors.js';

/** `size` > 12 leaves room after the header for a payload the caller copies in. */
export function encodeHeader(type: number, flags: number, streamId: number, length: number, size = HEADER_LENGTH): Buffer {
  const header = Buffer.allocUnsafe(size);
  header[0] = PROTO_VERSION;
  header[1] = type;
  header.writeUInt16BE(flags, 2);
  header.writeUInt32BE(streamId, 4);
  header.writeUInt32BE(length, 8);
  return header;
}

/** What the decoder reports, in wire order. */
export interface FrameSink {
  /** A complete header. For Data frames, `length` payload bytes follow through onPayload, then onDataEnd. */
  onFrame(type: number, flags: number, streamId: number, length: number): void;
  /** A piece of the current Data frame's payload: a view of the input, not a copy. */
  onPayload(chunk: Buffer): void;
  /** The current Data frame's payload is complete (also called for an empty one). */
  onDataEnd(): void;
}

/**
 * Turns a byte stream, split at arbitrary points, into frames. Payloads are passed on
 * as they arrive, so a frame never has to be held whole in memory.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(HEADER_LENGTH);
  private headerFill = 0;
  private payloadLeft = 0;
  private inData = false;

  constructor(private readonly sink: FrameSink) {}

  /** Feeds bytes; throws ProtocolError on a malformed header. */
  push(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.inData) {
        const n = Math.min(this.payloadLeft, chunk.length - offset);
        this.payloadLeft -= n;
        this.sink.onPayload(offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n));
        offset += n;
        if (this.payloadLeft === 0) this.endData();
        continue;
      }
      if (this.headerFill === 0 && chunk.length - offset >= HEADER_LENGTH) {
        // Common case: the whole header is in this chunk; read it in place.
        this.onHeader(chunk, offset);
        offset += HEADER_LENGTH;
        continue;
      }
      const n = Math.min(HEADER_LENGTH - this.headerFill, chunk.length - offset);
      chunk.copy(this.header, this.headerFill, offset, offset + n);
      this.headerFill += n;
      offset += n;
      if (this.headerFill === HEADER_LENGTH) {
        this.headerFill = 0;
        this.onHeader(this.header, 0);
      }
    }
  }

  private onHeader(buf: Buffer, at: number): void {
    const version = buf[at];
    const type = buf[at + 1];
    if (version !== PROTO_VERSION) {
      throw new ProtocolError(`unsupported yamux version ${version} (this side speaks ${PROTO_VERSION})`);
    }
    if (type > TYPE_GO_AWAY) throw new ProtocolError(`unknown yamux frame type ${type}`);
    const flags = buf.readUInt16BE(at + 2);
    const streamId = buf.readUInt32BE(at + 4);
    const length = buf.readUInt32BE(at + 8);
    this.sink.onFrame(type, flags, streamId, length);
    if (type === TYPE_DATA) {
      this.inData = true;
      this.payloadLeft = length;
      if (length === 0) this.endData();
    }
  }

  private endData(): void {
    this.inData = false;
    this.sink.onDataEnd();
  }
}

export function describeFrame(type: number, flags: number, streamId: number, length: number): string {
  return `${TYPE_NAMES[type] ?? type} flags=0x${flags.toString(16)} stream=${streamId} length=${length}`;
}
