// The source's side of the tunnel: one TLS 1.3 WebSocket, then a yamux client session on it;
// after a loss, a new WebSocket that resumes the session.
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { connect as netConnect, isIP, type NetConnectOpts, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { ClientOptions as WsClientOptions, WebSocket } from 'ws';
import type { RevocationList } from '../revocation/index.js';
import { DEFAULT_MAX_FRAME_PAYLOAD, SUBPROTOCOL, UPGRADE_TIMEOUT_MS } from './const.js';
import { ConnectError, TunnelRefusedError } from './errors.js';
import { connectThroughProxy, type HttpProxy } from './http-proxy.js';
import { RESUME_HEADER, RESUME_NEW, SECRET_HEADER, SESSION_HEADER, type Ticket } from './resume-table.js';
import { Session, type SessionOptions } from './session.js';
import { explainConnectError } from './tls-errors.js';
import { WsTransport } from './ws-transport.js';

export interface ClientOptions {
  url: string;
  /** Absent only for ws:// (--insecure, loopback). */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** --crl: destination certificates it revokes are refused. */
  crl?: RevocationList;
  /** Reach the destination through this HTTP proxy (CONNECT). */
  proxy?: HttpProxy;
  /** Name to expect in the destination's certificate (and send as SNI), if not the URL's host. */
  servername?: string;
  token?: string;
  /** resumeTimeoutMs above 0 asks for a resumable session; it is one if the destination agrees. */
  session?: Omit<SessionOptions, 'client'>;
  /**
   * Called with the TCP (or TLS) socket as soon as it exists, before it connects: for a caller
   * that reports how far a connection got (`nbd-tunnel check`).
   */
  onSocket?: (socket: Socket) => void;
}

/** Masking guards HTTP intermediaries against forged requests; inside TLS there are none to guard. */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

const MAX_REFUSAL_BODY = 4096;

/** What resumes each resumable session; kept here, away from logs and from the session's users. */
const tickets = new WeakMap<Session, Ticket>();

export async function connectTunnel(options: ClientOptions): Promise<Session> {
  const wanted = options.session?.resumeTimeoutMs ?? 0;
  const { ws, socket, response } = await openWebSocket(options, wanted > 0 ? { [RESUME_HEADER]: RESUME_NEW } : {});
  const id = response.headers[SESSION_HEADER];
  const secret = response.headers[SECRET_HEADER];
  const ticket = typeof id === 'string' && typeof secret === 'string' ? { id, secret } : null;
  const session = new Session(new WsTransport(ws, socket), { ...options.session, resumeTimeoutMs: ticket ? wanted : 0, client: true });
  if (ticket) tickets.set(session, ticket);
  return session;
}

/** The destination's name for a session: the same in both sides' logs. */
export function sessionId(session: Session): string | undefined {
  return tickets.get(session)?.id;
}

/**
 * Continues a suspended session over a new WebSocket. Rejects with TunnelRefusedError 410 when
 * the destination no longer has the session (restarted, or expired), 403 when it refuses us.
 */
export async function resumeTunnel(options: ClientOptions, session: Session): Promise<void> {
  const ticket = tickets.get(session);
  if (!ticket) throw new Error('internal error: resuming a session the destination did not make resumable');
  const { ws, socket } = await openWebSocket(options, { [RESUME_HEADER]: ticket.id, [SECRET_HEADER]: ticket.secret });
  if (session.closed) {
    ws.terminate();
    throw new Error('the session closed while reconnecting');
  }
  session.resume(new WsTransport(ws, socket));
}

/**
 * ws passes the TLS options on to tls.connect; its typings give createConnection net.connect's
 * overloads, but ws calls it with its one options object.
 */
type WsOptions = Omit<WsClientOptions, 'createConnection'> & {
  servername?: string;
  crl?: string[];
  createConnection?: (options: ConnectionOptions) => Socket;
};

/** The destination's certificate (DER) as the handshake presented it. */
interface PeerCertificate {
  raw?: Buffer;
}

interface Opened {
  ws: WebSocket;
  socket: Socket;
  response: IncomingMessage;
}

async function openWebSocket(options: ClientOptions, headers: Record<string, string>): Promise<Opened> {
  // One deadline for the whole: the proxy's CONNECT, the TLS handshake and the upgrade.
  const deadline = Date.now() + UPGRADE_TIMEOUT_MS;
  const url = new URL(options.url);
  const tunnel = options.proxy ? await connectThroughProxy(options.proxy, url.hostname.replace(/^\[|\]$/g, ''), Number(url.port), deadline - Date.now()) : undefined;
  const peer: PeerCertificate = {};
  // Loaded on first use: a destination, which never connects out, does not carry ws.
  const { WebSocket } = await import('ws');
  return new Promise((resolve, reject) => {
    // ws hands these to tls.connect, which also checks the certificate against servername.
    const wsOptions: WsOptions = {
      ca: options.ca,
      cert: options.cert,
      key: options.key,
      crl: options.crl?.pems,
      servername: options.servername,
      minVersion: 'TLSv1.3',
      perMessageDeflate: false,
      handshakeTimeout: Math.max(1, deadline - Date.now()),
      maxPayload: options.session?.maxFramePayload ?? DEFAULT_MAX_FRAME_PAYLOAD,
      generateMask: zeroMask,
      headers: { ...headers, ...(options.token ? { authorization: `Bearer ${options.token}` } : {}) },
      // ws calls it with the request's options, one object (its type names net's overloads).
      createConnection: (connectOptions: ConnectionOptions) => {
        const socket = url.protocol === 'wss:' ? connectTls(connectOptions, tunnel, peer) : (tunnel ?? connectPlain(connectOptions));
        options.onSocket?.(socket);
        return socket;
      },
    };
    const ws = new WebSocket(options.url, [SUBPROTOCOL], wsOptions as WsClientOptions);
    let upgrade: IncomingMessage | null = null;
    let settled = false;
    const fail = (error: Error): void => {
      if (settled) return;
      settled = true;
      ws.terminate();
      reject(error);
    };
    ws.once('upgrade', (response: IncomingMessage) => {
      upgrade = response;
    });
    ws.once('unexpected-response', (_request, response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      const refused = (detail: string) => fail(new TunnelRefusedError(`destination refused the tunnel: HTTP ${status}${detail}`, status));
      readBody(response).then(
        (body) => refused(`: ${body || response.statusMessage}`),
        () => refused(''),
      );
    });
    ws.once('error', (error: Error & { code?: string }) => {
      const explained = explainConnectError(error, { crl: options.crl, certificate: peer.raw && new X509Certificate(peer.raw) });
      fail(new ConnectError(options.url, explained, error.code, { cause: error }));
    });
    ws.once('open', () => {
      if (settled) return;
      const response: IncomingMessage | null = upgrade;
      if (!response) {
        fail(new Error('internal error: WebSocket opened without an upgrade response'));
        return;
      }
      settled = true;
      ws.removeAllListeners('error'); // from here on the transport reports errors
      resolve({ ws, socket: response.socket as Socket, response });
    });
  });
}

/** ws:// (--insecure, loopback): what ws would do. `path` in its options is the URL's; a socket's is `socketPath`. */
function connectPlain(options: ConnectionOptions & { socketPath?: string }): Socket {
  return netConnect({ ...options, path: options.socketPath } as NetConnectOpts);
}

/**
 * What ws would do (tls.connect, SNI from the host unless it is an address), over the proxy's
 * socket when there is one. Node checks the destination's certificate between the socket's
 * internal 'secure' event and 'secureConnect', and drops it before reporting a refusal: it is
 * kept here so that a revocation message can name its serial. (getPeerCertificate(), not
 * getPeerX509Certificate(): in Node 20 the latter, called first, leaves the host name check an
 * empty certificate.)
 */
function connectTls(options: ConnectionOptions, socket: Socket | undefined, peer: PeerCertificate): Socket {
  const host = options.host ?? '';
  const tls = tlsConnect({ ...options, path: undefined, servername: options.servername || (isIP(host) ? '' : host), socket });
  tls.prependListener('secure', () => (peer.raw = tls.getPeerCertificate().raw));
  return tls;
}

function readBody(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      if (body.length < MAX_REFUSAL_BODY) body += chunk;
    });
    response.on('end', () => resolve(body.slice(0, MAX_REFUSAL_BODY).trim()));
    response.on('error', reject);
  });
}
