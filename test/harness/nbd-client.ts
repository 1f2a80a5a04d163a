// A minimal NBD client (fixed newstyle handshake, NBD_OPT_GO, simple replies) for a guest-like
// writer: one request at a time, so each write's latency is what a guest would wait for.
// Constants and layouts as named in the NBD protocol document (doc/proto.md).
import { createConnection, type Socket } from 'node:net';

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const REPLY_MAGIC = 0x3e889045565a9n;
const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
const NBD_FLAG_NO_ZEROES = 1 << 1;
const NBD_OPT_ABORT = 2;
const NBD_OPT_LIST = 3;
const NBD_OPT_GO = 7;
const NBD_REP_ACK = 1;
const NBD_REP_SERVER = 2;
const NBD_REP_INFO = 3;
const NBD_REP_FLAG_ERROR = 0x8000_0000;
const NBD_INFO_EXPORT = 0;
const NBD_FLAG_READ_ONLY = 1 << 1;
const NBD_REQUEST_MAGIC = 0x25609513;
const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
const NBD_CMD_READ = 0;
const NBD_CMD_WRITE = 1;
const NBD_CMD_DISC = 2;

/** Reads exact byte counts from a socket that delivers arbitrary chunks. */
class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private wanted: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.settle();
    });
    const fail = (error: Error): void => {
      this.failure ??= error;
      this.wanted?.reject(this.failure);
      this.wanted = null;
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('NBD connection closed')));
  }

  read(n: number): Promise<Buffer> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.wanted = { n, resolve, reject };
      this.settle();
    });
  }

  private settle(): void {
    if (!this.wanted || this.buffered < this.wanted.n) return;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    const { n, resolve } = this.wanted;
    this.wanted = null;
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.buffered -= n;
    resolve(all.subarray(0, n));
  }
}

export class NbdClient {
  private cookie = 0n;

