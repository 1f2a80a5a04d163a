// Reaching the destination through an HTTP proxy: `CONNECT host:port`, then TLS runs inside the
// socket the proxy hands back, so the proxy sees the destination's name and encrypted bytes only.
import { request } from 'node:http';
import type { Socket } from 'node:net';

export interface HttpProxy {
  /** A name or address (an IPv6 one without brackets). */
  host: string;
  port: number;
  /** `USER:PASSWORD` for Proxy-Authorization (Basic); undefined for a proxy that asks for none. */
  credentials: string | undefined;
  /** Where the setting came from and the proxy without credentials, for messages: `--proxy http://proxy:3128`. */
  label: string;
}

/** The proxy answered CONNECT with something other than 2xx. */
export class ProxyRefusedError extends Error {
  override readonly name = 'ProxyRefusedError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** A socket to `host:port` through the proxy, ready for TLS; rejects after `timeoutMs`. */
export function connectThroughProxy(proxy: HttpProxy, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const headers: Record<string, string> = { host: authority };
  if (proxy.credentials !== undefined) headers['proxy-authorization'] = `Basic ${Buffer.from(proxy.credentials).toString('base64')}`;
  return new Promise((resolve, reject) => {
    let settled = false;
    let connected = false;
    const settle = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      outcome();
    };
    const req = request({
      host: proxy.host,
      port: proxy.port,
      method: 'CONNECT',
      path: authority,
      headers,
      setHost: false,
      agent: false,
    });
    const timer = setTimeout(() => {
      settle(() => reject(Object.assign(new Error(`${proxy.label}: no answer to CONNECT ${authority} within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
      req.destroy();
    }, timeoutMs);
    req.once('socket', (socket: Socket) => socket.once('connect', () => (connected = true)));
    req.once('connect', (response, socket: Socket, head: Buffer) => {
      const status = response.statusCode ?? 0;
      if (settled || status < 200 || status > 299) {
        socket.destroy();
        const hint = status !== 407 ? '' : proxy.credentials !== undefined ? '; check the user and password in its URL' : '; give its user and password in the URL: http://USER:PASSWORD@HOST:PORT';
        const answer = `${status} ${response.statusMessage ?? ''}`.trim();
        settle(() => reject(new ProxyRefusedError(`the proxy refused CONNECT to ${authority}: ${answer} (${proxy.label}${hint})`, status)));
        return;
      }
      if (head.length > 0) socket.unshift(head);
      settle(() => resolve(socket));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      const what = connected ? 'closed the connection before answering CONNECT' : 'cannot connect';
      settle(() => reject(Object.assign(new Error(`${proxy.label}: ${what}: ${error.code ?? error.message}`), { code: error.code })));
    });
    req.end();
  });
}
