// A guest-like writer: 4 KiB writes at random aligned offsets, one at a time, each timed.
// Through a write-blocking mirror each write completes only once the destination has it, so
// these latencies are what a guest would feel during migration.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { NbdClient } from '../test/harness/nbd-client.js';

const BLOCK = 4096;
/** Distinct payloads cycled through, so consecutive writes do not carry identical data. */
const PAYLOADS = 64;

export interface WriteSample {
  /** performance.now() when the write completed. */
  at: number;
  latencyMs: number;
}

export interface GuestWriter {
  /** Stops after the write in progress; resolves with every sample. */
  stop(): Promise<WriteSample[]>;
}

export async function startGuestWriter(socketPath: string, exportName: string, seed: number): Promise<GuestWriter> {
  const client = await NbdClient.connect(socketPath, exportName);
  const payloads = Array.from({ length: PAYLOADS }, () => randomBytes(BLOCK));
  const blocks = Math.floor(client.size / BLOCK);
  const random = lcg(seed);
  const samples: WriteSample[] = [];
  let stopping = false;
  const loop = (async () => {
    try {
      for (let i = 0; !stopping; i++) {
        const offset = Math.floor(random() * blocks) * BLOCK;
        const start = performance.now();
        await client.write(offset, payloads[i % PAYLOADS]);
        const at = performance.now();
        samples.push({ at, latencyMs: at - start });
      }
    } finally {
      await client.close();
    }
  })();
  // A failed write surfaces from stop(); until then it must not be an unhandled rejection.
  loop.catch(() => {});
  return {
    async stop() {
      stopping = true;
      await loop;
      return samples;
    },
  };
}

/** A seeded generator in [0, 1): the offsets repeat across paths, so every path gets the same writes. */
function lcg(seed: number): () => number {
  let state = BigInt(seed) & 0xffff_ffff_ffffn;
  return () => {
    state = (state * 0x5deece66dn + 0xbn) & 0xffff_ffff_ffffn;
    return Number(state >> 17n) / 2 ** 31;
  };
}
