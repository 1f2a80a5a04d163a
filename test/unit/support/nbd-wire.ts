// A small NBD encoder for tests (layouts as in src/nbd/constants.ts), and ways to feed an
// inspector a two-way conversation cut into chunks in different ways.
import {
  IHAVEOPT,
  NBDMAGIC,
  NBD_CLISERV_MAGIC,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_FLAG_DONE,
  NBD_REP_ACK,
  NBD_REP_INFO,
  NBD_REP_MAGIC,
  NBD_REP_META_CONTEXT,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
} from '../../../src/nbd/constants.js';
import type { NbdInspector } from '../../../src/nbd/index.js';

export type Direction = 'toDest' | 'toSource';
/** One piece of a conversation, in the order it passed. */
export interface Segment {
  dir: Direction;
  data: Buffer;
}
export type Script = Segment[];

export const c = (...data: Buffer[]): Segment => ({ dir: 'toDest', data: Buffer.concat(data) });
export const s = (...data: Buffer[]): Segment => ({ dir: 'toSource', data: Buffer.concat(data) });

function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}
function u64(v: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
}
function str(v: string): Buffer {
  return Buffer.from(v, 'utf8');
}

// ------------------------------------------------------------------ handshake

export function greeting(flags = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES): Buffer {
  return Buffer.concat([u64(NBDMAGIC), u64(IHAVEOPT), u16(flags)]);
}

export function oldstyleGreeting(size: number, flags: number): Buffer {
  return Buffer.concat([u64(NBDMAGIC), u64(NBD_CLISERV_MAGIC), u64(size), u32(flags), Buffer.alloc(124)]);
}

export function clientFlags(flags: number): Buffer {
  return u32(flags);
}

export function option(opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u64(IHAVEOPT), u32(opt), u32(data.length), data]);
}

/** Data of NBD_OPT_GO / NBD_OPT_INFO. */
export function goData(name: string, infos: number[] = []): Buffer {
  const n = str(name);
  return Buffer.concat([u32(n.length), n, u16(infos.length), ...infos.map(u16)]);
}

/** Data of NBD_OPT_SET_META_CONTEXT / NBD_OPT_LIST_META_CONTEXT. */
export function metaData(name: string, queries: string[]): Buffer {
  const n = str(name);
  return Buffer.concat([u32(n.length), n, u32(queries.length), ...queries.flatMap((q) => [u32(str(q).length), str(q)])]);
}

export function optionReply(opt: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u64(NBD_REP_MAGIC), u32(opt), u32(type), u32(data.length), data]);
}

export function ack(opt: number): Buffer {
  return optionReply(opt, NBD_REP_ACK);
}

export function infoExport(opt: number, size: number | bigint, flags: number): Buffer {
  return optionReply(opt, NBD_REP_INFO, Buffer.concat([u16(NBD_INFO_EXPORT), u64(size), u16(flags)]));
}

export function infoBlockSize(opt: number, min: number, preferred: number, max: number): Buffer {
  return optionReply(opt, NBD_REP_INFO, Buffer.concat([u16(NBD_INFO_BLOCK_SIZE), u32(min), u32(preferred), u32(max)]));
}

export function metaContext(opt: number, id: number, name: string): Buffer {
  return optionReply(opt, NBD_REP_META_CONTEXT, Buffer.concat([u32(id), str(name)]));
}

export function optionError(opt: number, type: number, message = ''): Buffer {
  return optionReply(opt, type, str(message));
}

export function exportNameReply(size: number, flags: number, zeroes: boolean): Buffer {
  return Buffer.concat([u64(size), u16(flags), zeroes ? Buffer.alloc(124) : Buffer.alloc(0)]);
}

// ------------------------------------------------------------------ transmission

/** A request header, followed by `payload` (for a write: `length` bytes, zero-filled unless given). */
export function request(
  type: number,
  cookie: number | bigint,
  offset: number | bigint,
  length: number,
  opts: { flags?: number; payload?: Buffer } = {},
): Buffer {
  const header = Buffer.concat([u32(NBD_REQUEST_MAGIC), u16(opts.flags ?? 0), u16(type), u64(cookie), u64(offset), u32(length)]);
  return opts.payload === undefined ? header : Buffer.concat([header, opts.payload]);
}

