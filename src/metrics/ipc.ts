// What a primary and its workers say to each other about /metrics, /status and /healthz, over
// the cluster's IPC channel: the primary asks every worker, each answers with its own figures.
import type { HealthReading } from './server.js';
import type { SessionStatus } from './registry.js';

export type Topic = 'metrics' | 'status' | 'health';

export interface Ask {
  type: 'nbd-tunnel-metrics-ask';
  id: number;
  topic: Topic;
}

/** `body`: prom-client's metrics as JSON, a WorkerStatus or a HealthReading; `error` instead when it failed. */
export interface Answer {
  type: 'nbd-tunnel-metrics-answer';
  id: number;
  body?: unknown;
  error?: string;
}

/** A worker's part of /status: its health beside its sessions. */
export interface WorkerStatus {
  health: HealthReading;
  sessions: SessionStatus[];
}
