// Two guests for a live migration on one machine: the source booted and writing, the
// destination waiting (-incoming defer) on a blank image of the same size, and the path
// between them for the two routes: the disk (to the destination's NBD server) and the RAM
// stream (to its migrate-incoming socket). The path is the tunnel, QEMU's sockets directly,
// or whatever a test's `connect` sets up.
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createBlankImage, createTestImage } from '../images.js';
import type { Pki } from '../pki.js';
import { startTunnel, type Tunnel } from '../proxies.js';
import type { Link } from '../rig.js';
import type { GuestBoot } from './build.js';
import { startGuestVm, type GuestVm } from './vm.js';

export const DISK_ROUTE = 'vm1-vda';
export const RAM_ROUTE = 'vm1-ram';

/** A running path; `tunnel` when it is nbd-tunnel's proxies, for their logs. */
export interface PairLink extends Link {
  tunnel?: Tunnel;
}

/** Sets up the path; `routes` maps each route to the destination socket it must reach. */
export type PairLinkFactory = (context: { dir: string; pki: Pki; routes: Record<string, string> }) => Promise<PairLink>;

/** The source QEMU connects to the destination's own sockets: the baseline without nbd-tunnel. */
export const directLink: PairLinkFactory = async ({ routes }) => ({ clientSocket: (route) => routes[route], stop: async () => {} });

/** The two nbd-tunnel proxies, with a source socket `<dir>/<route>.sock` per route. */
export const tunnelLink: PairLinkFactory = async ({ dir, pki, routes }) => {
  const sourceSocket = (route: string): string => join(dir, `${route}.sock`);
  const tunnel = await startTunnel({
    pki,
    destRoutes: routes,
    sourceRoutes: Object.fromEntries(Object.keys(routes).map((r) => [r, sourceSocket(r)])),
  });
  return { clientSocket: sourceSocket, stop: () => tunnel.stop(), tunnel };
};

export interface PairOptions {
  dir: string;
  pki: Pki;
  boot: GuestBoot;
  connect: PairLinkFactory;
  diskBytes: number;
  /** Seed of the source image's initial content (data and holes, for the mirror to copy). */
  seed: number;
  /** Blocks the guest keeps rewriting, from the start of the disk. */
  blocks: number;
}

export interface MigrationPair {
  source: GuestVm;
  dest: GuestVm;
  sourceImage: string;
  destImage: string;
  destNbdSocket: string;
  destIncomingSocket: string;
  link: PairLink;
  /** Milliseconds from starting the source guest to its first console line of /init. */
  bootMs: number;
  /** Stops both QEMUs and the path; safe on a half-started pair. */
  stop(): Promise<void>;
}

export async function startMigrationPair(options: PairOptions): Promise<MigrationPair> {
  const { dir, boot, blocks } = options;
  const sourceImage = join(dir, 'src.img');
  const destImage = join(dir, 'dst.img');
  const destNbdSocket = join(dir, 'dst-nbd.sock');
  const destIncomingSocket = join(dir, 'dst-incoming.sock');
  await createTestImage(sourceImage, options.diskBytes, options.seed);
  await createBlankImage(destImage, options.diskBytes);

  const started: Array<{ stop(): Promise<void> }> = [];
  const stop = async (): Promise<void> => {
    for (const part of started.reverse()) await part.stop().catch(() => {});
  };
  try {
    const dest = await startGuestVm({ dir, name: 'dst', boot, image: destImage, blocks, incoming: true });
    started.push(dest);
    const link = await options.connect({ dir, pki: options.pki, routes: { [DISK_ROUTE]: destNbdSocket, [RAM_ROUTE]: destIncomingSocket } });
    started.push(link);
    const source = await startGuestVm({ dir, name: 'src', boot, image: sourceImage, blocks });
    started.push(source);
    const t0 = performance.now();
    await source.qmp.execute('cont');
    await source.console.waitLine(/^nbdt: up /);
    const bootMs = performance.now() - t0;
    return { source, dest, sourceImage, destImage, destNbdSocket, destIncomingSocket, link, bootMs, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
