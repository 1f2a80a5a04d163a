// Constructed NBD conversations for the inspector's tests, each with what it should yield.
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EIO,
  NBD_EPERM,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ERR_UNKNOWN,
} from '../../../src/nbd/constants.js';
import {
  ack,
  blockStatus,
  c,
  clientFlags,
  errorChunk,
  errorOffsetChunk,
  exportNameReply,
  goData,
  greeting,
  infoBlockSize,
  infoExport,
  metaContext,
  metaData,
  noneChunk,
  offsetData,
  offsetHole,
  option,
  optionError,
  request,
  s,
  simpleReply,
  type Script,
} from './nbd-wire.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const FLAGS = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN;
export const SIZE = 64 * MiB;

/** The handshake QEMU's client does: structured replies, base:allocation, NBD_OPT_GO. */
export function qemuLikeHandshake(name = 'vm1-vda', size = SIZE, flags = FLAGS): Script {
  return [
    s(greeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)),
    c(clientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES), option(NBD_OPT_STRUCTURED_REPLY)),
    s(ack(NBD_OPT_STRUCTURED_REPLY)),
    c(option(NBD_OPT_SET_META_CONTEXT, metaData(name, ['base:allocation', 'qemu:dirty-bitmap:bitmap0']))),
    s(
      metaContext(NBD_OPT_SET_META_CONTEXT, 0, 'base:allocation'),
      metaContext(NBD_OPT_SET_META_CONTEXT, 1, 'qemu:dirty-bitmap:bitmap0'),
      ack(NBD_OPT_SET_META_CONTEXT),
    ),
    c(option(NBD_OPT_GO, goData(name, [NBD_INFO_BLOCK_SIZE]))),
    s(infoBlockSize(NBD_OPT_GO, 1, 4096, 32 * MiB), infoExport(NBD_OPT_GO, size, flags), ack(NBD_OPT_GO)),
  ];
}

/**
 * A mirror-like session with structured replies: writes, zeroes, trim, flush, cache, block
 * status, reads answered out of order in several chunks, errors, and a disconnect.
 */
export function structuredSession(): Script {
  const data4k = Buffer.alloc(4 * KiB, 0xab);
  // Payload that looks like reply headers, to catch a parser that reads into data.
  const tricky = Buffer.concat([simpleReply(7, 0), simpleReply(8, 5)]);
  return [
    ...qemuLikeHandshake(),
    c(
      request(NBD_CMD_WRITE, 1, 0, 1 * MiB, { payload: Buffer.alloc(1 * MiB, 0x11) }),
      request(NBD_CMD_WRITE, 2, 1 * MiB, 4 * KiB, { payload: data4k }),
    ),
    c(request(NBD_CMD_WRITE_ZEROES, 3, 2 * MiB, 2 * MiB), request(NBD_CMD_TRIM, 4, 4 * MiB, 1 * MiB)),
    s(simpleReply(2), noneChunk(1)),
    s(simpleReply(3), simpleReply(4)),
    c(request(NBD_CMD_READ, 10, 0, 64 * KiB), request(NBD_CMD_READ, 11, 8 * MiB, 16 * KiB)),
    c(request(NBD_CMD_BLOCK_STATUS, 12, 0, 8 * MiB), request(NBD_CMD_CACHE, 13, 0, 1 * MiB)),
    // Out of order and interleaved: 11's chunks, then 12's, 10's first chunk, 13, 10's rest.
    s(offsetHole(11, 8 * MiB, 8 * KiB), offsetData(11, 8 * MiB + 8 * KiB, Buffer.concat([tricky, Buffer.alloc(8 * KiB - tricky.length)]))),
    s(
      blockStatus(12, 0, [[4 * MiB, 0], [4 * MiB, 3]]),
      offsetData(10, 0, Buffer.alloc(32 * KiB, 0x11)),
      blockStatus(12, 1, [[8 * MiB, 1]], true),
    ),
    s(noneChunk(11), simpleReply(13), offsetData(10, 32 * KiB, Buffer.alloc(32 * KiB, 0x11), true)),
    // A write refused with a plain error chunk, another with an offset, a flush.
    c(
      request(NBD_CMD_WRITE, 20, 16 * MiB, 8 * KiB, { payload: Buffer.alloc(8 * KiB) }),
      request(NBD_CMD_WRITE, 21, 20 * MiB, 8 * KiB, { payload: Buffer.alloc(8 * KiB) }),
    ),
    s(errorChunk(20, NBD_EIO, 'disk on fire'), errorOffsetChunk(21, NBD_EIO, 'bad sector', 20 * MiB + 4 * KiB), noneChunk(21)),
    c(request(NBD_CMD_FLUSH, 22, 0, 0), request(9, 23, 0, 0)),
    s(simpleReply(22), errorChunk(23, 22, 'unknown command')),
    c(request(NBD_CMD_DISC, 24, 0, 0)),
  ];
}

/** Simple replies only (no NBD_OPT_STRUCTURED_REPLY): read data length comes from the request. */
export function simpleSession(): Script {
  const readData = Buffer.concat([simpleReply(1, 0), Buffer.alloc(4 * KiB - 16, 0x5a)]); // looks like a reply
  return [
    s(greeting()),
    c(clientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES), option(NBD_OPT_GO, goData('disk'))),
    s(optionError(NBD_OPT_GO, NBD_REP_ERR_UNKNOWN, 'no such export')),
    c(option(NBD_OPT_GO, goData('disk0'))),
    s(infoExport(NBD_OPT_GO, 1 * MiB, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH), ack(NBD_OPT_GO)),
    c(request(NBD_CMD_READ, 1, 0, 4 * KiB), request(NBD_CMD_WRITE, 2, 4 * KiB, 512, { payload: Buffer.alloc(512, 1) })),
    s(simpleReply(1, 0, readData), simpleReply(2, NBD_EPERM)),
    c(request(NBD_CMD_READ, 3, 0, 4 * KiB)),
    s(simpleReply(3, NBD_EIO)), // an error: no data follows
    c(request(NBD_CMD_WRITE, 4, 0, 1 * MiB, { payload: Buffer.alloc(1 * MiB) })),
    s(simpleReply(4)),
    c(request(NBD_CMD_DISC, 5, 0, 0)),
  ];
}

/** NBD_OPT_EXPORT_NAME, with or without the 124 zero bytes. */
export function exportNameSession(noZeroes: boolean): Script {
  return [
    s(greeting(NBD_FLAG_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_NO_ZEROES : 0))),
    c(clientFlags(NBD_FLAG_C_FIXED_NEWSTYLE | (noZeroes ? NBD_FLAG_C_NO_ZEROES : 0)), option(NBD_OPT_EXPORT_NAME, Buffer.from('legacy'))),
    s(exportNameReply(2 * MiB, NBD_FLAG_HAS_FLAGS, !noZeroes)),
    c(request(NBD_CMD_WRITE, 1, 0, 2 * MiB, { payload: Buffer.alloc(2 * MiB) })),
    s(simpleReply(1)),
  ];
}
