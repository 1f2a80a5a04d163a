// An HTTP CONNECT proxy on 127.0.0.1 for the --proxy tests: counts the tunnels it opens, may
// require Basic credentials (407 without them) or refuse every CONNECT (403), and can drop its
// open tunnels at once, as a proxy restart would.
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';

export interface ConnectProxyOptions {
  /** `USER:PASSWORD` a CONNECT must carry in Proxy-Authorization (Basic). */
  credentials?: string;
  /** Answer every CONNECT with 403 Forbidden. */
  refuse?: boolean;
}

export interface ConnectProxy {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly port: number;
  /** CONNECTs answered 200, and the HOST:PORT each asked for. */
  readonly tunnels: string[];
  /** Destroys every open tunnel, both sides. */
  dropAll(): void;
  close(): Promise<void>;
}

export async function startConnectProxy(options: ConnectProxyOptions = {}): Promise<ConnectProxy> {
  const tunnels: string[] = [];
  const open = new Set<Socket>();
  const track = (socket: Socket): void => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  };
  const expected = options.credentials === undefined ? undefined : `Basic ${Buffer.from(options.credentials).toString('base64')}`;
  const server = createServer();
  server.on('connect', (request: IncomingMessage, client: Socket, head: Buffer) => {
    track(client);
    client.on('error', () => client.destroy());
    const answer = (status: string): void => void client.end(`HTTP/1.1 ${status}\r\ncontent-length: 0\r\n\r\n`);
    if (options.refuse) return answer('403 Forbidden');
    if (expected !== undefined && request.headers['proxy-authorization'] !== expected) return answer('407 Proxy Authentication Required');
    const target = request.url ?? '';
    const colon = target.lastIndexOf(':');
    const upstream = connect(Number(target.slice(colon + 1)), target.slice(0, colon).replace(/^\[|\]$/g, ''));
    track(upstream);
    upstream.once('error', () => (client.destroy(), upstream.destroy()));
    upstream.once('connect', () => {
      tunnels.push(target);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      client.pipe(upstream).pipe(client);
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  const dropAll = (): void => {
    for (const socket of open) socket.destroy();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    tunnels,
    dropAll,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      dropAll();
      await closed;
    },
  };
}
