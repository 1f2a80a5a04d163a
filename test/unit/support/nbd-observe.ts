// Runs an inspector over a conversation and collects what it reports.
import { NbdInspector, type NbdInspectorOptions, type NbdStreamStats } from '../../../src/nbd/index.js';
import type { Script } from './nbd-wire.js';

export interface Observation {
  stats: NbdStreamStats;
  /** Every event, in order, as [name, ...arguments]. */
  events: unknown[][];
}

/** A fixed clock, so that snapshots compare equal whatever the timing. */
export const frozen = (): number => 0;

export function observer(options: NbdInspectorOptions = {}): { inspector: NbdInspector; events: unknown[][] } {
  const events: unknown[][] = [];
  const inspector = new NbdInspector({
    now: frozen,
    ...options,
    listener: {
      negotiated: (info) => events.push(['negotiated', info]),
      error: (error) => events.push(['error', error]),
      optionError: (error) => events.push(['optionError', error]),
      stopped: (reason, notNbd) => events.push(['stopped', reason, notNbd]),
      disconnect: (via) => events.push(['disconnect', via]),
    },
  });
  return { inspector, events };
}

/** Feeds `script` with `feeder` into a fresh inspector. */
export function observe(
  script: Script,
  feeder: (inspector: NbdInspector, script: Script) => void,
  options: NbdInspectorOptions = {},
): Observation {
  const { inspector, events } = observer(options);
  feeder(inspector, script);
  return { stats: inspector.snapshot(), events };
}
