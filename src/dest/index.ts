// The destination proxy: one TLS WebSocket port, many sessions, each stream to its route's socket.
import type { DestConfig } from '../config.js';
import type { Logger } from '../log.js';
import { ProtocolError, TunnelServer, type Session } from '../tunnel/index.js';
import { createAdmission } from './admission.js';
import { handleStream } from './stream-handler.js';

export interface RunningDest {
  /** Fields of the "listening" line. */
  readyFields: Record<string, unknown>;
  close(): Promise<void>;
}

export async function runDest(config: DestConfig, log: Logger): Promise<RunningDest> {
  const server = new TunnelServer({
    host: config.host,
    port: config.port,
    ...config.tls,
    admit: createAdmission(config.token),
    session: config.session,
  });
  const sessions = new Set<Session>();
  let sessionSeq = 0;
  server.on('refused', (peer, status, reason) => log.warn({ peer: peer.address, status, reason }, 'connection refused'));
  server.on('session', (session, peer) => {
    const sessionLog = log.child({ session: ++sessionSeq, peer: peer.address, client: peer.identity });
    sessions.add(session);
    sessionLog.info('session opened');
    session.on('stream', (stream) => {
      const streamLog = sessionLog.child({ stream: stream.id });
      handleStream(stream, config.routes, streamLog, config.inspect).catch((error: Error) => {
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
  const address = await server.listen().catch((error: NodeJS.ErrnoException) => {
    throw new Error(`--listen ${config.host}:${config.port}: cannot listen: ${error.code ?? error.message}`);
  });
  return {
    readyFields: { host: address.address, port: address.port, routes: Object.fromEntries(config.routes) },
    async close() {
      const closing = server.close();
      for (const session of sessions) session.close(new Error('destination shutting down'));
      await closing;
    },
  };
}
