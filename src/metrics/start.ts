// --metrics in each kind of process: alone, it serves its own figures; a worker answers its
// primary instead; the primary serves every worker's, merged.
// prom-client and the views are loaded only when --metrics asks for them: about 11 MiB of
// resident memory that a proxy without --metrics does not carry.
import { inWorker, type Member } from '../workers.js';
import type { Registry } from './registry.js';
import { serveMetrics, type Health, type ServedMetrics } from './server.js';

type Where = { host: string; port: number } | undefined;

const notServed: ServedMetrics = { fields: {}, close: async () => {} };

/** A process's own figures: served on `where`, or, in a worker, handed to the primary. */
export async function startMetrics(where: Where, registry: Registry, role: string, health: Health): Promise<ServedMetrics> {
  if (!where) return notServed;
  const { processFigures, processView } = await import('./process-view.js');
  const figures = processFigures(registry, health);
  if (!inWorker) return serveMetrics(where, processView(figures, role));
  const { answerPrimary } = await import('./worker-answers.js');
  const stop = answerPrimary(figures);
  return { fields: {}, close: async () => stop() };
}

/** In the primary: every worker's figures, merged. */
export async function startClusterMetrics(where: Where, role: string, members: () => Member[]): Promise<ServedMetrics> {
  if (!where) return notServed;
  const { clusterView } = await import('./cluster-view.js');
  return serveMetrics(where, clusterView(role, members));
}
