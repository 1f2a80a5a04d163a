// The destination's side of the tunnel: a TLS 1.3 HTTPS server that upgrades authenticated
// requests to WebSockets and runs a yamux server session on each.
import { EventEmitter } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RevocationList } from '../revocation/index.js';
import { DEFAULT_MAX_FRAME_PAYLOAD, SUBPROTOCOL, UPGRADE_TIMEOUT_MS } from './const.js';
import { RESUME_HEADER, RESUME_NEW, ResumeTable, SECRET_HEADER, SESSION_HEADER, isResumeRequest } from './resume-table.js';
import { ServerWsTransport } from './server-ws-transport.js';
import { Session, type SessionOptions } from './session.js';
import { acceptUpgrade, upgradeRequestProblem } from './ws-handshake.js';

/** Shutting down waits this long for WebSockets to finish their close (a second more than their own grace). */
const CLOSE_WAIT_MS = 2_000;

/**
 * identity: the name to log; identities: every name the client is known by (for authorization);
 * principal: its exact credentials (certificate fingerprint, token digest), which a resume must match.
 */
export type Admission = { ok: true; identity: string; identities: string[]; principal: string } | { ok: false; status: number; reason: string };

export interface ServerOptions {
  host: string;
  port: number;
  /** undefined: plain ws:// (--insecure, loopback only; the caller checks the address). */
  tls: ServerTls | undefined;
  /** Decides on each upgrade request (new or resuming); with TLS, a client certificate has been asked for. */
  admit(request: IncomingMessage, socket: Socket): Admission;
  session?: Omit<SessionOptions, 'client'>;
  /** TLS handshake plus WebSocket upgrade must finish within this (a hard deadline, not idle time). */
  upgradeTimeoutMs?: number;
  /** This process's name among workers sharing the port, for session ids. */
  instance?: string;
}

export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  /** --crl: client certificates it revokes are not authorized (authorizationError CERT_REVOKED). */
  crl?: RevocationList;
}

export interface PeerInfo {
  identity: string;
  identities: string[];
  address: string;
}

export interface TunnelServerEvents {
  session: [session: Session, peer: PeerInfo];
  /** A suspended session continues on a new connection. */
  resumed: [session: Session, peer: PeerInfo];
  /** A connection that did not become a session, and why. */
  refused: [peer: { address: string }, status: number, reason: string];
}

const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  408: 'Request Timeout',
  410: 'Gone',
  421: 'Misdirected Request',
  426: 'Upgrade Required',
};

export class TunnelServer extends EventEmitter<TunnelServerEvents> {
  private readonly https: HttpServer | HttpsServer;
  private readonly upgradeTimeoutMs: number;
  /** Deadlines of connections that are not sessions yet. */
  private readonly deadlines = new WeakMap<Socket, NodeJS.Timeout>();
  private readonly resumable: ResumeTable;
  private readonly maxFrame: number;

