// Wire format of the NBD protocol, named as in NetworkBlockDevice/nbd doc/proto.md.
// Every integer on the wire is big-endian. Section names below are proto.md headings.
//
// Handshake (server speaks first):
//   S: NBDMAGIC (64) | IHAVEOPT (64) | handshake flags (16)      -- 18-byte newstyle greeting
//   C: client flags (32)
//   C: IHAVEOPT (64) | option (32) | length (32) | data           -- 16-byte option header, repeated
//   S: NBD_REP_MAGIC (64) | option (32) | reply type (32) | length (32) | data   -- 20-byte reply header
//   (NBD_OPT_EXPORT_NAME alone is answered by: size (64) | transmission flags (16) | 124 zero bytes,
//    the zeroes omitted when both sides set NO_ZEROES)
// Transmission:
//   C: NBD_REQUEST_MAGIC (32) | command flags (16) | type (16) | cookie (64) | offset (64) | length (32)
//      -- 28 bytes, then `length` bytes of data for NBD_CMD_WRITE
//   S: NBD_SIMPLE_REPLY_MAGIC (32) | error (32) | cookie (64)
//      -- 16 bytes, then the request's `length` bytes of data for a successful NBD_CMD_READ
//   S: NBD_STRUCTURED_REPLY_MAGIC (32) | flags (16) | type (16) | cookie (64) | length (32)
//      -- 20 bytes, then `length` bytes of payload
// (The spec's older text calls the cookie "handle"; it is the same opaque 64-bit field.)

// "Newstyle negotiation", "Oldstyle negotiation", "Fixed newstyle negotiation": handshake magics
export const NBDMAGIC = 0x4e42444d41474943n; // ASCII 'NBDMAGIC', the INIT_PASSWD both styles start with
export const IHAVEOPT = 0x49484156454f5054n; // ASCII 'IHAVEOPT': newstyle greeting, and every option header
export const NBD_CLISERV_MAGIC = 0x00420281861253n; // oldstyle greeting's second magic (cliserv_magic)
export const NBD_REP_MAGIC = 0x3e889045565a9n; // magic of every fixed-newstyle option reply
/** The same magics as 32-bit halves, for reading without BigInt. */
export const NBDMAGIC_HI = 0x4e42444d;
export const NBDMAGIC_LO = 0x41474943;
export const IHAVEOPT_HI = 0x49484156;
export const IHAVEOPT_LO = 0x454f5054;
export const NBD_CLISERV_MAGIC_HI = 0x00004202;
export const NBD_CLISERV_MAGIC_LO = 0x81861253;
export const NBD_REP_MAGIC_HI = 0x0003e889;
export const NBD_REP_MAGIC_LO = 0x045565a9;

// Message sizes implied by the layouts above
export const GREETING_LENGTH = 18; // NBDMAGIC + IHAVEOPT + handshake flags
export const CLIENT_FLAGS_LENGTH = 4;
export const OPTION_HEADER_LENGTH = 16;
export const OPTION_REPLY_HEADER_LENGTH = 20;
export const EXPORT_NAME_REPLY_LENGTH = 10; // size + transmission flags
export const EXPORT_NAME_REPLY_ZEROES = 124;
export const REQUEST_HEADER_LENGTH = 28;
export const SIMPLE_REPLY_HEADER_LENGTH = 16;
export const STRUCTURED_REPLY_HEADER_LENGTH = 20;
export const EXTENDED_REQUEST_HEADER_LENGTH = 32;
export const EXTENDED_REPLY_HEADER_LENGTH = 32;

// "Request message", "Simple reply message", "Structured reply chunk message": transmission magics
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698; // formerly NBD_REPLY_MAGIC
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;
// Extended headers (NBD_OPT_EXTENDED_HEADERS; 64-bit lengths): recognised only to stop inspecting
export const NBD_EXTENDED_REQUEST_MAGIC = 0x21e41c71;
export const NBD_EXTENDED_REPLY_MAGIC = 0x6e8a278c;

// "Handshake flags" (16 bits, server, in the greeting)
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;

// "Client flags" (32 bits, the client's first message)
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// "Transmission flags" (16 bits, server, in NBD_INFO_EXPORT or the NBD_OPT_EXPORT_NAME reply)
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;
export const NBD_FLAG_BLOCK_STAT_PAYLOAD = 1 << 12; // extended headers only

// "Option types"
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_PEEK_EXPORT = 4; // withdrawn
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

// "Option reply types": errors have bit 31 set
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_POLICY = 0x80000002;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_PLATFORM = 0x80000004;
export const NBD_REP_ERR_TLS_REQD = 0x80000005;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_SHUTDOWN = 0x80000007;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;
export const NBD_REP_ERR_EXT_HEADER_REQD = 0x8000000a;

// "Option reply types", NBD_REP_INFO: information types (first 16 bits of the reply data)
export const NBD_INFO_EXPORT = 0; // + size (64) + transmission flags (16): reply length 12
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3; // + minimum, preferred, maximum (32 each): reply length 14
export const NBD_INFO_EXPORT_LENGTH = 12;
export const NBD_INFO_BLOCK_SIZE_LENGTH = 14;

