// One incoming stream: open request → route → connect → reply → pipe, with one log line at each end.
import type { Logger } from '../log.js';
import { observedRelay, type Observation } from '../metrics/index.js';
import { encodeMessage, parseOpenRequest, readMessage, StreamError, type OpenRequest, type PeerInfo, type Stream } from '../tunnel/index.js';
import { isAllowed, type Allowlist } from './authorization.js';
import { handleMigrationStream } from './migration-handler.js';
import { ConnectError, connectRouteSocket } from './route-socket.js';
import type { RouteTable } from './route-table.js';

/** Routes, --allow rules and --vm QEMUs as configured when a stream opens (a reload replaces them). */
export interface Policy {
  routes: RouteTable;
  allow: Allowlist;
  vms: ReadonlyMap<string, string>;
}

/** Migrations: VMs being migrated into (all sessions), and the routes this session's migration prepared. */
export interface Migrations {
  busy: Set<string>;
  sessionRoutes: Map<string, string>;
}

/** What a stream's handler knows of its session and the destination's configuration. */
export interface StreamContext {
  policy(): Policy;
  session: number;
  peer: PeerInfo;
  observation: Observation;
  /** For the open request to arrive (longer on a resumable session). */
  openDeadlineMs: number;
  migrations: Migrations;
}

export async function handleStream(stream: Stream, context: StreamContext, log: Logger): Promise<void> {
  const { session, observation, peer } = context;
  const refuse = (streamLog: Logger, code: string, message: string): void => {
    observation.registry.refused(code);
    refuseStream(stream, streamLog, code, message);
  };
  const started = Date.now();
  stream.on('error', () => {}); // a reset at any step is reported by that step or by relay()
  let request: OpenRequest;
  try {
    request = parseOpenRequest(await readMessage(stream, context.openDeadlineMs));
  } catch (error) {
    refuse(log, 'bad-open-request', (error as Error).message);
    return;
  }
  if ('migrate' in request) {
    await handleMigrationStream(stream, request.migrate, context, log, (code, message) => refuse(log.child({ vm: request.migrate.slice(0, 140) }), code, message));
    return;
  }
  const { route } = request;
  // A route this session's migration prepared was authorized with it (the VM's --allow).
  const prepared = context.migrations.sessionRoutes.get(route);
  const policy = context.policy();
  const resolution = prepared === undefined ? await policy.routes.resolve(route) : ({ ok: true, path: prepared } as const);
  if (!resolution.ok) {
    refuse(log.child({ route }), resolution.code, resolution.message);
    return;
  }
  if (prepared === undefined && !isAllowed(policy.allow, route, peer.identities)) {
    refuse(log.child({ route }), 'not-allowed', `client '${peer.identity}' is not allowed to use route '${route}'`);
    return;
  }
  const streamLog = log.child({ route, socket: resolution.path });
  let socket;
  try {
    socket = await connectRouteSocket(resolution.path);
  } catch (error) {
    const code = error instanceof ConnectError ? 'connect-failed' : 'internal';
    refuse(streamLog, code, (error as Error).message);
    return;
  }
  if (stream.destroyed) {
    socket.destroy();
    streamLog.warn({ reason: 'stream closed by the source before the socket connected' }, 'stream aborted');
    return;
  }
  stream.write(encodeMessage({ ok: true }));
  streamLog.info('stream opened');
  await observedRelay(stream, socket, 'dest', { route, session }, observation, streamLog, started);
}

function refuseStream(stream: Stream, log: Logger, code: string, message: string): void {
  log.warn({ code, reason: message }, 'stream refused');
  if (stream.destroyed) return;
  stream.end(encodeMessage({ ok: false, code, message }));
  // The source closes after reading the refusal; do not wait on a source that never does.
  setTimeout(() => stream.destroy(new StreamError('refused', code)), 10_000).unref();
  stream.resume();
}
