// One incoming stream: open request → route → connect → reply → pipe, with one log line at each end;
// or a probe of a route: the same checks, the socket looked at instead of connected, and the answer.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { observedRelay, type Observation } from '../metrics/index.js';
import { encodeMessage, parseOpenRequest, readMessage, StreamError, type OpenReply, type OpenRequest, type PeerInfo, type Stream } from '../tunnel/index.js';
import { isAllowed, type Allowlist } from './authorization.js';
import { handleMigrationStream } from './migration-handler.js';
import { ConnectError, connectRouteSocket } from './route-socket.js';
import { probeRouteSocket } from './socket-probe.js';
import type { Resolution, RouteTable } from './route-table.js';

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
  // A probe is answered as the opening of its route would be, and carries nothing (`nbd-tunnel check`).
  const probe = 'probe' in request;
  const route = 'probe' in request ? request.probe : request.route;
  const refuseRoute = probe
    ? (routeLog: Logger, code: string, message: string) => {
        routeLog.debug({ code, reason: message }, 'route probed');
        endWith(stream, { ok: false, code, message });
      }
    : refuse;
  const resolution = await routeFor(route, context);
  if (!resolution.ok) {
    refuseRoute(log.child({ route }), resolution.code, resolution.message);
    return;
  }
  const streamLog = log.child({ route, socket: resolution.path });
  let socket: Socket | null;
  try {
    // A probe looks at the socket without connecting (socket-probe.ts says why).
    socket = await (probe ? probeRouteSocket : connectRouteSocket)(resolution.path);
  } catch (error) {
    const code = error instanceof ConnectError ? 'connect-failed' : 'internal';
    refuseRoute(streamLog, code, (error as Error).message);
    return;
  }
  if (socket === null) {
    streamLog.debug('route probed');
    endWith(stream, { ok: true, socket: resolution.path, identity: peer.identity });
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

/** Where a stream for `route` goes, if this client may use it: the route table, then --allow. */
async function routeFor(route: string, context: StreamContext): Promise<Resolution> {
  // A route this session's migration prepared was authorized with it (the VM's --allow).
  const prepared = context.migrations.sessionRoutes.get(route);
  if (prepared !== undefined) return { ok: true, path: prepared };
  const policy = context.policy();
  const resolution = await policy.routes.resolve(route);
  if (resolution.ok && !isAllowed(policy.allow, route, context.peer.identities)) {
    return { ok: false, code: 'not-allowed', message: `client '${context.peer.identity}' is not allowed to use route '${route}'` };
  }
  return resolution;
}

function refuseStream(stream: Stream, log: Logger, code: string, message: string): void {
  log.warn({ code, reason: message }, 'stream refused');
  endWith(stream, { ok: false, code, message });
}

/** Sends the last word on a stream that carries nothing more: a refusal, or a probe's answer. */
function endWith(stream: Stream, reply: OpenReply): void {
  if (stream.destroyed) return;
  stream.end(encodeMessage(reply));
  // The source closes after reading the reply; do not wait on a source that never does.
  const reason = reply.ok ? undefined : new StreamError('refused', reply.code);
  setTimeout(() => stream.destroy(reason), 10_000).unref();
  stream.resume();
}
