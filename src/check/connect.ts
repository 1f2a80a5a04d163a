// The first two steps: TCP and TLS to the destination, then the WebSocket upgrade (where the
// destination checks the client certificate and token). Which one failed is known from how far
// the socket got, not guessed from the error.
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { SourceConfig } from '../config.js';
import { ConnectError, connectTunnel, SUBPROTOCOL, TunnelRefusedError, type Session } from '../tunnel/index.js';
import { describeCertificate, subjectLine } from './certificate.js';
import { failed, passed, type Step } from './step.js';

export type Connection = { ok: true; session: Session; steps: Step[] } | { ok: false; steps: Step[] };

export async function connectAndReport(config: SourceConfig): Promise<Connection> {
  const where = new URL(config.url).host;
  const proxy = config.proxy.proxy;
  const via = proxy ? ` through the proxy ${config.proxy.summary}` : '';
  let socketMade = false;
  let connected = false;
  // Read when the handshake ends: once the connection is refused, the socket no longer has it.
  let secured: string | null = null;
  const transportStep = (): Step => passed(secured ?? `plain TCP to ${where}${via} (--insecure: no TLS, no certificates)`);
  try {
    const session = await connectTunnel({
      url: config.url,
      ...config.tls,
      servername: config.servername,
      proxy,
      token: config.token,
      // Not resumable: the destination keeps nothing of a check once it is over.
      session: { ...config.session, resumeTimeoutMs: 0 },
      onSocket(socket) {
        socketMade = true;
        // Through a proxy, TLS starts on the proxy's socket, connected already.
        if (!socket.connecting) connected = true;
        socket.once('connect', () => (connected = true));
        socket.once('secureConnect', () => (secured = `${describeTls(socket as TLSSocket, where)}${via}`));
      },
    });
    return { ok: true, session, steps: [transportStep(), passed(`WebSocket upgrade (${SUBPROTOCOL}): ${admitted(config)}`)] };
  } catch (error) {
    const why = error instanceof TunnelRefusedError ? error.message : error instanceof ConnectError ? error.reason : (error as Error).message;
    if (proxy && !socketMade) return { ok: false, steps: [failed(`connect to ${where}${via}: ${why}`)] };
    if (!connected) return { ok: false, steps: [failed(`connect to ${where}: ${why}`)] };
    if (config.tls && secured === null) return { ok: false, steps: [failed(`TLS to ${where}: ${why}`)] };
    return { ok: false, steps: [transportStep(), failed(`WebSocket upgrade (${SUBPROTOCOL}): ${why}`)] };
  }
}

function describeTls(socket: TLSSocket, where: string): string {
  const version = (socket.getProtocol() ?? 'TLS').replace('TLSv', 'TLS ');
  const certificate = socket.getPeerX509Certificate();
  return `${version} to ${where}: destination certificate ${certificate ? describeCertificate(certificate) : '(none)'}`;
}

function admitted(config: SourceConfig): string {
  const token = config.token === undefined ? '' : ' with the --token-file token';
  if (!config.tls) return `accepted without a certificate (--insecure)${token}`;
  return `client certificate ${subjectLine(new X509Certificate(config.tls.cert))} accepted${token}`;
}
