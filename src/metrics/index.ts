export { Registry, type SessionInfo, type SessionStatus, type StreamStatus } from './registry.js';
export { startMetrics } from './server.js';
export { observedRelay, type Observation } from './observed-relay.js';
