// The passive NBD inspector: follows one stream's NBD conversation from copies of its bytes.
//
// The data path hands it every chunk that passes, client→server through toDest() and
// server→client through toSource(), in the order they pass. It reads headers only, never
// alters, keeps or copies the chunks (a header split across chunks is assembled in a 32-byte
// scratch buffer; payloads are skipped by arithmetic), and never throws: whatever it cannot
// follow makes it stop inspecting that stream, once, with a reason, while the bytes go on.
//
// The two directions depend on each other only at a few points, all of which respect the
// protocol's causality (a party answers what it has already received), so feeding each
// direction in the order the bytes passed is enough: the server's greeting precedes any client
// byte, an option precedes its reply, a request precedes its reply.
import {
  CLIENT_FLAGS_LENGTH,
  EXPORT_NAME_REPLY_LENGTH,
  EXPORT_NAME_REPLY_ZEROES,
  GREETING_LENGTH,
  IHAVEOPT_HI,
  IHAVEOPT_LO,
  NBDMAGIC_HI,
  NBDMAGIC_LO,
  NBD_CLISERV_MAGIC_HI,
  NBD_CLISERV_MAGIC_LO,
  NBD_CMD_DISC,
  NBD_CMD_NAMES,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EXTENDED_REPLY_MAGIC,
  NBD_EXTENDED_REQUEST_MAGIC,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_BLOCK_SIZE_LENGTH,
  NBD_INFO_EXPORT,
  NBD_INFO_EXPORT_LENGTH,
  NBD_MAX_STRING_SIZE,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_EXTENDED_HEADERS,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_FLAG_ERROR,
  NBD_REP_ACK,
  NBD_REP_FLAG_ERROR,
  NBD_REP_INFO,
  NBD_REP_MAGIC_HI,
  NBD_REP_MAGIC_LO,
  NBD_REP_META_CONTEXT,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  OPTION_HEADER_LENGTH,
  OPTION_REPLY_HEADER_LENGTH,
  REQUEST_HEADER_LENGTH,
  SIMPLE_REPLY_HEADER_LENGTH,
  STRUCTURED_REPLY_HEADER_LENGTH,
  commandName,
  errnoName,
  optionName,
  replyTypeName,
} from './constants.js';
import { Coverage } from './coverage.js';
import { InFlight } from './in-flight.js';
import { RateWindow } from './rate.js';

export type NbdCommandName = (typeof NBD_CMD_NAMES)[number] | 'OTHER';

/** An error reply to a request (simple reply error, or an error chunk of a structured reply). */
export interface NbdRequestError {
  /** The request's type ('WRITE', ...; 'type N' for an unknown one), null if its cookie was not in flight. */
  type: string | null;
  offset: number | null;
  length: number | null;
  /** The NBD error value's name: 'EPERM', 'EIO', ... ('errno N' for a value the spec does not define). */
  errno: string;
  code: number;
  /** The message of an error chunk, if any (at most 4096 bytes of it). */
  message: string | null;
  /** The offset of an NBD_REPLY_TYPE_ERROR_OFFSET chunk. */
  errorOffset: number | null;
}

/** An error reply to an option during the handshake (e.g. NBD_REP_ERR_UNKNOWN to NBD_OPT_GO). */
export interface NbdOptionError {
  option: string;
  reply: string;
  message: string | null;
}

export interface NbdMetaContext {
  id: number;
  name: string;
}

/** What was agreed when transmission starts. */
export interface NbdNegotiation {
  exportName: string | null;
  exportSize: number | null;
  transmissionFlags: number | null;
  structuredReplies: boolean;
  metaContexts: NbdMetaContext[];
}

/**
 * Event callbacks; each is optional and called synchronously from toDest()/toSource().
 * They must not throw (an exception from one is caught and dropped, so the data path is safe).
 */
export interface NbdInspectorListener {
  /** Transmission starts (after NBD_REP_ACK to NBD_OPT_GO, or the NBD_OPT_EXPORT_NAME reply). */
  negotiated?(info: NbdNegotiation): void;
  /** The server answered a request with an error. */
  error?(error: NbdRequestError): void;
  /** The server answered an option with an NBD_REP_ERR_* reply. */
  optionError?(error: NbdOptionError): void;
  /** Inspection ended for good (once): `notNbd` is true when the stream never looked like NBD. */
  stopped?(reason: string, notNbd: boolean): void;
  /** The client ended the session: NBD_CMD_DISC, or NBD_OPT_ABORT during the handshake. */
  disconnect?(via: 'NBD_CMD_DISC' | 'NBD_OPT_ABORT'): void;
}

export interface NbdInspectorOptions {
  listener?: NbdInspectorListener;
  /** Monotonic clock in milliseconds, for the throughput window (default performance.now). */
  now?: () => number;
  /** Requests in flight beyond which the inspector gives up (default 1024; QEMU keeps 16). */
  maxInFlight?: number;
  /** Error replies kept in the snapshot, newest last (default 32; all are counted). */
  recentErrors?: number;
  /** Width of the throughput window in ms (default 5000). */
  rateWindowMs?: number;
}

