export { Registry, type SessionInfo, type SessionStatus, type StreamStatus } from './registry.js';
export { startMetrics, type Health } from './server.js';
export { observedRelay, type Observation } from './observed-relay.js';
