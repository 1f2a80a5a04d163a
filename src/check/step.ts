// One line of `nbd-tunnel check`: a verdict, then what was found or what to fix.

export interface Step {
  verdict: 'ok' | 'FAIL' | 'skip';
  text: string;
}

export const passed = (text: string): Step => ({ verdict: 'ok', text });
export const failed = (text: string): Step => ({ verdict: 'FAIL', text });

/** The verdict in a column of its own, so that `grep ^FAIL` finds what to fix. */
export function formatStep(step: Step): string {
  return `${step.verdict.padEnd(6)}${step.text}\n`;
}