export interface NbdStreamStats {
  /** 'active' while following the stream; 'stopped' (see stopReason) or 'not-nbd' for good. */
  inspection: 'active' | 'stopped' | 'not-nbd';
  stopReason: string | null;
  /** Where the conversation is: 'closed' after NBD_CMD_DISC or NBD_OPT_ABORT. */
  phase: 'greeting' | 'handshake' | 'transmission' | 'closed';
  handshakeFlags: number | null;
  clientFlags: number | null;
  /** Options the client sent, in order (the first 32). */
  options: string[];
  optionErrors: NbdOptionError[];
  exportName: string | null;
  /** In bytes; exact up to 2^53 (8 PiB), like every offset and length here. */
  exportSize: number | null;
  transmissionFlags: number | null;
  blockSize: { minimum: number; preferred: number; maximum: number } | null;
  structuredReplies: boolean;
  /** Contexts selected by the last successful NBD_OPT_SET_META_CONTEXT, with the server's ids. */
  metaContexts: NbdMetaContext[];
  /** Requests the client sent, by type; bytes are the requests' lengths (DISC and FLUSH: 0). */
  requests: Record<NbdCommandName, { count: number; bytes: number }>;
  inFlight: number;
  replies: { simple: number; structuredChunks: number; unmatched: number };
  errors: { total: number; recent: NbdRequestError[] };
  /** Share of the export written at least once (successful WRITE, WRITE_ZEROES, TRIM); see coverage.ts. */
  coverage: { bytes: number; ratio: number; granularity: number } | null;
  /** WRITE + WRITE_ZEROES request lengths per second over the last rateWindowMs. */
  writeBytesPerSecond: number;
  /** Every byte seen, including after inspection stopped. */
  bytesToDest: number;
  bytesToSource: number;
}

const ACTIVE = 0;
const STOPPED = 1;
const NOT_NBD = 2;

const PHASE_GREETING = 0;
const PHASE_HANDSHAKE = 1;
const PHASE_TRANSMISSION = 2;
const PHASE_CLOSED = 3;
const PHASE_NAMES = ['greeting', 'handshake', 'transmission', 'closed'] as const;

// What the next bytes of each direction are (the "unit" being assembled, `need` bytes long).
const C_FLAGS = 0; // client flags
const C_OPTION = 1; // option header (or, right after NBD_OPT_GO / EXPORT_NAME, possibly a request)
const C_OPTION_DATA = 2; // the part of an option's data we read (the export name)
const C_REQUEST = 3; // request header
const C_CLOSED = 4; // after NBD_CMD_DISC: nothing may follow

const S_GREETING = 0;
const S_OPTION_REPLY = 1; // fixed-newstyle option reply header
const S_OPTION_REPLY_DATA = 2; // the part of a reply's data we read
const S_EXPORT_NAME_REPLY = 3; // size + transmission flags
const S_REPLY = 4; // simple reply header, extended to a structured one by its magic
const S_ERROR_CHUNK = 5; // the payload of an error chunk

const SCRATCH_LENGTH = 32;
/** Option data and replies we parse: names and messages are at most 4096 bytes. */
const SERVER_CAPTURE_MAX = NBD_MAX_STRING_SIZE + 32;
/** Option data we parse (NBD_OPT_GO, NBD_OPT_EXPORT_NAME): an export name and a little more. */
const CLIENT_CAPTURE_MAX = NBD_MAX_STRING_SIZE + 8;
const MAX_META_CONTEXTS = 64;
const MAX_OPTIONS_KEPT = 32;
const MAX_OPTION_ERRORS_KEPT = 16;
const OTHER = NBD_CMD_NAMES.length; // index of 'OTHER' in the per-type counters
const TWO_32 = 4294967296;
const NBDMAGIC_BYTES = Buffer.from('NBDMAGIC', 'latin1');

/**
 * Follows one stream. Feed it every chunk, in the order they pass: client → server with
 * toDest(), server → client with toSource(); read its state with snapshot() (which allocates,
 * so call it when logging, not per chunk). Chunks are only read during the call.
 */
export class NbdInspector {
  private readonly listener: NbdInspectorListener | undefined;
  private readonly now: () => number;
  private readonly maxInFlight: number;
  private readonly recentErrorLimit: number;
  private readonly rateWindowMs: number;

  private status = ACTIVE;
  private stopReason: string | null = null;
  private phase = PHASE_GREETING;
  private destBytes = 0;
  private sourceBytes = 0;

  // Client → server (toDest)
  private cState = C_FLAGS;
  private cNeed = CLIENT_FLAGS_LENGTH;
  private cFill = 0;
  private cSkip = 0;
  private readonly cScratch = Buffer.alloc(SCRATCH_LENGTH);
  private cCapture: Buffer | null = null;
  private cOption = 0; // option whose data is being read
  private cOptionRest = 0; // option data beyond what is read

  // Server → client (toSource)
  private sState = S_GREETING;
  private sNeed = GREETING_LENGTH;
  private sFill = 0;
  private sSkip = 0;
  private startAfterSkip = false; // transmission begins once sSkip bytes have passed
  private readonly sScratch = Buffer.alloc(SCRATCH_LENGTH);
  private sCapture: Buffer | null = null;
  private sOption = 0; // option and reply type whose data is being read
  private sReply = 0;
  private sReplyLength = 0;
  private sChunkType = 0; // error chunk being read
  private sChunkDone = false;
  private sCookieHi = 0;
  private sCookieLo = 0;

