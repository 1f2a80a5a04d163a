// What an end-to-end test file shares: a temp folder with a throwaway PKI, made before its tests
// and removed after them, a subfolder per case, and the images-identical check. Imported directly,
// not through index.ts: it registers node:test hooks, which the benchmarks must not load.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { NbdClient } from './nbd-client.js';
import { makePki, type Pki } from './pki.js';
import { makeTempDir, removeDir } from './tmpdir.js';

export interface SuiteFolder {
  /** Valid inside tests and hooks, once the before() hook has run. */
  readonly dir: string;
  readonly pki: Pki;
  /** A new subfolder for one test case. */
  caseDir(name: string): Promise<string>;
}

/** Registers the before/after hooks of the calling test file. */
export function suiteFolder(prefix: string): SuiteFolder {
  let dir: string | null = null;
  let pki: Pki | null = null;
  before(async () => {
    dir = await makeTempDir(prefix);
    pki = await makePki(join(dir, 'pki'));
  });
  after(async () => {
    if (dir) await removeDir(dir);
  });
  const made = <T>(value: T | null): T => {
    if (value === null) throw new Error('suiteFolder: used before its before() hook ran');
    return value;
  };
  return {
    get dir() {
      return made(dir);
    },
    get pki() {
      return made(pki);
    },
    async caseDir(name) {
      const path = join(made(dir), name);
      await mkdir(path);
      return path;
    },
  };
}

/** Every rig.verify() result says the two images are identical. */
export function assertIdentical(results: Array<{ name: string; identical: boolean; output: string }>): void {
  for (const r of results) assert.ok(r.identical, `${r.name}: images differ: ${r.output}`);
}

const MiB = 1024 * 1024;

/** An NBD client on `socket` reads 1 MiB at the start, the middle and the end of `image`'s export, byte for byte. */
export async function assertReadsImage(socket: string, exportName: string, image: string): Promise<void> {
  const bytes = await readFile(image);
  const client = await NbdClient.connect(socket, exportName);
  try {
    for (const offset of [0, Math.floor(bytes.length / 2 / MiB) * MiB, bytes.length - MiB]) {
      assert.ok((await client.read(offset, MiB)).equals(bytes.subarray(offset, offset + MiB)), `bytes at ${offset} differ from ${image}`);
    }
  } finally {
    await client.close();
  }
}
