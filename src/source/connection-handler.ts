// One QEMU connection: open a stream for its route, wait for the destination's answer, then pipe.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { observeNbd } from '../nbd/index.js';
import { encodeMessage, parseOpenReply, readMessage, relay, type Stream } from '../tunnel/index.js';
import type { Connector } from './connector.js';

export async function handleConnection(socket: Socket, route: string, connector: Connector, log: Logger, inspect: boolean): Promise<void> {
  const started = Date.now();
  socket.on('error', () => {}); // reported through splice or the refusal below
  let stream: Stream;
  try {
    const session = await connector.acquire();
    stream = session.open();
  } catch (error) {
    log.error({ route, reason: (error as Error).message }, 'stream refused: no tunnel to the destination');
    socket.destroy();
    return;
  }
  const streamLog = log.child({ route, stream: stream.id });
  stream.on('error', () => {}); // reported through splice or the refusal below
  stream.write(encodeMessage({ route }));
  try {
    const reply = parseOpenReply(await readMessage(stream));
    if (!reply.ok) {
      streamLog.error({ code: reply.code, reason: reply.message }, 'stream refused by the destination');
      stream.destroy();
      socket.destroy();
      return;
    }
  } catch (error) {
    streamLog.error({ reason: (error as Error).message }, 'stream failed during open');
    stream.destroy();
    socket.destroy();
    return;
  }
  streamLog.info('stream opened');
  await relay(stream, socket, 'source', streamLog, started, inspect ? observeNbd(streamLog) : undefined);
}
