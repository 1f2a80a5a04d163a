export { Registry, type SessionInfo, type StreamStatus, type TrackedStream } from './registry.js';
export { serveMetrics, startMetrics } from './server.js';
export { observedRelay, type Observation } from './observed-relay.js';
