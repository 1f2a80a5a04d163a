// One process's own figures behind /metrics, /status and /healthz: served by the process itself,
// or, in a worker, handed to the primary that serves them for all (worker-answers.ts).
import { VERSION } from '../version.js';
import { prometheusRegistry } from './prometheus.js';
import type { Registry } from './registry.js';
import type { Health, MetricsView } from './server.js';

export interface ProcessFigures {
  prom: ReturnType<typeof prometheusRegistry>;
  registry: Registry;
  health: Health;
}

export function processFigures(registry: Registry, health: Health): ProcessFigures {
  return { prom: prometheusRegistry(registry), registry, health };
}

export function processView({ prom, registry, health }: ProcessFigures, role: string): MetricsView {
  return {
    contentType: prom.contentType,
    metrics: () => prom.metrics(),
    status: async () => ({ role, version: VERSION, pid: process.pid, ...registry.status() }),
    health: async () => health(),
  };
}
