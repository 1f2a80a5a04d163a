// What init.sh says and understands on its console: `wrote N boot ID` progress lines, and the
// `verify` request answered by `verify ok N blocks W boot ID` or `verify FAILED block B at N: ...`.
import type { SerialConsole } from './console.js';

const PROGRESS = /^wrote (\d+) boot (\w+)$/;

export interface Progress {
  /** Writes done. */
  n: number;
  boot: string;
  /** Its line's position in the console's lines. */
  index: number;
}

export interface VerifyResult {
  ok: boolean;
  line: string;
  /** Writes done when it verified. */
  n: number;
  /** The first bad block, on failure. */
  block: number | null;
}

/** The first progress line at or after console line `from`. */
export async function waitProgress(console: SerialConsole, from = 0, timeoutMs?: number): Promise<Progress> {
  const { match, index } = await console.waitLine(PROGRESS, from, timeoutMs);
  return { n: Number(match[1]), boot: match[2], index };
}

/** The last progress line printed so far, if any. */
export function lastProgress(console: SerialConsole): Progress | null {
  const { lines } = console;
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = PROGRESS.exec(lines[i]);
    if (m) return { n: Number(m[1]), boot: m[2], index: i };
  }
  return null;
}

/** Sends the request now; the result is the guest's next verify line (even if it is paused now). */
export async function requestVerify(console: SerialConsole, timeoutMs = 120_000): Promise<VerifyResult> {
  const from = console.lines.length;
  console.send('verify');
  const { line, match } = await console.waitLine(/^verify (ok|FAILED)(?: block (\d+))? (?:at )?(\d+)/, from, timeoutMs);
  return { ok: match[1] === 'ok', line, n: Number(match[3]), block: match[2] === undefined ? null : Number(match[2]) };
}
