import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Creates a fresh directory under the OS temp dir. Keep `prefix` short: the
 * sockets tests put in here must fit the 107-byte sun_path limit.
 */
export function makeTempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** Removes a directory tree; a missing directory is not an error, so it is safe in `finally`. */
export async function removeDir(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
}