  // Handshake
  private handshakeFlags: number | null = null;
  private clientFlags: number | null = null;
  private pendingOption = -1; // the option awaiting its final reply
  private readonly options: string[] = [];
  private readonly optionErrors: NbdOptionError[] = [];
  private goExportName: string | null = null; // from the client's NBD_OPT_GO / EXPORT_NAME
  private infoSize: number | null = null; // from NBD_INFO_EXPORT in the current option's replies
  private infoFlags: number | null = null;
  private pendingMeta: NbdMetaContext[] = [];
  private blockSize: NbdStreamStats['blockSize'] = null;

  // Negotiated
  private exportName: string | null = null;
  private exportSize: number | null = null;
  private transmissionFlags: number | null = null;
  private structuredReplies = false;
  private metaContexts: NbdMetaContext[] = [];

  // Transmission
  private inFlight: InFlight | null = null;
  private coverage: Coverage | null = null;
  private rate: RateWindow | null = null;
  private readonly requestCounts = new Float64Array(OTHER + 1);
  private readonly requestBytes = new Float64Array(OTHER + 1);
  private simpleReplies = 0;
  private structuredChunks = 0;
  private unmatchedReplies = 0;
  private errorsTotal = 0;
  private readonly recentErrors: NbdRequestError[] = [];

