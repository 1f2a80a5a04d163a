// What an end-to-end test file shares: a temp folder with a throwaway PKI, made before its tests
// and removed after them, a subfolder per case, and the images-identical check. Imported directly,
// not through index.ts: it registers node:test hooks, which the benchmarks must not load.
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before } from 'node:test';
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
