// What every demo gets from scripts/demo.ts.
import type { Stops } from './stops.js';

export interface Demo {
  /** A temp folder of its own, removed afterwards. */
  dir: string;
  stops: Stops;
  /** Also run the baseline without the tunnel. */
  direct: boolean;
  say(text: string): void;
}

export interface Outcome {
  ok: boolean;
  /** What the verdict line says in parentheses. */
  verdict: string;
}
