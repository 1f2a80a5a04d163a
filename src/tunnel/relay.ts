// Pipes a tunnel stream and a local socket together and logs one summary line when both are done.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { splice } from './splice.js';
import type { Stream } from './stream.js';

/** `side` says which way the stream's sent bytes go: from the source they go to the destination. */
export async function relay(stream: Stream, socket: Duplex, side: 'source' | 'dest', log: Logger, startedAt: number): Promise<void> {
  const error = await splice(socket, stream);
  const [toDest, toSource] = side === 'source' ? [stream.bytesSent, stream.bytesReceived] : [stream.bytesReceived, stream.bytesSent];
  const fields = { bytesToDest: toDest, bytesToSource: toSource, durationMs: Date.now() - startedAt };
  if (error) log.warn({ ...fields, reason: error.message }, 'stream closed');
  else log.info(fields, 'stream closed');
}
