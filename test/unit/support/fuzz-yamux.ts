// Helpers for the yamux fuzz tests: a reference frame decoder, a synchronous recording
// transport, and generators of (mutated) frame sequences.
import fc from 'fast-check';
import {
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  HEADER_LENGTH,
  TYPE_DATA,
  TYPE_GO_AWAY,
} from '../../../src/tunnel/const.js';
import { FrameDecoder } from '../../../src/tunnel/frame.js';
import type { Transport, TransportHandlers } from '../../../src/tunnel/index.js';
import { mulberry32 } from '../../harness/prng.js';

/** 1 MiB of seeded random bytes; payloads are views of it (never copied per case). */
export const SOURCE: Buffer = (() => {
  const rand = mulberry32(0x5eed);
  const b = Buffer.allocUnsafe(1024 * 1024);
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(rand() * 256);
  return b;
})();

// ------------------------------------------------------------------ decoder events

export type DecoderEvent = ['F', number, number, number, number] | ['P', Buffer] | ['E'];

/** Records a sink's calls; consecutive payload pieces are merged (chunking must not matter). */
export class RecordingSink {
  readonly events: DecoderEvent[] = [];
  private pieces: Buffer[] = [];
  emptyPayloadCalls = 0;
  onFrame(type: number, flags: number, streamId: number, length: number): void {
    this.flushPieces();
    this.events.push(['F', type, flags, streamId, length]);
  }
  onPayload(chunk: Buffer): void {
    if (chunk.length === 0) this.emptyPayloadCalls++;
    this.pieces.push(Buffer.from(chunk)); // a view of the input: copy, the input may be reused
  }
  onDataEnd(): void {
    this.flushPieces();
    this.events.push(['E']);
  }
  finish(): DecoderEvent[] {
    this.flushPieces();
    return this.events;
  }
  private flushPieces(): void {
    if (this.pieces.length === 0) return;
    this.events.push(['P', Buffer.concat(this.pieces)]);
    this.pieces = [];
  }
}

/** What a correct decoder reports for `bytes` fed in one go; `error` if a header is malformed. */
export function referenceDecode(bytes: Buffer): { events: DecoderEvent[]; error: boolean } {
  const events: DecoderEvent[] = [];
  let o = 0;
  while (o + HEADER_LENGTH <= bytes.length) {
    const version = bytes[o]!;
    const type = bytes[o + 1]!;
    if (version !== 0 || type > TYPE_GO_AWAY) return { events, error: true };
    const length = bytes.readUInt32BE(o + 8);
    events.push(['F', type, bytes.readUInt16BE(o + 2), bytes.readUInt32BE(o + 4), length]);
    o += HEADER_LENGTH;
    if (type !== TYPE_DATA) continue;
    const take = Math.min(length, bytes.length - o);
    if (take > 0) events.push(['P', Buffer.from(bytes.subarray(o, o + take))]);
    o += take;
    if (take < length) break;
    events.push(['E']);
  }
  return { events, error: false };
}

// ------------------------------------------------------------------ transport

/** A synchronous Transport: records what the session sends and checks that it decodes. */
export class FuzzTransport implements Transport {
  handlers: TransportHandlers | null = null;
  sentBytes = 0;
  sentFrames = 0;
  /** Set if the session ever sent bytes that are not well-formed yamux frames. */
  sendError: Error | null = null;
  closeCalls = 0;
  congested = false;
  private readonly check = new FrameDecoder({
    onFrame: () => {
      this.sentFrames++;
    },
    onPayload: () => {},
    onDataEnd: () => {},
  });

  attach(handlers: TransportHandlers): void {
    this.handlers = handlers;
  }
  send(chunk: Buffer): void {
    this.sentBytes += chunk.length;
    if (this.sendError) return;
    try {
      this.check.push(chunk);
    } catch (error) {
      this.sendError = error as Error;
    }
  }
  close(_reason: Error): void {
    this.closeCalls++;
  }
  inject(bytes: Buffer): void {
    this.handlers!.data(bytes);
  }
}

// ------------------------------------------------------------------ frame generators

export interface FrameSpec {
  version: number;
  type: number;
  flags: number;
  streamId: number;
  length: number;
  /** Data frames: how many payload bytes actually follow (may be fewer than `length`). */
  sent: number;
}

export function header(version: number, type: number, flags: number, streamId: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_LENGTH);
  h[0] = version;
  h[1] = type;
  h.writeUInt16BE(flags & 0xffff, 2);
  h.writeUInt32BE(streamId >>> 0, 4);
  h.writeUInt32BE(length >>> 0, 8);
  return h;
}

/** The frames as wire pieces (headers and views of SOURCE), in order. */
export function encodeFrames(frames: readonly FrameSpec[]): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const f of frames) {
    out.push(header(f.version, f.type, f.flags, f.streamId, f.length));
    if (f.type === TYPE_DATA && f.sent > 0) {
      const n = Math.min(f.sent, SOURCE.length);
      if (at + n > SOURCE.length) at = 0;
      out.push(SOURCE.subarray(at, at + n));
      at += n;
    }
  }
  return out;
}

const WINDOW = 256 * 1024;

export const streamIdArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 0xffffffff, 0xfffffffe, 0x80000001) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) },
);

