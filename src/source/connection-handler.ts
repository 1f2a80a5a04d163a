// One QEMU connection: open a stream for its route, wait for the destination's answer, then pipe.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { observedRelay, type Observation } from '../metrics/index.js';
import { encodeMessage, openDeadlineMs, parseOpenReply, readMessage, type Stream, type StreamError } from '../tunnel/index.js';
import type { Connector } from './connector.js';

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
    const tunnel = await connector.acquire();
    stream = tunnel.open();
    session = connector.sessionNumber;
    deadlineMs = openDeadlineMs(tunnel);
  } catch (error) {
    observation.registry.refused('no-tunnel');
    log.error({ route, reason: (error as Error).message }, 'stream refused: no tunnel to the destination');
    socket.destroy();
    return;
  }
  const streamLog = log.child({ route, stream: stream.id });
  stream.on('error', () => {}); // reported through splice or the refusal below
  stream.write(encodeMessage({ route }));
  try {
    const reply = parseOpenReply(await readMessage(stream, deadlineMs));
    if (!reply.ok) {
      observation.registry.refused(reply.code);
      streamLog.error({ code: reply.code, reason: reply.message }, 'stream refused by the destination');
      stream.destroy();
      socket.destroy();
      return;
    }
  } catch (error) {
    if ((error as StreamError).code === 'ESTREAMLIMIT') {
      observation.registry.refused('max-streams');
      streamLog.error({ code: 'max-streams', reason: (error as Error).message }, 'stream refused by the destination');
    } else {
      streamLog.error({ reason: (error as Error).message }, 'stream failed during open');
    }
    stream.destroy();
    socket.destroy();
    return;
  }
  streamLog.info('stream opened');
  await observedRelay(stream, socket, 'source', { route, session }, observation, streamLog, started);
}
