// What an end-to-end test file shares: a temp folder with a throwaway PKI, made before its tests
// and removed after them, a subfolder per case, and the images-identical check. Imported directly,
// not through index.ts: it registers node:test hooks, which the benchmarks must not load.
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { NbdClient } from './nbd-client.js';
import { makePki, type Pki } from './pki.js';
import { startTunnel, type Tunnel, type TunnelOptions } from './proxies.js';
import { makeTempDir, removeDir } from './tmpdir.js';

export interface SuiteFolder {
  /** Valid inside tests and hooks, once the before() hook has run. */
  readonly dir: string;
  readonly pki: Pki;
  /**
   * Resolves once the folder and PKI exist: for the file's own before() hooks, which node:test
   * runs alongside this one, not after it.
   */
  ready(): Promise<void>;
  /** A new subfolder for one test case. */
  caseDir(name: string): Promise<string>;
}

/** Registers the before/after hooks of the calling test file. */
export function suiteFolder(prefix: string): SuiteFolder {
  let dir: string | null = null;
  let pki: Pki | null = null;
  let setup: Promise<void> | null = null;
  const ready = (): Promise<void> =>
    (setup ??= (async () => {
      dir = await makeTempDir(prefix);
      pki = await makePki(join(dir, 'pki'));
    })());
  before(() => ready());
  after(async () => {
    if (dir) await removeDir(dir);
  });
  const made = <T>(value: T | null): T => {
    if (value === null) throw new Error('suiteFolder: used before its before() hook ran');
    return value;
  };
  return {
    ready,
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

/** A QEMU connection made while the tunnel is refused is closed at once, not after the source's 10 s wait for a tunnel. */
export async function assertClosedAtOnce(socket: string, exportName: string): Promise<void> {
  const started = Date.now();
  await assert.rejects(NbdClient.connect(socket, exportName), /NBD connection closed/);
  assert.ok(Date.now() - started < 3_000, `closed after ${Date.now() - started} ms`);
}

export interface CaseTunnel {
  tunnel: Tunnel;
  /** The case's folder. */
  dir: string;
  /** The source's socket for the route. */
  socket: string;
}

/**
 * In a new case folder `name`: a destination routing `route` to `nbdSocket` and a source
 * listening for it on first.sock there, with the suite's PKI; both stopped after `body`.
 */
export async function withCaseTunnel(
  suite: SuiteFolder,
  name: string,
  options: Omit<TunnelOptions, 'pki' | 'destRoutes' | 'sourceRoutes'> & { route: string; nbdSocket: string },
  body: (running: CaseTunnel) => Promise<void>,
): Promise<void> {
  const { route, nbdSocket, ...rest } = options;
  const dir = await suite.caseDir(name);
  const socket = join(dir, 'first.sock');
  const tunnel = await startTunnel({ pki: suite.pki, destRoutes: { [route]: nbdSocket }, sourceRoutes: { [route]: socket }, ...rest });
  try {
    await body({ tunnel, dir, socket });
  } finally {
    await tunnel.stop();
  }
}
