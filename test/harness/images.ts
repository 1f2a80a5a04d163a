import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, truncate, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { run } from './child.js';
import { mulberry32 } from './prng.js';

const BLOCK = 4096;
/** Largest region: big enough for multi-chunk mirror writes, small enough that a 64 MiB image still mixes kinds. */
const MAX_REGION_BLOCKS = (8 << 20) / BLOCK;
/** Bytes handed to one write(); bounds memory for any image size. */
const WRITE_CHUNK = 4 << 20;
const PATTERN_BYTES = 512;

export interface TestImageSummary {
  size: number;
  /** Bytes written (random and pattern regions). */
  dataBytes: number;
  /** Bytes left as holes. */
  zeroBytes: number;
}

/**
 * Writes a sparse raw image of deterministic content for `seed`: a mix of
 * random regions, holes and repeated-pattern regions, 4 KiB to 8 MiB each, so
 * a mirror of it sends both NBD WRITE and WRITE_ZEROES.
 */
export async function createTestImage(path: string, sizeBytes: number, seed: number): Promise<TestImageSummary> {
  if (sizeBytes % BLOCK !== 0) throw new Error(`image size ${sizeBytes} is not a multiple of ${BLOCK}`);
  const nextRandom = mulberry32(seed);
  const keystream = aesCtrKeystream(seed);
  const file = await open(path, 'w');
  let dataBytes = 0;
  try {
    await file.truncate(sizeBytes);
    for (let offset = 0; offset < sizeBytes; ) {
      // Log-uniform length so small regions are as common as large ones.
      const blocks = Math.min(Math.ceil(MAX_REGION_BLOCKS ** nextRandom()), (sizeBytes - offset) / BLOCK);
      const length = blocks * BLOCK;
      const kind = Math.floor(nextRandom() * 3);
      if (kind !== 0) {
        const fill = kind === 1 ? keystream : patternFill(nextRandom);
        for (let done = 0; done < length; done += WRITE_CHUNK) {
          const n = Math.min(WRITE_CHUNK, length - done);
          await file.write(fill(n), 0, n, offset + done);
        }
        dataBytes += length;
      }
      offset += length;
    }
  } finally {
    await file.close();
  }
  return { size: sizeBytes, dataBytes, zeroBytes: sizeBytes - dataBytes };
}

/** A sparse raw image of zeros. */
export async function createBlankImage(path: string, sizeBytes: number): Promise<void> {
  await writeFile(path, '');
  await truncate(path, sizeBytes);
}

/**
 * `qemu-img compare` of two raw images; throws if qemu-img itself fails (exit code other than 0
 * or 1). `forceShare`: the images are still open in a (paused) QEMU, which holds their locks.
 */
export async function compareImages(a: string, b: string, opts: { forceShare?: boolean } = {}): Promise<{ identical: boolean; output: string }> {
  const args = ['compare', ...(opts.forceShare ? ['-U'] : []), '-f', 'raw', '-F', 'raw', a, b];
  const { code, stdout, stderr } = await run('qemu-img', args, { okCodes: [0, 1] });
  return { identical: code === 0, output: (stdout + stderr).trim() };
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** Fast seeded random bytes: AES-CTR keystream over zeros (hardware AES runs at GB/s). */
function aesCtrKeystream(seed: number): (n: number) => Buffer {
  const key = createHash('sha256').update(`nbd-tunnel test image ${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(WRITE_CHUNK);
  return (n) => cipher.update(zeros.subarray(0, n));
}

/** A fresh non-zero 512-byte pattern, repeated to any length. */
function patternFill(nextRandom: () => number): (n: number) => Buffer {
  const pattern = Buffer.alloc(PATTERN_BYTES);
  for (let i = 0; i < PATTERN_BYTES; i++) pattern[i] = 1 + Math.floor(nextRandom() * 255);
  return (n) => Buffer.alloc(n, pattern);
}
