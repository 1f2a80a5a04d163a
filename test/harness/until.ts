import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `probe` every 50 ms until it returns something other than null; fails after `timeoutMs`
 * naming `what`, with `context()` (what the test saw) when given.
 */
export async function until<T>(what: string, probe: () => T | null | Promise<T | null>, timeoutMs = 10_000, context?: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${context ? `; seen:\n${context()}` : ''}`);
    await sleep(50);
  }
}
