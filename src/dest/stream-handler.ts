// One incoming stream: open request → route → connect → reply → pipe, with one log line at each end.
import type { Logger } from '../log.js';
import { observeNbd } from '../nbd/index.js';
import { encodeMessage, parseOpenRequest, readMessage, relay, StreamError, type Stream } from '../tunnel/index.js';
import { ConnectError, connectRouteSocket, resolveRoute } from './route-socket.js';

export async function handleStream(
  stream: Stream,
  routes: ReadonlyMap<string, string>,
  log: Logger,
  inspect: boolean,
): Promise<void> {
  const started = Date.now();
  stream.on('error', () => {}); // a reset at any step is reported by that step or by relay()
  let route: string;
  try {
    route = parseOpenRequest(await readMessage(stream)).route;
  } catch (error) {
    refuse(stream, log, 'bad-open-request', (error as Error).message);
    return;
  }
  const resolution = resolveRoute(routes, route);
  if (!resolution.ok) {
    refuse(stream, log.child({ route }), resolution.code, resolution.message);
    return;
  }
  const streamLog = log.child({ route, socket: resolution.path });
  let socket;
  try {
    socket = await connectRouteSocket(resolution.path);
  } catch (error) {
    const code = error instanceof ConnectError ? 'connect-failed' : 'internal';
    refuse(stream, streamLog, code, (error as Error).message);
    return;
  }
  if (stream.destroyed) {
    socket.destroy();
    streamLog.warn({ reason: 'stream closed by the source before the socket connected' }, 'stream aborted');
    return;
  }
  stream.write(encodeMessage({ ok: true }));
  streamLog.info('stream opened');
  await relay(stream, socket, 'dest', streamLog, started, inspect ? observeNbd(streamLog) : undefined);
}

function refuse(stream: Stream, log: Logger, code: string, message: string): void {
  log.warn({ code, reason: message }, 'stream refused');
  if (stream.destroyed) return;
  stream.end(encodeMessage({ ok: false, code, message }));
  // The source closes after reading the refusal; do not wait on a source that never does.
  setTimeout(() => stream.destroy(new StreamError('refused', code)), 10_000).unref();
  stream.resume();
}
