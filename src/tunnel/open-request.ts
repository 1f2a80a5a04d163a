// Stream-open handshake (DESIGN.md "Opening a stream"): a 4-byte big-endian length, then
// UTF-8 JSON of at most OPEN_MESSAGE_MAX bytes, in each direction, before any NBD byte.
import type { Duplex } from 'node:stream';
import { OPEN_MESSAGE_MAX, OPEN_TIMEOUT_MS } from './const.js';
import { StreamError } from './errors.js';

/**
 * A data stream to a route, (`migrate`) the control stream of a migration into a VM, or
 * (`probe`) a question about a route, answered as its opening would be but carrying nothing.
 */
export type OpenRequest = { route: string } | { migrate: string } | { probe: string };

/** What a destination says to a probe it answers yes: the socket it reached, and who it takes the client for. */
export interface ProbeFindings {
  socket: string;
  identity: string;
}

export type OpenAccepted = { ok: true } & Partial<ProbeFindings>;

export type OpenReply = OpenAccepted | { ok: false; code: string; message: string };

export function encodeMessage(message: OpenRequest | OpenReply): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  if (json.length > OPEN_MESSAGE_MAX) throw new RangeError(`open message of ${json.length} bytes exceeds ${OPEN_MESSAGE_MAX}`);
  const framed = Buffer.allocUnsafe(4 + json.length);
  framed.writeUInt32BE(json.length, 0);
  json.copy(framed, 4);
  return framed;
}

/**
 * Reads one framed message and leaves the stream paused, with any bytes after the
 * message put back, so that piping it afterwards loses nothing.
 */
/** The open handshake's deadline on a session: a suspension may delay it by up to the resume timeout. */
export function openDeadlineMs(session: { resumeTimeoutMs: number }): number {
  return OPEN_TIMEOUT_MS + session.resumeTimeoutMs;
}

export function readMessage(stream: Duplex, timeoutMs = OPEN_TIMEOUT_MS): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const finish = (error: Error | null, value?: unknown): void => {
      clearTimeout(timer);
      stream.pause();
      stream.off('data', onData).off('end', onEnd).off('error', onError).off('close', onEnd);
      if (error) reject(error);
      else resolve(value);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      have += chunk.length;
      if (have < 4) return;
      const all = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, have);
      chunks.length = 0;
      chunks.push(all);
      const length = all.readUInt32BE(0);
      if (length > OPEN_MESSAGE_MAX) {
        finish(new StreamError(`open message of ${length} bytes exceeds the limit of ${OPEN_MESSAGE_MAX}`, 'EOPENTOOLARGE'));
        return;
      }
      if (have < 4 + length) return;
      let value: unknown;
      try {
        value = JSON.parse(all.subarray(4, 4 + length).toString('utf8'));
      } catch {
        finish(new StreamError('open message is not valid JSON', 'EOPENMALFORMED'));
        return;
      }
      // Detach (and pause) first: unshift on a flowing stream would hand the bytes straight back here.
      finish(null, value);
      if (have > 4 + length) stream.unshift(all.subarray(4 + length));
    };
    const onEnd = (): void => finish(new StreamError('stream closed before the open handshake completed', 'EOPENEOF'));
    const onError = (error: Error): void => finish(error);
    const timer = setTimeout(
      () => finish(new StreamError(`no open message within ${timeoutMs} ms`, 'EOPENTIMEOUT')),
      timeoutMs,
    );
    stream.on('data', onData).on('end', onEnd).on('error', onError).on('close', onEnd);
  });
}

export function parseOpenRequest(value: unknown): OpenRequest {
  const request = (typeof value === 'object' && value !== null ? value : {}) as { route?: unknown; migrate?: unknown; probe?: unknown };
  if (typeof request.route === 'string') return { route: request.route };
  if (typeof request.migrate === 'string') return { migrate: request.migrate };
  if (typeof request.probe === 'string') return { probe: request.probe };
  throw new StreamError('open request must be a JSON object with a string "route" (or "migrate", "probe")', 'EOPENMALFORMED');
}

/** The destination refused to open a stream; `code` and the message are its words. */
export class OpenRefusedError extends StreamError {}

/**
 * The opening side of the handshake on a new stream: sends `request` and waits for the answer.
 * Resolves with it once the destination said yes; otherwise destroys the stream and rejects
 * (OpenRefusedError with the destination's code and message, when it said no).
 */
export async function requestOpen(stream: Duplex, request: OpenRequest, deadlineMs: number): Promise<OpenAccepted> {
  stream.on('error', () => {}); // reported through the rejection, or by whoever pipes the stream
  stream.write(encodeMessage(request));
  try {
    const reply = parseOpenReply(await readMessage(stream, deadlineMs));
    if (!reply.ok) throw new OpenRefusedError(reply.message, reply.code);
    return reply;
  } catch (error) {
    stream.destroy();
    throw error;
  }
}

export function parseOpenReply(value: unknown): OpenReply {
  if (typeof value === 'object' && value !== null) {
    const reply = value as { ok?: unknown; code?: unknown; message?: unknown; socket?: unknown; identity?: unknown };
    if (reply.ok === true) {
      return {
        ok: true,
        ...(typeof reply.socket === 'string' ? { socket: reply.socket } : {}),
        ...(typeof reply.identity === 'string' ? { identity: reply.identity } : {}),
      };
    }
    if (reply.ok === false) {
      return {
        ok: false,
        code: typeof reply.code === 'string' ? reply.code : 'unknown',
        message: typeof reply.message === 'string' ? reply.message : 'refused',
      };
    }
  }
  throw new StreamError('open reply is malformed', 'EOPENMALFORMED');
}
