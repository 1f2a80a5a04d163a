// The NBD side of the tunnel: protocol constants and the passive inspector (issue 4).
export {
  NbdInspector,
  type NbdCommandName,
  type NbdInspectorListener,
  type NbdInspectorOptions,
  type NbdMetaContext,
  type NbdNegotiation,
  type NbdOptionError,
  type NbdRequestError,
  type NbdStreamStats,
} from './inspector.js';
export { COVERAGE_MAX_UNITS } from './coverage.js';
export { observeNbd, type NbdObserver } from './observe.js';