export function simpleReply(cookie: number | bigint, error = 0, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u32(NBD_SIMPLE_REPLY_MAGIC), u32(error), u64(cookie), data]);
}

export function chunk(cookie: number | bigint, type: number, payload: Buffer, done: boolean, flags = 0): Buffer {
  return Buffer.concat([
    u32(NBD_STRUCTURED_REPLY_MAGIC),
    u16(flags | (done ? NBD_REPLY_FLAG_DONE : 0)),
    u16(type),
    u64(cookie),
    u32(payload.length),
    payload,
  ]);
}

export function offsetData(cookie: number | bigint, offset: number, data: Buffer, done = false): Buffer {
  return chunk(cookie, NBD_REPLY_TYPE_OFFSET_DATA, Buffer.concat([u64(offset), data]), done);
}

export function offsetHole(cookie: number | bigint, offset: number, size: number, done = false): Buffer {
  return chunk(cookie, NBD_REPLY_TYPE_OFFSET_HOLE, Buffer.concat([u64(offset), u32(size)]), done);
}

export function blockStatus(cookie: number | bigint, contextId: number, extents: [number, number][], done = false): Buffer {
  return chunk(cookie, NBD_REPLY_TYPE_BLOCK_STATUS, Buffer.concat([u32(contextId), ...extents.flatMap(([l, f]) => [u32(l), u32(f)])]), done);
}

export function noneChunk(cookie: number | bigint): Buffer {
  return chunk(cookie, NBD_REPLY_TYPE_NONE, Buffer.alloc(0), true);
}

export function errorChunk(cookie: number | bigint, error: number, message: string, done = true): Buffer {
  const m = str(message);
  return chunk(cookie, NBD_REPLY_TYPE_ERROR, Buffer.concat([u32(error), u16(m.length), m]), done);
}

export function errorOffsetChunk(cookie: number | bigint, error: number, message: string, offset: number, done = false): Buffer {
  const m = str(message);
  return chunk(cookie, NBD_REPLY_TYPE_ERROR_OFFSET, Buffer.concat([u32(error), u16(m.length), m, u64(offset)]), done);
}

// ------------------------------------------------------------------ feeding

/** Feeds each segment as one chunk. */
export function feed(inspector: NbdInspector, script: Script): void {
  for (const { dir, data } of script) inspector[dir](data);
}

/**
 * The script with consecutive segments of the same direction merged into runs: any way of
 * cutting a run into chunks is a way the same conversation could have passed.
 */
export function runs(script: Script): Script {
  const out: Script = [];
  for (const seg of script) {
    const last = out[out.length - 1];
    if (last !== undefined && last.dir === seg.dir) last.data = Buffer.concat([last.data, seg.data]);
    else out.push({ dir: seg.dir, data: seg.data });
  }
  return out;
}

/** Feeds the runs of `script`, cutting the whole at the global byte positions in `cuts` (sorted). */
export function feedCut(inspector: NbdInspector, script: Script, cuts: readonly number[]): void {
  let base = 0;
  let k = 0;
  for (const { dir, data } of runs(script)) {
    let from = 0;
    while (k < cuts.length && cuts[k]! < base + data.length) {
      const at = cuts[k]! - base;
      if (at > from) {
        inspector[dir](data.subarray(from, at));
        from = at;
      }
      k++;
    }
    if (from < data.length) inspector[dir](data.subarray(from));
    base += data.length;
  }
}

/** Feeds every byte as its own chunk. */
export function feedBytes(inspector: NbdInspector, script: Script): void {
  for (const { dir, data } of script) for (let i = 0; i < data.length; i++) inspector[dir](data.subarray(i, i + 1));
}

/** Total bytes of a script. */
export function scriptLength(script: Script): number {
  return script.reduce((n, seg) => n + seg.data.length, 0);
}

/** Random cut positions: pieces of 1 byte to `maxPiece` bytes, small ones favoured. */
export function randomCuts(total: number, rand: () => number, maxPiece: number): number[] {
  const cuts: number[] = [];
  let at = 0;
  for (;;) {
    const r = rand();
    const piece = 1 + Math.floor(r * r * r * maxPiece);
    at += piece;
    if (at >= total) return cuts;
    cuts.push(at);
  }
}
