// Memory figures of a proxy after a forced garbage collection: far less noisy than RSS, so a
// leak of a few bytes per connection shows. The proxy is started with heapProbeEnv(dir) in its
// environment (a preload module; nothing in the product), then sampled by PID.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import type { Child } from './child.js';

export interface HeapSample {
  /** V8 heap in use after the collection. */
  heapUsed: number;
  /** Memory outside the V8 heap held by JavaScript objects (Buffers included). */
  external: number;
  arrayBuffers: number;
  rss: number;
}

const PRELOAD = pathToFileURL(join(import.meta.dirname, 'heap-probe-preload.mjs')).href;

/** Environment for a proxy that `sampleHeap` will sample; its figures are written under `dir`. */
export function heapProbeEnv(dir: string): Record<string, string> {
  return { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${PRELOAD}`.trim(), NBDT_TEST_HEAP_DIR: dir };
}

async function readSample(file: string): Promise<(HeapSample & { seq: number }) | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as HeapSample & { seq: number };
  } catch {
    return null;
  }
}

/** Asks the child (started with heapProbeEnv(dir)) to collect garbage and report; resolves with its figures. */
export async function sampleHeap(child: Child, dir: string, timeoutMs = 10_000): Promise<HeapSample> {
  const file = join(dir, `heap.${child.pid}.json`);
  const before = (await readSample(file))?.seq ?? 0;
  child.proc.kill('SIGUSR2');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const sample = await readSample(file);
    if (sample && sample.seq > before) return sample;
    if (Date.now() > deadline) throw new Error(`no heap figures from PID ${child.pid} within ${timeoutMs} ms (started without heapProbeEnv?)`);
    await sleep(20);
  }
}
