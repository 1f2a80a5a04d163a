// Pipes a tunnel stream and a local socket together and logs one summary line when both are done.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { splice } from './splice.js';
import type { Stream } from './stream.js';

/** A passive reader of both directions (the NBD inspector); it sees every chunk, in order, and changes nothing. */
export interface Tap {
  toDest(chunk: Buffer): void;
  toSource(chunk: Buffer): void;
  /** Extra fields for the closing line. */
  finish(): Record<string, unknown>;
  /** The local socket ended its side: an error turns that into a reset of the stream (with its errno). */
  localEnded?(): Error | null;
}

/** `side` says which way the stream's sent bytes go: from the source they go to the destination. */
export async function relay(
  stream: Stream,
  socket: Duplex,
  side: 'source' | 'dest',
  log: Logger,
  startedAt: number,
  tap?: Tap,
): Promise<void> {
  if (tap) {
    // Added in the same tick as splice's pipes, so no chunk passes unseen.
    const [toDest, toSource] = side === 'source' ? [socket, stream] : [stream, socket];
    toDest.on('data', (chunk: Buffer) => tap.toDest(chunk));
    toSource.on('data', (chunk: Buffer) => tap.toSource(chunk));
  }
  const error = await splice(socket, stream, () => tap?.localEnded?.() ?? null);
  const [toDest, toSource] = side === 'source' ? [stream.bytesSent, stream.bytesReceived] : [stream.bytesReceived, stream.bytesSent];
  const fields = { bytesToDest: toDest, bytesToSource: toSource, durationMs: Date.now() - startedAt, ...tap?.finish() };
  if (error) log.warn({ ...fields, reason: error.message }, 'stream closed');
  else log.info(fields, 'stream closed');
}
