// One QEMU connection: open a stream for its route, wait for the destination's answer, then pipe.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { observedRelay, type Observation } from '../metrics/index.js';
import { OPEN_TIMEOUT_MS, OpenRefusedError, openDeadlineMs, requestOpen, type Connector, type Stream, type StreamError } from '../tunnel/index.js';

export async function handleConnection(
  socket: Socket,
  route: string,
  connector: Connector,
  observation: Observation,
  log: Logger,
): Promise<void> {
  const started = Date.now();
  socket.on('error', () => {}); // reported through splice or the refusal below
  let stream: Stream;
  let session: number;
  let deadlineMs: number;
  try {
    // While the destination is unreachable, a new connection waits for the tunnel (up to the open deadline).
    const tunnel = await connector.acquireWithin(OPEN_TIMEOUT_MS);
    stream = tunnel.open();
    session = connector.sessionNumber;
    deadlineMs = openDeadlineMs(tunnel);
  } catch (error) {
    observation.registry.refused('no-tunnel');
    log.error({ route, reason: (error as Error).message, waitedMs: Date.now() - started }, 'stream refused: no tunnel to the destination');
    socket.destroy();
    return;
  }
  const streamLog = log.child({ route, stream: stream.id });
  try {
    await requestOpen(stream, { route }, deadlineMs);
  } catch (error) {
    const { code, message } = error as StreamError;
    if (error instanceof OpenRefusedError || code === 'ESTREAMLIMIT') {
      const reason = code === 'ESTREAMLIMIT' ? 'max-streams' : code;
      observation.registry.refused(reason);
      streamLog.error({ code: reason, reason: message }, 'stream refused by the destination');
    } else {
      streamLog.error({ reason: message }, 'stream failed during open');
    }
    socket.destroy();
    return;
  }
  streamLog.info('stream opened');
  await observedRelay(stream, socket, 'source', { route, session }, observation, streamLog, started);
}
