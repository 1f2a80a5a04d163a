// The destination proxy: one TLS WebSocket port, many sessions, each stream to its route's socket.
import { watchCertificateExpiry } from '../certificate-expiry.js';
import { reloadOnHangup, type DestConfig } from '../config.js';
import type { Logger } from '../log.js';
import { Registry, startMetrics } from '../metrics/index.js';
import { isResumeRequest, openDeadlineMs, ProtocolError, TunnelServer, type Session } from '../tunnel/index.js';
import { workerName } from '../workers.js';
import { createAdmission } from './admission.js';
import { RouteTable } from './route-table.js';
import { handleStream, type Policy } from './stream-handler.js';

export interface RunningDest {
  /** Fields of the "listening" line. */
  readyFields: Record<string, unknown>;
  /** Drain: no new connections, sessions or streams; open streams go on. */
  stopAccepting(): void;
  openStreams(): number;
  close(): Promise<void>;
}

export async function runDest(config: DestConfig, log: Logger): Promise<RunningDest> {
  const sessions = new Set<Session>();
  // Read when a stream opens; SIGHUP with --config replaces it (and the limits below) for what comes next.
  let policy: Policy = { routes: new RouteTable(config.routes, config.routeDir), allow: config.allow, vms: config.vms };
  const migrating = new Set<string>(); // VMs with a migration under way, over every session
  let maxSessions = config.maxSessions;
  let crl = config.tls?.crl;
  const admission = createAdmission(config.token, () => crl);
  const server = new TunnelServer({
    host: config.host,
    port: config.port,
    tls: config.tls,
    // A resume brings back a session already counted.
    admit: (request, socket) =>
      sessions.size >= maxSessions && !isResumeRequest(request)
        ? { ok: false, status: 503, reason: `the destination already serves ${sessions.size} sessions, its limit (--max-sessions)` }
        : admission(request, socket),
    upgradeTimeoutMs: config.upgradeTimeoutMs,
    instance: workerName(),
    session: config.session,
  });
  const registry = new Registry();
  const expiry = config.tls ? watchCertificateExpiry(config.tls, log) : null;
  registry.certificateExpiry = expiry?.seconds ?? null;
  const observation = { registry, inspect: config.inspect };
  let sessionSeq = 0;
  server.on('refused', (peer, status, reason) => {
    registry.connectionRefused(status);
    log.warn({ peer: peer.address, status, reason }, 'connection refused');
  });
  server.on('session', (session, peer) => {
    const info = { id: ++sessionSeq, peer: peer.address, client: peer.identity, rttMs: null as number | null, suspended: false };
    const sessionLog = log.child({ session: info.id, peer: peer.address, client: peer.identity });
    sessions.add(session);
    registry.trackSession(info, session);
    session.on('rtt', (ms) => (info.rttMs = ms));
    session.on('suspend', (reason) => sessionLog.warn({ reason: reason.message, streams: session.streamCount }, 'session suspended'));
    session.on('resume', (resumed) => sessionLog.info(resumed, 'session resumed'));
    session.on('refused', (stream, limit) => {
      registry.refused('max-streams');
      const reason = `the session already has ${limit} streams open, the limit (--max-streams ${limit})`;
      sessionLog.warn({ stream, code: 'max-streams', limit, reason }, 'stream refused');
    });
    sessionLog.info({ resumable: session.resumable }, 'session opened');
    const migrations = { busy: migrating, sessionRoutes: new Map<string, string>() };
    session.on('stream', (stream) => {
      const streamLog = sessionLog.child({ stream: stream.id });
      const context = { policy: () => policy, session: info.id, peer, observation, openDeadlineMs: openDeadlineMs(session), migrations };
      handleStream(stream, context, streamLog).catch((error: Error) => {
        streamLog.error({ reason: error.message }, 'stream failed: internal error');
        stream.destroy();
      });
    });
    session.on('close', (reason) => {
      sessions.delete(session);
      // A peer that broke the protocol is worth a warning; the rest are ordinary ends.
      sessionLog[reason instanceof ProtocolError ? 'warn' : 'info']({ reason: reason.message }, 'session closed');
    });
  });
  if (!config.allow) {
    log.warn('no --allow given: every client certificate signed by --ca may use every route');
  }
  const address = await server.listen().catch((error: NodeJS.ErrnoException) => {
    throw new Error(`--listen ${config.host}:${config.port}: cannot listen: ${error.code ?? error.message}`);
  });
  const stopReload = reloadOnHangup(
    config,
    (next) => {
      if (next.tls) server.setTls(next.tls);
      if (next.tls) expiry?.update(next.tls);
      crl = next.tls?.crl;
      policy = { routes: new RouteTable(next.routes, next.routeDir), allow: next.allow, vms: next.vms };
      maxSessions = next.maxSessions;
      Object.assign(config.session, next.session); // the server reads it for each new session
      if (next.tls) log.info({ crl: next.tls.crl?.file }, 'certificates reloaded; new connections use them');
      if (next.configFile) log.info({ config: next.configFile, routes: Object.fromEntries(next.routes), allow: mapObject(next.allow) }, 'configuration reloaded');
    },
    log,
  );
  let draining = false;
  const health = () => (draining ? { ok: false as const, reason: 'draining: the listener is closed (SIGTERM)' } : { ok: true as const });
  const metrics = await startMetrics(config.metrics, registry, 'dest', health).catch(async (error: Error) => {
    await server.close();
    throw error;
  });
  let closing: Promise<void> | null = null;
  const stopAccepting = (): void => {
    draining = true;
    closing ??= server.close();
    for (const session of sessions) session.goAway();
  };
  return {
    readyFields: { host: address.address, port: address.port, routes: Object.fromEntries(config.routes), routeDir: config.routeDir, ...metrics.fields },
    stopAccepting,
    openStreams: () => [...sessions].reduce((n, session) => n + session.streamCount, 0),
    async close() {
      stopReload();
      expiry?.stop();
      await metrics.close();
      stopAccepting();
      // Each settles once its WebSocket has closed, at most a second later for a silent peer.
      const ending = [...sessions].map((session) => session.close(new Error('destination shutting down')));
      await Promise.all([closing, ...ending]);
    },
  };
}

const mapObject = (map: ReadonlyMap<string, unknown> | undefined) => (map ? Object.fromEntries(map) : undefined);
