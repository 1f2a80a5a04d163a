export { Registry, type SessionInfo, type SessionStatus, type StreamStatus } from './registry.js';
export { startClusterMetrics, startMetrics } from './start.js';
export type { Health } from './server.js';
export type { WorkerState } from './cluster-view.js';
export { observedRelay, type Observation } from './observed-relay.js';
