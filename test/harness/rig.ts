// A migration on one machine: a destination storage daemon exporting blank disks over NBD,
// a source storage daemon holding test images, and between them the tunnel, a direct
// connection, or any other path a `connect` factory sets up (the benchmarks' socat, ssh, ...).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { compareImages, createBlankImage, createTestImage } from './images.js';
import { makePki, type Pki } from './pki.js';
import { startTunnel, type Tunnel } from './proxies.js';
import { startStorageDaemon, type StorageDaemon } from './storage-daemon.js';

const DEFAULT_TIMEOUT_MS = 300_000;

export interface DiskSpec {
  /** Route name and NBD export name. */
  name: string;
  size: number;
  seed: number;
}

export interface Disk extends DiskSpec {
  sourceImage: string;
  destImage: string;
  /** Where the source QEMU's NBD client connects: the tunnel's source socket, or the NBD server itself. */
  clientSocket: string;
  /** Bytes of data and of holes in the source image, once created. */
  content: { dataBytes: number; zeroBytes: number };
}

/** What a path between the source QEMU's NBD client and the destination NBD server needs to know. */
export interface LinkContext {
  /** The rig's directory, for the path's sockets and files. */
  dir: string;
  pki: Pki;
  /** The destination QEMU's NBD server socket, serving every route's export. */
  destSocket: string;
  /** Route names, one per disk; each is also the disk's NBD export name. */
  routes: string[];
}

/** A running path: where the source connects for each route, and how to take it down. */
export interface Link {
  clientSocket(route: string): string;
  stop(): Promise<void>;
}

export type LinkFactory = (context: LinkContext) => Promise<Link>;

export interface RigOptions {
  dir: string;
  disks: DiskSpec[];
  /** false: QEMU's NBD client connects straight to the destination NBD server (the ceiling). Ignored with `connect`. */
  tunnel?: boolean;
  /** Sets up the path instead of the built-in tunnel or direct connection; started after the destination. */
  connect?: LinkFactory;
  pki?: Pki;
  destArgs?: string[];
  sourceArgs?: string[];
  /** Also export every source disk over NBD on this socket, for a guest-like writer. */
  writerSocket?: string;
}

export interface Rig {
  dir: string;
  disks: Disk[];
  source: StorageDaemon;
  dest: StorageDaemon;
  /** The built-in tunnel, when that is the path. */
  tunnel: Tunnel | null;
  /** The path from `connect`, when given. */
  link: Link | null;
  /** The destination QEMU's NBD server socket. */
  nbdSocket: string;
  /** Starts a blockdev-mirror job per disk (job id `m-<name>`). */
  startMirrors(copyMode?: 'background' | 'write-blocking'): Promise<void>;
  /** Waits until every job is READY. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** block-job-cancel on every READY job (completes without pivot), waits for COMPLETED. */
  completeMirrors(timeoutMs?: number): Promise<void>;
  /** All three in a row; resolves with the milliseconds from the start until all were READY. */
  mirrorAll(copyMode?: 'background' | 'write-blocking', timeoutMs?: number): Promise<number>;
  /** Quits both daemons and compares every disk pair with qemu-img compare. */
  verify(): Promise<Array<{ name: string; identical: boolean; output: string }>>;
  stop(): Promise<void>;
}

export async function startRig(options: RigOptions): Promise<Rig> {
  const { dir } = options;
  await mkdir(dir, { recursive: true });
  const nbdSocket = join(dir, 'dest-nbd.sock');
  const viaTunnel = !options.connect && (options.tunnel ?? true);
  // With `connect`, clientSocket is replaced once the path is up: the path decides it.
  const disks: Disk[] = options.disks.map((spec) => ({
    ...spec,
    sourceImage: join(dir, `${spec.name}-src.img`),
    destImage: join(dir, `${spec.name}-dst.img`),
    clientSocket: viaTunnel ? join(dir, `${spec.name}.sock`) : nbdSocket,
    content: { dataBytes: 0, zeroBytes: 0 },
  }));
  await Promise.all(
    disks.map(async (d) => {
      const { dataBytes, zeroBytes } = await createTestImage(d.sourceImage, d.size, d.seed);
      d.content = { dataBytes, zeroBytes };
    }),
  );
  await Promise.all(disks.map((d) => createBlankImage(d.destImage, d.size)));

  const started: Array<{ stop(): Promise<void> }> = [];
  const stopAll = async () => {
    for (const part of started.reverse()) await part.stop().catch(() => {});
  };
  try {
    const dest = await startStorageDaemon(dir, 'dest');
    started.push(dest);
    for (const d of disks) await dest.addRawImage(`${d.name}-dst`, d.destImage);
    await dest.startNbdServer(nbdSocket);
    for (const d of disks) await dest.exportNbd(`${d.name}-dst`, d.name, true);

    let tunnel: Tunnel | null = null;
    if (viaTunnel) {
      tunnel = await startTunnel({
        pki: options.pki ?? (await makePki(join(dir, 'pki'))),
        destRoutes: Object.fromEntries(disks.map((d) => [d.name, nbdSocket])),
        sourceRoutes: Object.fromEntries(disks.map((d) => [d.name, d.clientSocket])),
        destArgs: options.destArgs,
        sourceArgs: options.sourceArgs,
      });
      started.push(tunnel);
    }
    let link: Link | null = null;
    if (options.connect) {
      link = await options.connect({
        dir,
        pki: options.pki ?? (await makePki(join(dir, 'pki'))),
        destSocket: nbdSocket,
        routes: disks.map((d) => d.name),
      });
      started.push(link);
      for (const d of disks) d.clientSocket = link.clientSocket(d.name);
    }

    const source = await startStorageDaemon(dir, 'source');
    started.push(source);
    for (const d of disks) await source.addRawImage(`${d.name}-src`, d.sourceImage);
    if (options.writerSocket) {
      await source.startNbdServer(options.writerSocket);
      for (const d of disks) await source.exportNbd(`${d.name}-src`, d.name, true);
    }
    for (const d of disks) await source.addNbdClient(`${d.name}-tgt`, d.clientSocket, d.name);

    const rig: Rig = {
      dir,
      disks,
      source,
      dest,
      tunnel,
      link,
      nbdSocket,
      async startMirrors(copyMode = 'background') {
        for (const d of disks) {
          await source.mirror({ jobId: `m-${d.name}`, device: `${d.name}-src`, target: `${d.name}-tgt`, copyMode });
        }
      },
      async waitReady(timeoutMs = DEFAULT_TIMEOUT_MS) {
        await Promise.all(disks.map((d) => source.waitJobReady(`m-${d.name}`, timeoutMs)));
      },
      async completeMirrors(timeoutMs = DEFAULT_TIMEOUT_MS) {
        for (const d of disks) await source.cancelJob(`m-${d.name}`);
        await Promise.all(disks.map((d) => source.waitJobCompleted(`m-${d.name}`, timeoutMs)));
      },
      async mirrorAll(copyMode = 'background', timeoutMs = DEFAULT_TIMEOUT_MS) {
        const start = performance.now();
        await rig.startMirrors(copyMode);
        await rig.waitReady(timeoutMs);
        const readyMs = performance.now() - start;
        await rig.completeMirrors(timeoutMs);
        return readyMs;
      },
      async verify() {
        await source.quit();
        await dest.quit();
        return Promise.all(disks.map(async (d) => ({ name: d.name, ...(await compareImages(d.sourceImage, d.destImage)) })));
      },
      stop: stopAll,
    };
    return rig;
  } catch (error) {
    await stopAll();
    throw error;
  }
}