export const flagsArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0, FLAG_SYN, FLAG_ACK, FLAG_FIN, FLAG_RST) },
  { weight: 2, arbitrary: fc.constantFrom(FLAG_SYN | FLAG_FIN, FLAG_SYN | FLAG_RST, FLAG_ACK | FLAG_FIN, FLAG_FIN | FLAG_RST, FLAG_SYN | FLAG_ACK, 0xf) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffff }) },
);

export const lengthArb = fc.oneof(
  { weight: 5, arbitrary: fc.nat({ max: 300 }) },
  { weight: 2, arbitrary: fc.constantFrom(0, 1, WINDOW - 1, WINDOW, WINDOW + 1, 64 * 1024, 16 * 1024 * 1024, 0x7fffffff, 0xfffffffe, 0xffffffff) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffffffff }) },
);

export const frameArb: fc.Arbitrary<FrameSpec> = fc
  .record({
    version: fc.oneof({ weight: 30, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 255 }) }),
    type: fc.oneof({ weight: 40, arbitrary: fc.integer({ min: 0, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: 4, max: 255 }) }),
    flags: flagsArb,
    streamId: streamIdArb,
    length: lengthArb,
    short: fc.oneof({ weight: 6, arbitrary: fc.constant(-1) }, { weight: 3, arbitrary: fc.nat({ max: 300 }) }, { weight: 1, arbitrary: fc.nat({ max: 70_000 }) }),
  })
  .map(({ short, ...f }) => {
    // A Data frame carries its payload when it is small; a large one (or, now and then, a small
    // one) is followed by fewer bytes than announced, and the rest of the input is its payload.
    const full = f.type === TYPE_DATA ? f.length : 0;
    const sent = short < 0 ? (full <= 4096 ? full : Math.min(full, 300)) : Math.min(full, short);
    return { ...f, sent };
  });

/** SYN flood: `n` opens on the ids a peer of the given parity may use, then more frames. */
export function synFlood(n: number, odd: boolean, data: boolean): FrameSpec[] {
  const frames: FrameSpec[] = [];
  for (let i = 0; i < n; i++) {
    const id = odd ? 2 * i + 1 : 2 * i + 2;
    frames.push({ version: 0, type: data ? TYPE_DATA : 1, flags: FLAG_SYN, streamId: id, length: data ? 10 : 0, sent: data ? 10 : 0 });
  }
  return frames;
}

export type Mutation = { kind: 'flip' | 'set' | 'truncate' | 'insert' | 'dup' | 'u32' | 'delete'; pos: number; val: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom('flip', 'set', 'truncate', 'insert', 'dup', 'u32', 'delete'),
  pos: fc.nat(),
  val: fc.nat({ max: 0xffffffff }),
});

/** Applies byte-level mutations (bit flips, overwrites, truncation, insertion, duplication). */
export function mutate(bytes: Buffer, mutations: readonly Mutation[]): Buffer {
  let b = bytes;
  for (const m of mutations) {
    if (b.length === 0) {
      if (m.kind === 'insert') b = Buffer.from(SOURCE.subarray(m.val % 1000, (m.val % 1000) + 1 + (m.pos % 32)));
      continue;
    }
    const pos = m.pos % b.length;
    switch (m.kind) {
      case 'flip':
        b = Buffer.from(b);
        b[pos] = b[pos]! ^ (1 << (m.val % 8));
        break;
      case 'set':
        b = Buffer.from(b);
        b[pos] = m.val & 0xff;
        break;
      case 'truncate':
        b = b.subarray(0, pos);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, pos), b.subarray(Math.min(b.length, pos + 1 + (m.val % 16)))]);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, pos), SOURCE.subarray(m.val % 1000, (m.val % 1000) + 1 + (m.val % 24)), b.subarray(pos)]);
        break;
      case 'dup': {
        const end = Math.min(b.length, pos + 1 + (m.val % 64));
        b = Buffer.concat([b.subarray(0, end), b.subarray(pos, end), b.subarray(end)]);
        break;
      }
      case 'u32': {
        // A big-endian 32-bit field (a length or a stream id, when aligned on a header) set to
        // an edge value.
        const at = Math.min(pos - (pos % 4), b.length - 4);
        if (at < 0) break;
        b = Buffer.from(b);
        b.writeUInt32BE([0, 1, 0xffffffff, 0x7fffffff, 0x40001, m.val][m.val % 6]! >>> 0, at);
        break;
      }
    }
  }
  return b;
}

/** Cuts `bytes` into pieces whose sizes cycle through `sizes` (a size of 0 means "the rest"). */
export function cut(bytes: Buffer, sizes: readonly number[]): Buffer[] {
  if (sizes.length === 0) return bytes.length === 0 ? [] : [bytes];
  const out: Buffer[] = [];
  let at = 0;
  let k = 0;
  while (at < bytes.length) {
    const size = sizes[k++ % sizes.length]!;
    const end = size === 0 ? bytes.length : Math.min(bytes.length, at + size);
    out.push(bytes.subarray(at, end));
    at = end;
  }
  return out;
}

export const cutSizesArb = fc.array(
  fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 16 }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 70_000 }) }, { weight: 1, arbitrary: fc.constant(0) }),
  { maxLength: 8 },
);
