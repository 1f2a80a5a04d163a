// --metrics HOST:PORT: /metrics (Prometheus text format), /status (JSON) and /healthz, plain
// HTTP, meant for loopback or a management network. What they answer comes from a MetricsView:
// this process's own figures, or, in a primary, its workers' merged (cluster-view.ts).
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type HealthReading = { ok: true } | { ok: false; reason: string };

/** Whether the process does its job now: the destination's listener, the source's tunnel. */
export type Health = () => HealthReading;

export interface MetricsView {
  contentType: string;
  metrics(): Promise<string>;
  status(): Promise<object>;
  health(): Promise<HealthReading>;
}

export interface ServedMetrics {
  /** For the ready line: the bound address (port 0 picks one). */
  fields: Record<string, unknown>;
  close(): Promise<void>;
}

/** Sends what `work` gives, or a 500 with the error's message. */
function answer<T>(work: Promise<T>, send: (value: T) => void, response: ServerResponse): void {
  work.then(send, (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${error.message}\n`));
}

export async function serveMetrics(where: { host: string; port: number }, view: MetricsView): Promise<ServedMetrics> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      answer(view.metrics(), (text) => response.writeHead(200, { 'content-type': view.contentType }).end(text), response);
    } else if (path === '/status') {
      answer(view.status(), (doc) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc)), response);
    } else if (path === '/healthz') {
      answer(
        view.health(),
        (now) => response.writeHead(now.ok ? 200 : 503, { 'content-type': 'text/plain' }).end(now.ok ? 'ok\n' : `${now.reason}\n`),
        response,
      );
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('nbd-tunnel: /metrics, /status or /healthz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`--metrics ${where.host}:${where.port}: cannot listen: ${error.code ?? error.message}`)));
    server.listen(where.port, where.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    fields: { metrics: `${address.address}:${address.port}` },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