  constructor(options: NbdInspectorOptions = {}) {
    this.listener = options.listener;
    this.now = options.now ?? (() => performance.now());
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 1024);
    this.recentErrorLimit = Math.max(0, options.recentErrors ?? 32);
    this.rateWindowMs = Math.max(1, options.rateWindowMs ?? 5000);
  }

  /** Still following the stream. */
  get inspecting(): boolean {
    return this.status === ACTIVE;
  }

  /**
   * Bytes copied out of the chunks and held for the unit being assembled (a header split across
   * chunks, or the part of an option or reply that is parsed). Payloads are skipped by
   * arithmetic, so this never exceeds a few KiB whatever the lengths; tests check it.
   */
  get bufferedBytes(): number {
    return this.cFill + this.sFill;
  }

  /** Bytes seen client → server, including after inspection stopped. */
  get bytesToDest(): number {
    return this.destBytes;
  }

  /** Bytes seen server → client, including after inspection stopped. */
  get bytesToSource(): number {
    return this.sourceBytes;
  }

  /** Bytes going client → server (QEMU's NBD client towards the destination's NBD server). */
  toDest(chunk: Buffer): void {
    const length = chunk.length;
    this.destBytes += length;
    if (this.status !== ACTIVE || length === 0) return;
    try {
      if (this.sState === S_GREETING) {
        // An NBD server speaks first; a QEMU migration stream, for one, starts from the client.
        this.notNbd(
          this.sFill === 0
            ? 'the client spoke first (an NBD server sends its greeting before the client sends anything)'
            : "the client sent bytes before the server's greeting was complete",
        );
        return;
      }
      this.parseClient(chunk, 0, length);
    } catch (err) {
      this.stop(`internal error while reading client bytes: ${describe(err)}`);
    }
  }

  /** Bytes going server → client. */
  toSource(chunk: Buffer): void {
    const length = chunk.length;
    this.sourceBytes += length;
    if (this.status !== ACTIVE || length === 0) return;
    try {
      this.parseServer(chunk, 0, length);
    } catch (err) {
      this.stop(`internal error while reading server bytes: ${describe(err)}`);
    }
  }

  snapshot(): NbdStreamStats {
    const requests = {} as NbdStreamStats['requests'];
    for (let i = 0; i <= OTHER; i++) {
      const name: NbdCommandName = i < OTHER ? NBD_CMD_NAMES[i]! : 'OTHER';
      requests[name] = { count: this.requestCounts[i]!, bytes: this.requestBytes[i]! };
    }
    const coverage = this.coverage;
    return {
      inspection: this.status === ACTIVE ? 'active' : this.status === STOPPED ? 'stopped' : 'not-nbd',
      stopReason: this.stopReason,
      phase: PHASE_NAMES[this.phase]!,
      handshakeFlags: this.handshakeFlags,
      clientFlags: this.clientFlags,
      options: [...this.options],
      optionErrors: this.optionErrors.map((e) => ({ ...e })),
      exportName: this.exportName,
      exportSize: this.exportSize,
      transmissionFlags: this.transmissionFlags,
      blockSize: this.blockSize === null ? null : { ...this.blockSize },
      structuredReplies: this.structuredReplies,
      metaContexts: this.metaContexts.map((c) => ({ ...c })),
      requests,
      inFlight: this.inFlight?.size ?? 0,
      replies: { simple: this.simpleReplies, structuredChunks: this.structuredChunks, unmatched: this.unmatchedReplies },
      errors: { total: this.errorsTotal, recent: this.recentErrors.map((e) => ({ ...e })) },
      coverage: coverage === null ? null : { bytes: coverage.coveredBytes, ratio: coverage.ratio, granularity: coverage.granularity },
      writeBytesPerSecond: this.rate === null ? 0 : this.rate.rate(this.now()),
      bytesToDest: this.destBytes,
      bytesToSource: this.sourceBytes,
    };
  }

  // ---------------------------------------------------------------- client → server

  private parseClient(chunk: Buffer, pos: number, end: number): void {
    while (pos < end) {
      if (this.cSkip > 0) {
        const available = end - pos;
        if (this.cSkip > available) {
          this.cSkip -= available; // the common case on a write: the whole chunk is payload
          return;
        }
        pos += this.cSkip;
        this.cSkip = 0;
        continue;
      }
      if (this.cFill === 0) {
        if (this.cState === C_OPTION && this.phase === PHASE_TRANSMISSION) {
          this.cState = C_REQUEST;
          this.cNeed = REQUEST_HEADER_LENGTH;
        } else if (this.cState === C_CLOSED) {
          this.stop('the client sent bytes after NBD_CMD_DISC');
          return;
        }
      }
      const need = this.cNeed;
      let buf: Buffer;
      let at: number;
      if (this.cFill === 0 && end - pos >= need) {
        buf = chunk; // the whole unit is in this chunk: read it in place
        at = pos;
        pos += need;
      } else {
        buf = need <= SCRATCH_LENGTH ? this.cScratch : (this.cCapture ??= Buffer.allocUnsafe(CLIENT_CAPTURE_MAX));
        const n = Math.min(need - this.cFill, end - pos);
        chunk.copy(buf, this.cFill, pos, pos + n);
        this.cFill += n;
        pos += n;
        if (this.cFill < need) return;
        this.cFill = 0;
        at = 0;
      }
      if (this.cState === C_REQUEST) this.onRequest(buf, at);
      else this.onClientUnit(buf, at, need);
      if (this.status !== ACTIVE) return;
    }
  }

  private onClientUnit(buf: Buffer, at: number, need: number): void {
    switch (this.cState) {
      case C_FLAGS: {
        const flags = buf.readUInt32BE(at);
        this.clientFlags = flags;
        if ((flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) !== 0) {
          this.stop(`unknown client flags 0x${hex(flags)}`);
          return;
        }
        this.expectClient(C_OPTION, OPTION_HEADER_LENGTH);
        return;
      }
      case C_OPTION: {
        const hi = buf.readUInt32BE(at);
        if (hi === IHAVEOPT_HI && buf.readUInt32BE(at + 4) === IHAVEOPT_LO) {
          this.onOption(buf.readUInt32BE(at + 8), buf.readUInt32BE(at + 12));
          return;
        }
        if (
          hi === NBD_REQUEST_MAGIC &&
          (this.phase === PHASE_TRANSMISSION || this.pendingOption === NBD_OPT_GO || this.pendingOption === NBD_OPT_EXPORT_NAME)
        ) {
          // A request right behind NBD_OPT_GO, begun before the server's answer was seen.
          this.extendClient(buf, at, need, C_REQUEST, REQUEST_HEADER_LENGTH);
          return;
        }
        this.stop(`expected an option from the client, got magic 0x${hex(hi)}`);
        return;
      }
      case C_OPTION_DATA:
        this.onOptionData(buf, at, need);
        this.cSkip = this.cOptionRest;
        this.expectClient(C_OPTION, OPTION_HEADER_LENGTH);
        return;
    }
  }

  private onOption(option: number, length: number): void {
    if (this.options.length < MAX_OPTIONS_KEPT) this.options.push(optionName(option));
    const fixed =
      ((this.handshakeFlags ?? 0) & NBD_FLAG_FIXED_NEWSTYLE) !== 0 && ((this.clientFlags ?? 0) & NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;
    if (!fixed && option !== NBD_OPT_EXPORT_NAME) {
      this.stop(`${optionName(option)} without fixed-newstyle negotiation is not followed`);
      return;
    }
    this.pendingOption = option;
    this.infoSize = null;
    this.infoFlags = null;
    this.pendingMeta = [];
    if (option === NBD_OPT_ABORT) {
      this.phase = PHASE_CLOSED;
      this.emitDisconnect('NBD_OPT_ABORT');
    }
    const read = option === NBD_OPT_EXPORT_NAME || option === NBD_OPT_GO;
    this.cOption = option;
    if (!read || length === 0) {
      if (read) this.onOptionData(this.cScratch, 0, 0);
      this.cSkip = length;
      this.expectClient(C_OPTION, OPTION_HEADER_LENGTH);
      return;
    }
    const take = Math.min(length, CLIENT_CAPTURE_MAX);
    this.cOptionRest = length - take;
    this.expectClient(C_OPTION_DATA, take);
  }

  /** The (first CLIENT_CAPTURE_MAX bytes of) the data of the option in cOption. */
  private onOptionData(buf: Buffer, at: number, length: number): void {
    const end = at + length;
    switch (this.cOption) {
      case NBD_OPT_EXPORT_NAME:
        this.goExportName = string(buf, at, end);
        return;
      case NBD_OPT_GO: {
        // name length (32), name, number of info requests (16), info requests (16 each)
        if (length < 4) return;
        const nameLength = buf.readUInt32BE(at);
        if (nameLength <= length - 4) this.goExportName = string(buf, at + 4, at + 4 + nameLength);
        return;
      }
    }
  }

  private onRequest(buf: Buffer, at: number): void {
    const magic = buf.readUInt32BE(at);
    if (magic !== NBD_REQUEST_MAGIC) {
      this.stop(
        magic === NBD_EXTENDED_REQUEST_MAGIC
          ? 'the client sent an extended request header (NBD_OPT_EXTENDED_HEADERS), which is not followed'
          : `expected a request from the client, got magic 0x${hex(magic)}`,
      );
      return;
    }
    const type = buf.readUInt16BE(at + 6);
    const offset = buf.readUInt32BE(at + 16) * TWO_32 + buf.readUInt32BE(at + 20);
    const length = buf.readUInt32BE(at + 24);
    const index = type < OTHER ? type : OTHER;
    this.requestCounts[index]++;
    this.requestBytes[index] += length;
    if (type === NBD_CMD_WRITE) {
      this.cSkip = length;
      this.rate?.add(this.now(), length);
    } else if (type === NBD_CMD_WRITE_ZEROES) {
      this.rate?.add(this.now(), length);
    } else if (type === NBD_CMD_DISC) {
      this.phase = PHASE_CLOSED;
      this.expectClient(C_CLOSED, 1);
      this.emitDisconnect('NBD_CMD_DISC');
      return; // no reply follows
    }
    this.cState = C_REQUEST;
    this.cNeed = REQUEST_HEADER_LENGTH;
    const inFlight = (this.inFlight ??= new InFlight(this.maxInFlight));
    if (!inFlight.insert(buf.readUInt32BE(at + 8), buf.readUInt32BE(at + 12), type, offset, length)) {
      this.stop(`more than ${this.maxInFlight} requests in flight: lost track of the replies`);
    }
  }

  private expectClient(state: number, need: number): void {
    this.cState = state;
    this.cNeed = need;
  }

  /** The unit read so far (`have` bytes) turned out to be the start of a longer one. */
  private extendClient(buf: Buffer, at: number, have: number, state: number, need: number): void {
    if (buf !== this.cScratch) buf.copy(this.cScratch, 0, at, at + have);
    this.cState = state;
    this.cNeed = need;
    this.cFill = have;
  }

  // ---------------------------------------------------------------- server → client

  private parseServer(chunk: Buffer, pos: number, end: number): void {
    while (pos < end) {
      if (this.sSkip > 0) {
        const available = end - pos;
        if (this.sSkip > available) {
          this.sSkip -= available; // the common case on a read: the whole chunk is data
          return;
        }
        pos += this.sSkip;
        this.sSkip = 0;
        if (this.startAfterSkip) {
          this.startAfterSkip = false;
          this.startTransmission();
        }
        continue;
      }
      if (this.sFill === 0) {
        if (this.sState === S_REPLY) {
          const available = end - pos;
          if (available >= SIMPLE_REPLY_HEADER_LENGTH) {
            // Fast path: a reply header in place (simple or structured, told apart by its magic).
            pos += this.onReply(chunk, pos, available < STRUCTURED_REPLY_HEADER_LENGTH ? available : STRUCTURED_REPLY_HEADER_LENGTH);
            if (this.status !== ACTIVE) return;
            continue;
          }
        } else if (this.sState === S_OPTION_REPLY && this.pendingOption === NBD_OPT_EXPORT_NAME) {
          // NBD_OPT_EXPORT_NAME is the one option answered without a reply header.
          this.expectServer(S_EXPORT_NAME_REPLY, EXPORT_NAME_REPLY_LENGTH);
        }
      }
      const need = this.sNeed;
      let buf: Buffer;
      let at: number;
      if (this.sFill === 0 && end - pos >= need) {
        buf = chunk;
        at = pos;
        pos += need;
      } else {
        buf = need <= SCRATCH_LENGTH ? this.sScratch : (this.sCapture ??= Buffer.allocUnsafe(SERVER_CAPTURE_MAX));
        const fill = this.sFill;
        const n = Math.min(need - fill, end - pos);
        chunk.copy(buf, fill, pos, pos + n);
        this.sFill = fill + n;
        pos += n;
        if (this.sState === S_GREETING && !this.greetingPrefixMatches(fill, fill + n)) return;
        if (this.sFill < need) return;
        this.sFill = 0;
        at = 0;
      }
      if (this.sState === S_REPLY) this.onReply(buf, at, need);
      else this.onServerUnit(buf, at, need);
      if (this.status !== ACTIVE) return;
    }
  }

  /** Bytes [from, to) of a greeting being assembled in sScratch: not NBD as soon as one differs from NBDMAGIC. */
  private greetingPrefixMatches(from: number, to: number): boolean {
    for (let i = from; i < to && i < 8; i++) {
      if (this.sScratch[i] !== NBDMAGIC_BYTES[i]) {
        this.notNbd(`the server's first bytes are not NBDMAGIC`);
        return false;
      }
    }
    return true;
  }

  private onServerUnit(buf: Buffer, at: number, need: number): void {
    switch (this.sState) {
      case S_GREETING:
        this.onGreeting(buf, at);
        return;
      case S_OPTION_REPLY:
        this.onOptionReply(buf, at);
        return;
      case S_OPTION_REPLY_DATA:
        this.onOptionReplyData(buf, at, need);
        this.sSkip = this.sReplyLength - need;
        this.expectServer(S_OPTION_REPLY, OPTION_REPLY_HEADER_LENGTH);
        this.onFinalReply(this.sSkip > 0);
        return;
      case S_EXPORT_NAME_REPLY: {
        this.infoSize = buf.readUInt32BE(at) * TWO_32 + buf.readUInt32BE(at + 4);
        this.infoFlags = buf.readUInt16BE(at + 8);
        // The client may set NBD_FLAG_C_NO_ZEROES only if the server offered NBD_FLAG_NO_ZEROES.
        const noZeroes = ((this.clientFlags ?? 0) & NBD_FLAG_C_NO_ZEROES) !== 0;
        this.pendingOption = -1;
        this.expectServer(S_REPLY, SIMPLE_REPLY_HEADER_LENGTH);
        if (noZeroes) {
          this.startTransmission();
        } else {
          this.sSkip = EXPORT_NAME_REPLY_ZEROES;
          this.startAfterSkip = true;
        }
        return;
      }
      case S_ERROR_CHUNK:
        this.onErrorChunk(buf, at, need);
        this.sSkip = this.sReplyLength - need;
        this.expectServer(S_REPLY, SIMPLE_REPLY_HEADER_LENGTH);
        return;
    }
  }

  private onGreeting(buf: Buffer, at: number): void {
    if (buf.readUInt32BE(at) !== NBDMAGIC_HI || buf.readUInt32BE(at + 4) !== NBDMAGIC_LO) {
      this.notNbd(`the server's first bytes are not NBDMAGIC`);
      return;
    }
    const hi = buf.readUInt32BE(at + 8);
    const lo = buf.readUInt32BE(at + 12);
    if (hi === NBD_CLISERV_MAGIC_HI && lo === NBD_CLISERV_MAGIC_LO) {
      this.stop('oldstyle negotiation is not followed');
      return;
    }
    if (hi !== IHAVEOPT_HI || lo !== IHAVEOPT_LO) {
      this.stop(`unknown magic 0x${hex(hi)}${hex(lo)} after NBDMAGIC`);
      return;
    }
    this.handshakeFlags = buf.readUInt16BE(at + 16);
    this.phase = PHASE_HANDSHAKE;
    this.expectServer(S_OPTION_REPLY, OPTION_REPLY_HEADER_LENGTH);
  }

  private onOptionReply(buf: Buffer, at: number): void {
    if (buf.readUInt32BE(at) !== NBD_REP_MAGIC_HI || buf.readUInt32BE(at + 4) !== NBD_REP_MAGIC_LO) {
      this.stop(`expected an option reply from the server, got magic 0x${hex(buf.readUInt32BE(at))}${hex(buf.readUInt32BE(at + 4))}`);
      return;
    }
    this.sOption = buf.readUInt32BE(at + 8);
    this.sReply = buf.readUInt32BE(at + 12);
    const length = buf.readUInt32BE(at + 16);
    this.sReplyLength = length;
    const reply = this.sReply;
    const read = reply === NBD_REP_INFO || reply === NBD_REP_META_CONTEXT || (reply & NBD_REP_FLAG_ERROR) !== 0;
    if (read && length > 0) {
      this.expectServer(S_OPTION_REPLY_DATA, Math.min(length, SERVER_CAPTURE_MAX));
      return;
    }
    if (read) this.onOptionReplyData(this.sScratch, 0, 0);
    this.sSkip = length;
    this.onFinalReply(length > 0);
  }

  /** The (first SERVER_CAPTURE_MAX bytes of the) data of the reply in sOption/sReply. */
  private onOptionReplyData(buf: Buffer, at: number, length: number): void {
    const reply = this.sReply;
    if (reply === NBD_REP_INFO) {
      if (length < 2) return;
      const info = buf.readUInt16BE(at);
      if (info === NBD_INFO_EXPORT && length >= NBD_INFO_EXPORT_LENGTH) {
        this.infoSize = buf.readUInt32BE(at + 2) * TWO_32 + buf.readUInt32BE(at + 6);
        this.infoFlags = buf.readUInt16BE(at + 10);
      } else if (info === NBD_INFO_BLOCK_SIZE && length >= NBD_INFO_BLOCK_SIZE_LENGTH && this.sOption === NBD_OPT_GO) {
        this.blockSize = {
          minimum: buf.readUInt32BE(at + 2),
          preferred: buf.readUInt32BE(at + 6),
          maximum: buf.readUInt32BE(at + 10),
        };
      }
    } else if (reply === NBD_REP_META_CONTEXT) {
      if (length < 4 || this.sOption !== NBD_OPT_SET_META_CONTEXT || this.pendingMeta.length >= MAX_META_CONTEXTS) return;
      this.pendingMeta.push({ id: buf.readUInt32BE(at), name: string(buf, at + 4, at + length) });
    } else if ((reply & NBD_REP_FLAG_ERROR) !== 0) {
      const error: NbdOptionError = {
        option: optionName(this.sOption),
        reply: replyTypeName(reply),
        message: length > 0 ? string(buf, at, at + length) : null,
      };
      if (this.optionErrors.length < MAX_OPTION_ERRORS_KEPT) this.optionErrors.push(error);
      this.emit('optionError', error);
    }
  }

  /** After a reply header (and the data read from it): acts on final replies (ACK or error). */
  private onFinalReply(dataFollows: boolean): void {
    const reply = this.sReply;
    const option = this.sOption;
    if (reply !== NBD_REP_ACK && (reply & NBD_REP_FLAG_ERROR) === 0) return; // INFO, META_CONTEXT, SERVER, ...
    if (option === this.pendingOption) this.pendingOption = -1;
    if ((reply & NBD_REP_FLAG_ERROR) !== 0) {
      // A failed NBD_OPT_SET_META_CONTEXT still replaces the previous selection.
      if (option === NBD_OPT_SET_META_CONTEXT) this.metaContexts = [];
      return;
    }
    switch (option) {
      case NBD_OPT_STRUCTURED_REPLY:
        this.structuredReplies = true;
        return;
      case NBD_OPT_SET_META_CONTEXT:
        this.metaContexts = this.pendingMeta;
        this.pendingMeta = [];
        return;
      case NBD_OPT_STARTTLS:
        this.stop('NBD_OPT_STARTTLS was accepted: the rest of the stream is TLS');
        return;
      case NBD_OPT_EXTENDED_HEADERS:
        this.stop('extended headers were negotiated (NBD_OPT_EXTENDED_HEADERS), which is not followed');
        return;
      case NBD_OPT_ABORT:
        this.phase = PHASE_CLOSED;
        return;
      case NBD_OPT_GO:
        this.expectServer(S_REPLY, SIMPLE_REPLY_HEADER_LENGTH);
        if (dataFollows) this.startAfterSkip = true;
        else this.startTransmission();
        return;
    }
  }

  private startTransmission(): void {
    this.phase = PHASE_TRANSMISSION;
    this.exportName = this.goExportName;
    this.exportSize = this.infoSize;
    this.transmissionFlags = this.infoFlags;
    this.cCapture = null;
    this.sCapture = null;
    if (this.exportSize !== null) this.coverage = new Coverage(this.exportSize);
    this.rate = new RateWindow(this.rateWindowMs, this.now());
    this.inFlight ??= new InFlight(this.maxInFlight);
    this.emit('negotiated', {
      exportName: this.exportName,
      exportSize: this.exportSize,
      transmissionFlags: this.transmissionFlags,
      structuredReplies: this.structuredReplies,
      metaContexts: this.metaContexts.map((c) => ({ ...c })),
    });
  }

  /**
   * A reply header: `have` (16 to 20) bytes at `at`, of which a simple reply takes 16 and a
   * structured one 20 (with fewer, they are kept and the rest awaited). Returns the bytes used.
   */
  private onReply(buf: Buffer, at: number, have: number): number {
    const magic = buf.readUInt32BE(at);
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      this.onSimpleReply(buf.readUInt32BE(at + 4), buf.readUInt32BE(at + 8), buf.readUInt32BE(at + 12));
      return SIMPLE_REPLY_HEADER_LENGTH;
    }
    if (magic === NBD_STRUCTURED_REPLY_MAGIC) {
      if (have < STRUCTURED_REPLY_HEADER_LENGTH) {
        this.extendServer(buf, at, have, STRUCTURED_REPLY_HEADER_LENGTH);
        return have;
      }
      this.sNeed = SIMPLE_REPLY_HEADER_LENGTH;
      this.onStructuredChunk(
        buf.readUInt16BE(at + 4),
        buf.readUInt16BE(at + 6),
        buf.readUInt32BE(at + 8),
        buf.readUInt32BE(at + 12),
        buf.readUInt32BE(at + 16),
      );
      return STRUCTURED_REPLY_HEADER_LENGTH;
    }
    this.stop(
      magic === NBD_EXTENDED_REPLY_MAGIC
        ? 'the server sent an extended reply header (NBD_OPT_EXTENDED_HEADERS), which is not followed'
        : `expected a reply from the server, got magic 0x${hex(magic)}`,
    );
    return have;
  }

  private onSimpleReply(error: number, hi: number, lo: number): void {
    this.simpleReplies++;
    const inFlight = this.inFlight!;
    const slot = inFlight.find(hi, lo);
    if (slot < 0) {
      if (!this.structuredReplies) {
        // Only the request could say whether read data follows this header.
        this.stop(`a simple reply for cookie 0x${hex(hi)}${hex(lo)}, which is not in flight: lost track`);
        return;
      }
      this.unmatchedReplies++; // with structured replies, a simple reply carries no data
      return;
    }
    const type = inFlight.type[slot]!;
    if (error !== 0) this.recordError(slot, error, null, null);
    else if (type === NBD_CMD_READ) this.sSkip = inFlight.length[slot]!;
    this.finishRequest(slot);
  }

  private onStructuredChunk(flags: number, type: number, hi: number, lo: number, length: number): void {
    this.structuredChunks++;
    const inFlight = this.inFlight!;
    const slot = inFlight.find(hi, lo);
    if (slot < 0) this.unmatchedReplies++;
    const done = (flags & NBD_REPLY_FLAG_DONE) !== 0;
    if ((type & NBD_REPLY_TYPE_FLAG_ERROR) !== 0) {
      // Read the error, then record it and (if done) finish the request.
      this.sChunkType = type;
      this.sChunkDone = done;
      this.sCookieHi = hi;
      this.sCookieLo = lo;
      this.sReplyLength = length;
      if (length === 0) this.onErrorChunk(this.sScratch, 0, 0);
      else this.expectServer(S_ERROR_CHUNK, Math.min(length, SERVER_CAPTURE_MAX));
      return;
    }
    this.sSkip = length;
    if (done && slot >= 0) this.finishRequest(slot);
  }

  private onErrorChunk(buf: Buffer, at: number, length: number): void {
    // error (32), message length (16), message, then for NBD_REPLY_TYPE_ERROR_OFFSET the offset (64)
    const inFlight = this.inFlight!;
    const slot = inFlight.find(this.sCookieHi, this.sCookieLo);
    const code = length >= 4 ? buf.readUInt32BE(at) : 0;
    let message: string | null = null;
    let errorOffset: number | null = null;
    if (length >= 6) {
      const messageLength = buf.readUInt16BE(at + 4);
      if (messageLength > 0) message = string(buf, at + 6, at + Math.min(length, 6 + messageLength));
      if (this.sChunkType === NBD_REPLY_TYPE_ERROR_OFFSET && length >= 6 + messageLength + 8) {
        const o = at + 6 + messageLength;
        errorOffset = buf.readUInt32BE(o) * TWO_32 + buf.readUInt32BE(o + 4);
      }
    }
    this.recordError(slot, code, message, errorOffset);
    if (this.sChunkDone && slot >= 0) this.finishRequest(slot);
  }

  private recordError(slot: number, code: number, message: string | null, errorOffset: number | null): void {
    const inFlight = this.inFlight!;
    const known = slot >= 0;
    if (known) inFlight.errored[slot] = 1;
    const error: NbdRequestError = {
      type: known ? commandName(inFlight.type[slot]!) : null,
      offset: known ? inFlight.offset[slot]! : null,
      length: known ? inFlight.length[slot]! : null,
      errno: errnoName(code),
      code,
      message,
      errorOffset,
    };
    this.errorsTotal++;
    if (this.recentErrorLimit > 0) {
      if (this.recentErrors.length >= this.recentErrorLimit) this.recentErrors.shift();
      this.recentErrors.push(error);
    }
    this.emit('error', error);
  }

  /** The request's last reply has passed: a write that succeeded now counts as coverage. */
  private finishRequest(slot: number): void {
    const inFlight = this.inFlight!;
    const type = inFlight.type[slot]!;
    if (
      this.coverage !== null &&
      inFlight.errored[slot] === 0 &&
      (type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES || type === NBD_CMD_TRIM)
    ) {
      this.coverage.add(inFlight.offset[slot]!, inFlight.length[slot]!);
    }
    inFlight.remove(slot);
  }

  private expectServer(state: number, need: number): void {
    this.sState = state;
    this.sNeed = need;
  }

  private extendServer(buf: Buffer, at: number, have: number, need: number): void {
    if (buf !== this.sScratch) buf.copy(this.sScratch, 0, at, at + have);
    this.sNeed = need;
    this.sFill = have;
  }

  // ---------------------------------------------------------------- ending

  private stop(reason: string): void {
    if (this.status !== ACTIVE) return;
    this.status = STOPPED;
    this.end(reason, false);
  }

  private notNbd(reason: string): void {
    if (this.status !== ACTIVE) return;
    this.status = NOT_NBD;
    this.end(reason, true);
  }

  private end(reason: string, notNbd: boolean): void {
    this.stopReason = reason;
    this.cCapture = null;
    this.sCapture = null;
    this.cSkip = 0;
    this.sSkip = 0;
    this.emit('stopped', reason, notNbd);
  }

  private emitDisconnect(via: 'NBD_CMD_DISC' | 'NBD_OPT_ABORT'): void {
    this.emit('disconnect', via);
  }

  private emit<K extends keyof NbdInspectorListener>(
    event: K,
    ...args: Parameters<NonNullable<NbdInspectorListener[K]>>
  ): void {
    const listener = this.listener;
    const fn = listener?.[event] as ((...a: unknown[]) => void) | undefined;
    if (fn === undefined) return;
    try {
      fn.apply(listener, args);
    } catch {
      // A listener's failure must not reach the data path; see NbdInspectorListener.
    }
  }
}

/** A string field, at most NBD_MAX_STRING_SIZE bytes of it. */
function string(buf: Buffer, start: number, end: number): string {
  return buf.toString('utf8', start, Math.min(end, start + NBD_MAX_STRING_SIZE));
}

function hex(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
