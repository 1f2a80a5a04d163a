// The source's side of the tunnel: one TLS 1.3 WebSocket, then a yamux client session on it.
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocket, type ClientOptions as WsClientOptions } from 'ws';
import { DEFAULT_MAX_FRAME_PAYLOAD, SUBPROTOCOL, UPGRADE_TIMEOUT_MS } from './const.js';
import { Session, type SessionOptions } from './session.js';
import { explainConnectError } from './tls-errors.js';
import { WsTransport } from './ws-transport.js';

export interface ClientOptions {
  url: string;
  /** Absent only for ws:// (--insecure, loopback). */
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Name to expect in the destination's certificate (and send as SNI), if not the URL's host. */
  servername?: string;
  token?: string;
  session?: Omit<SessionOptions, 'client'>;
}

/** Masking guards HTTP intermediaries against forged requests; inside TLS there are none to guard. */
function zeroMask(mask: Buffer): void {
  mask.fill(0);
}

const MAX_REFUSAL_BODY = 4096;

export function connectTunnel(options: ClientOptions): Promise<Session> {
  return new Promise((resolve, reject) => {
    // ws hands these to tls.connect, which also checks the certificate against servername.
    const wsOptions: WsClientOptions & { servername?: string } = {
      ca: options.ca,
      cert: options.cert,
      key: options.key,
      servername: options.servername,
      minVersion: 'TLSv1.3',
      perMessageDeflate: false,
      handshakeTimeout: UPGRADE_TIMEOUT_MS,
      maxPayload: options.session?.maxFramePayload ?? DEFAULT_MAX_FRAME_PAYLOAD,
      generateMask: zeroMask,
      headers: options.token ? { authorization: `Bearer ${options.token}` } : {},
    };
    const ws = new WebSocket(options.url, [SUBPROTOCOL], wsOptions);
    let socket: Socket | null = null;
    let settled = false;
    const fail = (message: string): void => {
      if (settled) return;
      settled = true;
      ws.terminate();
      reject(new Error(message));
    };
    ws.once('upgrade', (response: IncomingMessage) => {
      socket = response.socket;
    });
    ws.once('unexpected-response', (_request, response: IncomingMessage) => {
      readBody(response).then(
        (body) => fail(`destination refused the tunnel: HTTP ${response.statusCode}: ${body || response.statusMessage}`),
        () => fail(`destination refused the tunnel: HTTP ${response.statusCode}`),
      );
    });
    ws.once('error', (error: Error) => fail(`cannot connect to ${options.url}: ${explainConnectError(error)}`));
    ws.once('open', () => {
      if (settled) return;
      settled = true;
      if (!socket) {
        ws.terminate();
        reject(new Error('internal error: WebSocket opened without an upgrade socket'));
        return;
      }
      ws.removeAllListeners('error'); // from here on the transport reports errors
      resolve(new Session(new WsTransport(ws, socket), { ...options.session, client: true }));
    });
  });
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