  private constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    /** Export size in bytes. */
    readonly size: number,
  ) {}

  /**
   * What `nbdinfo --list` does: NBD_OPT_LIST, then NBD_OPT_ABORT and close without reading the
   * server's answer to it. Resolves with the export names listed.
   */
  static async listAndLeave(socketPath: string): Promise<string[]> {
    const socket = createConnection(socketPath);
    const reader = new ByteReader(socket);
    try {
      await greet(socket, reader);
      socket.write(option(NBD_OPT_LIST, Buffer.alloc(0)));
      const names: string[] = [];
      for (;;) {
        const { type, data } = await readOptionReply(reader);
        if (type === NBD_REP_ACK) break;
        if (type !== NBD_REP_SERVER) throw new Error(`NBD_OPT_LIST: unexpected reply type 0x${type.toString(16)}`);
        names.push(data.subarray(4, 4 + data.readUInt32BE(0)).toString('utf8'));
      }
      const closed = new Promise((resolve) => socket.once('close', resolve));
      socket.end(option(NBD_OPT_ABORT, Buffer.alloc(0)), () => socket.destroy());
      await closed;
      return names;
    } finally {
      socket.destroy();
    }
  }

  /** `allowReadOnly`: connect to a read-only export anyway (to provoke refused writes). */
  static async connect(socketPath: string, exportName: string, allowReadOnly = false): Promise<NbdClient> {
    const socket = createConnection(socketPath);
    const reader = new ByteReader(socket);
    try {
      await greet(socket, reader);
      socket.write(goOption(exportName));
      const size = await readGoReplies(reader, allowReadOnly);
      socket.setNoDelay(true);
      return new NbdClient(socket, reader, size);
    } catch (error) {
      socket.destroy();
      throw error;
    }
  }

  /** NBD_CMD_WRITE; resolves when the server has replied. */
  async write(offset: number, data: Buffer): Promise<void> {
    const cookie = this.cookie++;
    this.socket.write(request(NBD_CMD_WRITE, cookie, offset, data.length));
    this.socket.write(data);
    const reply = await this.reader.read(16);
    if (reply.readUInt32BE(0) !== NBD_SIMPLE_REPLY_MAGIC) throw new Error('unexpected NBD reply magic');
    if (reply.readBigUInt64BE(8) !== cookie) throw new Error('NBD reply for another request');
    const error = reply.readUInt32BE(4);
    if (error !== 0) throw new Error(`NBD write at ${offset} failed: errno ${error}`);
  }

  /** NBD_CMD_READ; resolves with the bytes read once the server has replied. */
  async read(offset: number, length: number): Promise<Buffer> {
    const cookie = this.cookie++;
    this.socket.write(request(NBD_CMD_READ, cookie, offset, length));
    const reply = await this.reader.read(16);
    if (reply.readUInt32BE(0) !== NBD_SIMPLE_REPLY_MAGIC) throw new Error('unexpected NBD reply magic');
    if (reply.readBigUInt64BE(8) !== cookie) throw new Error('NBD reply for another request');
    const error = reply.readUInt32BE(4);
    // A simple reply carries no payload when it reports an error.
    if (error !== 0) throw new Error(`NBD read at ${offset} failed: errno ${error}`);
    return Buffer.from(await this.reader.read(length));
  }

  /** Sends a write request and `sent` bytes of its payload, then closes at once: a client killed mid-request. */
  abortMidWrite(offset: number, data: Buffer, sent: number): void {
    this.socket.write(request(NBD_CMD_WRITE, this.cookie++, offset, data.length));
    this.socket.write(data.subarray(0, sent));
    this.socket.destroy();
  }


  /** NBD_CMD_DISC, then close. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    const closed = new Promise((resolve) => this.socket.once('close', resolve));
    this.socket.end(request(NBD_CMD_DISC, this.cookie++, 0, 0));
    await closed;
  }
}

/** The server's greeting, and the client flags in answer (fixed newstyle). */
async function greet(socket: Socket, reader: ByteReader): Promise<void> {
  const hello = await reader.read(18);
  if (hello.readBigUInt64BE(0) !== NBDMAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('not a newstyle NBD server');
  const serverFlags = hello.readUInt16BE(16);
  if (!(serverFlags & NBD_FLAG_FIXED_NEWSTYLE)) throw new Error('NBD server lacks fixed newstyle');
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(NBD_FLAG_FIXED_NEWSTYLE | (serverFlags & NBD_FLAG_NO_ZEROES));
  socket.write(clientFlags);
}

function option(type: number, data: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(IHAVEOPT, 0);
  header.writeUInt32BE(type, 8);
  header.writeUInt32BE(data.length, 12);
  return Buffer.concat([header, data]);
}

function goOption(exportName: string): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const data = Buffer.alloc(4 + name.length + 2);
  data.writeUInt32BE(name.length, 0);
  name.copy(data, 4);
  data.writeUInt16BE(0, 4 + name.length); // no information requests: NBD_INFO_EXPORT comes anyway
  return option(NBD_OPT_GO, data);
}

async function readOptionReply(reader: ByteReader): Promise<{ type: number; data: Buffer }> {
  const header = await reader.read(20);
  if (header.readBigUInt64BE(0) !== REPLY_MAGIC) throw new Error('bad NBD option reply magic');
  const length = header.readUInt32BE(16);
  return { type: header.readUInt32BE(12), data: length > 0 ? await reader.read(length) : Buffer.alloc(0) };
}

/** Reads NBD_OPT_GO's replies up to NBD_REP_ACK; returns the export size. */
async function readGoReplies(reader: ByteReader, allowReadOnly: boolean): Promise<number> {
  let size: number | null = null;
  for (;;) {
    const { type, data } = await readOptionReply(reader);
    if (type & NBD_REP_FLAG_ERROR) throw new Error(`NBD_OPT_GO refused (reply type 0x${type.toString(16)}): ${data.toString('utf8')}`);
    if (type === NBD_REP_INFO && data.readUInt16BE(0) === NBD_INFO_EXPORT) {
      size = Number(data.readBigUInt64BE(2));
      if (!allowReadOnly && data.readUInt16BE(10) & NBD_FLAG_READ_ONLY) throw new Error('NBD export is read-only');
    }
    if (type === NBD_REP_ACK) {
      if (size === null) throw new Error('NBD server sent no NBD_INFO_EXPORT');
      return size;
    }
  }
}

function request(type: number, cookie: bigint, offset: number, length: number): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  header.writeUInt16BE(0, 4);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(cookie, 8);
  header.writeBigUInt64BE(BigInt(offset), 16);
  header.writeUInt32BE(length, 24);
  return header;
}
