// The first message each side sends on a resumed connection: where each of its streams stands.
// Layout (big-endian), after a 4-byte length of the rest:
//   highestPeerStreamId (32) | count (32) | count x record
//   record: streamId (32) | flags (8) | window (32) | received (64) | limit (64)
// `received`: payload bytes received on the stream; the peer re-sends from there.
// `limit`: the offset the peer may send up to (window + all credit returned); it replaces the
// peer's send credit, so WindowUpdates lost with the old connection cost nothing.
import { ProtocolError } from './errors.js';

export const RESUME_FIN_RECEIVED = 0x1; // the peer's FIN arrived
export const RESUME_EOF_DELIVERED = 0x2; // ...and every byte before it was read: the peer may forget the stream

export interface StreamState {
  id: number;
  flags: number;
  window: number;
  received: number;
  limit: number;
}

export interface SessionState {
  /** Highest stream id the sender has seen the peer open: a higher one never reached it. */
  highestPeerStreamId: number;
  streams: StreamState[];
}

const HEAD = 8;
const RECORD = 4 + 1 + 4 + 8 + 8;
/** 4 bytes of length, then at most this many records: far above any stream limit. */
const MAX_RECORDS = 65_536;

export function encodeSessionState(state: SessionState): Buffer {
  const body = HEAD + state.streams.length * RECORD;
  const out = Buffer.allocUnsafe(4 + body);
  out.writeUInt32BE(body, 0);
  out.writeUInt32BE(state.highestPeerStreamId, 4);
  out.writeUInt32BE(state.streams.length, 8);
  let at = 4 + HEAD;
  for (const s of state.streams) {
    out.writeUInt32BE(s.id, at);
    out.writeUInt8(s.flags, at + 4);
    out.writeUInt32BE(s.window, at + 5);
    out.writeBigUInt64BE(BigInt(s.received), at + 9);
    out.writeBigUInt64BE(BigInt(s.limit), at + 17);
    at += RECORD;
  }
  return out;
}

/** Collects the message from a byte stream cut anywhere; gives it and the bytes after it. */
export class SessionStateReader {
  private chunks: Buffer[] = [];
  private held = 0;

  push(chunk: Buffer): { state: SessionState; rest: Buffer } | null {
    this.chunks.push(chunk);
    this.held += chunk.length;
    if (this.held < 4) return null;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.chunks = [all];
    const body = all.readUInt32BE(0);
    if (body < HEAD || (body - HEAD) % RECORD !== 0 || (body - HEAD) / RECORD > MAX_RECORDS) {
      throw new ProtocolError(`resume state message of ${body} bytes is malformed`);
    }
    if (all.length < 4 + body) return null;
    return { state: decode(all.subarray(4, 4 + body)), rest: all.subarray(4 + body) };
  }
}

function decode(body: Buffer): SessionState {
  const count = body.readUInt32BE(4);
  if (count * RECORD !== body.length - HEAD) throw new ProtocolError(`resume state message counts ${count} streams in ${body.length} bytes`);
  const streams: StreamState[] = [];
  for (let i = 0, at = HEAD; i < count; i++, at += RECORD) {
    const received = body.readBigUInt64BE(at + 9);
    const limit = body.readBigUInt64BE(at + 17);
    if (received > BigInt(Number.MAX_SAFE_INTEGER) || limit > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new ProtocolError(`resume state: stream offsets beyond 2^53`);
    }
    streams.push({ id: body.readUInt32BE(at), flags: body.readUInt8(at + 4), window: body.readUInt32BE(at + 5), received: Number(received), limit: Number(limit) });
  }
  return { highestPeerStreamId: body.readUInt32BE(0), streams };
}
