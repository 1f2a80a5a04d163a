// --metrics HOST:PORT: /metrics (Prometheus text format) and /status (JSON), plain HTTP,
// meant for loopback or a management network.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { prometheusRegistry } from './prometheus.js';
import type { Registry } from './registry.js';
import { VERSION } from '../version.js';

/** Whether the process does its job now: the destination's listener, the source's tunnel. */
export type Health = () => { ok: true } | { ok: false; reason: string };

async function serveMetrics(registry: Registry, host: string, port: number, role: string, health: Health): Promise<{ address: AddressInfo; close(): Promise<void> }> {
  const prom = prometheusRegistry(registry);
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      prom.metrics().then(
        (text) => response.writeHead(200, { 'content-type': prom.contentType }).end(text),
        (error: Error) => response.writeHead(500).end(`${error.message}\n`),
      );
    } else if (path === '/status') {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ role, version: VERSION, pid: process.pid, ...registry.status() }));
    } else if (path === '/healthz') {
      const now = health();
      response.writeHead(now.ok ? 200 : 503, { 'content-type': 'text/plain' }).end(now.ok ? 'ok\n' : `${now.reason}\n`);
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('nbd-tunnel: /metrics, /status or /healthz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`--metrics ${host}:${port}: cannot listen: ${error.code ?? error.message}`)));
    server.listen(port, host, () => resolve());
  });
  return {
    address: server.address() as AddressInfo,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Serves metrics when configured; `fields` go into the ready line (the bound port, for port 0). */
export async function startMetrics(
  where: { host: string; port: number } | undefined,
  registry: Registry,
  role: string,
  health: Health,
): Promise<{ fields: Record<string, unknown>; close(): Promise<void> }> {
  if (!where) return { fields: {}, close: async () => {} };
  const served = await serveMetrics(registry, where.host, where.port, role, health);
  return { fields: { metrics: `${served.address.address}:${served.address.port}` }, close: served.close };
}