// "Command flags" (16 bits, in every request)
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;
export const NBD_CMD_FLAG_PAYLOAD_LEN = 1 << 5; // extended headers only

// "Request types"
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;
export const NBD_CMD_RESIZE = 8; // experimental RESIZE extension

// "Structured reply flags"
export const NBD_REPLY_FLAG_DONE = 1 << 0;

// "Structured reply types": error chunk types have bit 15 set
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1; // offset (64) + data
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2; // offset (64) + hole size (32)
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5; // context id (32) + (length (32), status (32))*
export const NBD_REPLY_TYPE_BLOCK_STATUS_EXT = 6; // extended headers only
export const NBD_REPLY_TYPE_FLAG_ERROR = 1 << 15;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1; // error (32) + message length (16) + message
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2; // error (32) + message length (16) + message + offset (64)

// "Error values" (error field of a simple reply, first field of an error chunk)
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// "Conventions": strings (export names, context names, messages) MUST be no longer than 4096 bytes
export const NBD_MAX_STRING_SIZE = 4096;

/** Names for logs and snapshots. */
export const NBD_ERRNO_NAMES: Readonly<Record<number, string>> = {
  [NBD_EPERM]: 'EPERM',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'ENOMEM',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EOVERFLOW',
  [NBD_ENOTSUP]: 'ENOTSUP',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
};

export const NBD_OPT_NAMES: Readonly<Record<number, string>> = {
  [NBD_OPT_EXPORT_NAME]: 'NBD_OPT_EXPORT_NAME',
  [NBD_OPT_ABORT]: 'NBD_OPT_ABORT',
  [NBD_OPT_LIST]: 'NBD_OPT_LIST',
  [NBD_OPT_PEEK_EXPORT]: 'NBD_OPT_PEEK_EXPORT',
  [NBD_OPT_STARTTLS]: 'NBD_OPT_STARTTLS',
  [NBD_OPT_INFO]: 'NBD_OPT_INFO',
  [NBD_OPT_GO]: 'NBD_OPT_GO',
  [NBD_OPT_STRUCTURED_REPLY]: 'NBD_OPT_STRUCTURED_REPLY',
  [NBD_OPT_LIST_META_CONTEXT]: 'NBD_OPT_LIST_META_CONTEXT',
  [NBD_OPT_SET_META_CONTEXT]: 'NBD_OPT_SET_META_CONTEXT',
  [NBD_OPT_EXTENDED_HEADERS]: 'NBD_OPT_EXTENDED_HEADERS',
};

export const NBD_REP_NAMES: Readonly<Record<number, string>> = {
  [NBD_REP_ACK]: 'NBD_REP_ACK',
  [NBD_REP_SERVER]: 'NBD_REP_SERVER',
  [NBD_REP_INFO]: 'NBD_REP_INFO',
  [NBD_REP_META_CONTEXT]: 'NBD_REP_META_CONTEXT',
  [NBD_REP_ERR_UNSUP]: 'NBD_REP_ERR_UNSUP',
  [NBD_REP_ERR_POLICY]: 'NBD_REP_ERR_POLICY',
  [NBD_REP_ERR_INVALID]: 'NBD_REP_ERR_INVALID',
  [NBD_REP_ERR_PLATFORM]: 'NBD_REP_ERR_PLATFORM',
  [NBD_REP_ERR_TLS_REQD]: 'NBD_REP_ERR_TLS_REQD',
  [NBD_REP_ERR_UNKNOWN]: 'NBD_REP_ERR_UNKNOWN',
  [NBD_REP_ERR_SHUTDOWN]: 'NBD_REP_ERR_SHUTDOWN',
  [NBD_REP_ERR_BLOCK_SIZE_REQD]: 'NBD_REP_ERR_BLOCK_SIZE_REQD',
  [NBD_REP_ERR_TOO_BIG]: 'NBD_REP_ERR_TOO_BIG',
  [NBD_REP_ERR_EXT_HEADER_REQD]: 'NBD_REP_ERR_EXT_HEADER_REQD',
};

/** Request types without the NBD_CMD_ prefix, as used in stats; anything else is OTHER. */
export const NBD_CMD_NAMES = ['READ', 'WRITE', 'DISC', 'FLUSH', 'TRIM', 'CACHE', 'WRITE_ZEROES', 'BLOCK_STATUS'] as const;

export function optionName(option: number): string {
  return NBD_OPT_NAMES[option] ?? `option ${option}`;
}

export function replyTypeName(reply: number): string {
  return NBD_REP_NAMES[reply] ?? `reply type 0x${(reply >>> 0).toString(16)}`;
}

export function errnoName(error: number): string {
  return NBD_ERRNO_NAMES[error] ?? `errno ${error >>> 0}`;
}

export function commandName(type: number): string {
  return type < NBD_CMD_NAMES.length ? NBD_CMD_NAMES[type]! : `type ${type}`;
}
