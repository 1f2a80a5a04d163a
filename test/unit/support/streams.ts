// Small helpers for feeding and draining streams in tests.
import { createHash, randomBytes } from 'node:crypto';
import type { Duplex, Readable } from 'node:stream';
import { once } from 'node:events';

/** Reads a stream to its end; resolves with the byte count and SHA-256. */
export async function drain(stream: Readable): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  // destroyOnReturn false: reading to the end must not reset a half-open duplex.
  for await (const chunk of stream.iterator({ destroyOnReturn: false })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

/** Writes `total` random bytes in `chunkSize` pieces honouring backpressure, then ends; resolves with the SHA-256. */
export async function feed(stream: Duplex, total: number, chunkSize = 64 * 1024): Promise<string> {
  const hash = createHash('sha256');
  const block = randomBytes(Math.min(chunkSize, total));
  let left = total;
  let seq = 0;
  while (left > 0) {
    const n = Math.min(left, block.length);
    const chunk = Buffer.from(block.subarray(0, n));
    if (n >= 4) chunk.writeUInt32BE(seq++ >>> 0, 0); // chunks differ, so reordering changes the hash
    hash.update(chunk);
    left -= n;
    if (!stream.write(chunk)) await once(stream, 'drain');
  }
  stream.end();
  return hash.digest('hex');
}
