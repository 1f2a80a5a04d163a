// relay() with everything an operator sees of a stream: the NBD observer (unless --no-inspect)
// and the stream's place in the registry behind /metrics and /status while it runs.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { observeNbd } from '../nbd/index.js';
import { relay, type Stream } from '../tunnel/index.js';
import type { Registry } from './registry.js';

export interface Observation {
  registry: Registry;
  inspect: boolean;
}

export async function observedRelay(
  stream: Stream,
  socket: Socket,
  side: 'source' | 'dest',
  where: { route: string; session: number },
  observation: Observation,
  log: Logger,
  startedAt: number,
): Promise<void> {
  const observer = observation.inspect ? observeNbd(log, side === 'dest') : undefined;
  const untrack = observation.registry.track({ ...where, stream, side, observer, startedAt });
  try {
    await relay(stream, socket, side, log, startedAt, observer);
  } finally {
    untrack();
  }
}