  constructor(private readonly options: ServerOptions) {
    super();
    this.upgradeTimeoutMs = options.upgradeTimeoutMs ?? UPGRADE_TIMEOUT_MS;
    this.resumable = new ResumeTable(options.instance);
    this.https = options.tls
      ? createHttpsServer({
          ...secureContextOptions(options.tls),
          handshakeTimeout: this.upgradeTimeoutMs,
          requestCert: true,
          // Verified in admit() instead, so that a refused client is told why over HTTP.
          rejectUnauthorized: false,
        })
      : createHttpServer();
    // The source sends a yamux header and its payload as separate messages, at most a frame's payload each.
    this.maxFrame = options.session?.maxFramePayload ?? DEFAULT_MAX_FRAME_PAYLOAD;
    this.https.on(options.tls ? 'secureConnection' : 'connection', (socket: Socket) => this.armUpgradeDeadline(socket));
    this.https.on('request', (request, response) => {
      this.emit('refused', { address: addressOf(request.socket) }, 426, 'plain HTTP request, not a WebSocket upgrade');
      response.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
      response.end(`nbd-tunnel: connect with a WebSocket (subprotocol ${SUBPROTOCOL})\n`);
    });
    this.https.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(request, socket, head));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.https.once('error', reject);
      this.https.listen(this.options.port, this.options.host, () => {
        this.https.off('error', reject);
        resolve(this.https.address() as AddressInfo);
      });
    });
  }

  /** New certificates for connections accepted from now on. */
  setTls(tls: ServerTls): void {
    if ('setSecureContext' in this.https) this.https.setSecureContext(secureContextOptions(tls));
  }

  /** Stops accepting; sessions already running are the caller's to close. */
  /** Stops listening; settles when every connection has closed, or after CLOSE_WAIT_MS (a peer mid-handshake is not waited for). */
  close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.https.close(() => resolve()));
    return Promise.race([closed, sleep(CLOSE_WAIT_MS, undefined, { ref: false })]);
  }

  private onUpgrade(request: IncomingMessage, socket: Socket, head: Buffer): void {
    const problem = upgradeRequestProblem(request);
    if (problem) {
      this.refuse(socket, 400, problem);
      return;
    }
    const offered = (request.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p.length > 0);
    if (!offered.includes(SUBPROTOCOL)) {
      const theirs = offered.length > 0 ? offered.join(', ') : 'no subprotocol';
      this.refuse(socket, 400, `protocol version mismatch: the peer offers ${theirs}, this destination speaks ${SUBPROTOCOL}`);
      return;
    }
    const admission = this.options.admit(request, socket);
    if (!admission.ok) {
      this.refuse(socket, admission.status, admission.reason);
      return;
    }
    const peer = { identity: admission.identity, identities: admission.identities, address: addressOf(socket) };
    if (isResumeRequest(request)) {
      const found = this.resumable.find(request, admission.principal);
      if (!found.ok) {
        this.refuse(socket, found.status, found.reason);
        return;
      }
      found.session.resume(this.upgrade(request, socket, head, []));
      this.emit('resumed', found.session, peer);
      return;
    }
    const resumeTimeoutMs = request.headers[RESUME_HEADER] === RESUME_NEW ? (this.options.session?.resumeTimeoutMs ?? 0) : 0;
    const ticket = resumeTimeoutMs > 0 ? this.resumable.newTicket() : undefined;
    const headers = ticket ? [`${SESSION_HEADER}: ${ticket.id}`, `${SECRET_HEADER}: ${ticket.secret}`] : [];
    const session = new Session(this.upgrade(request, socket, head, headers), { ...this.options.session, resumeTimeoutMs, client: false });
    if (ticket) this.resumable.add(ticket, session, admission.principal);
    this.emit('session', session, peer);
  }

  /** Answers 101 and makes the socket a transport: a session from here on, so no upgrade deadline. */
  private upgrade(request: IncomingMessage, socket: Socket, head: Buffer, headers: string[]): ServerWsTransport {
    clearTimeout(this.deadlines.get(socket));
    acceptUpgrade(request, socket, SUBPROTOCOL, headers);
    return new ServerWsTransport(socket, head, this.maxFrame);
  }

  private refuse(socket: Socket, status: number, reason: string): void {
    this.emit('refused', { address: addressOf(socket) }, status, reason);
    const body = `nbd-tunnel: ${reason}\n`;
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nconnection: close\r\ncontent-type: text/plain\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }

  /** A connection that is not a session by the deadline is dropped, however slowly it trickles bytes. */
  private armUpgradeDeadline(socket: Socket): void {
    const timer = setTimeout(() => {
      this.emit('refused', { address: addressOf(socket) }, 408, `no WebSocket upgrade within ${this.upgradeTimeoutMs} ms`);
      socket.destroy();
    }, this.upgradeTimeoutMs);
    this.deadlines.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  }
}

function secureContextOptions({ cert, key, ca, crl }: ServerTls) {
  return { cert, key, ca, crl: crl?.pems, minVersion: 'TLSv1.3' as const };
}

function addressOf(socket: Socket): string {
  return `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}
