// Two libvirtd "hosts" on one machine and nbd-tunnel between them: the path both see as
// `shared` is `<dir>/src-shared` in the source's namespace and `<dir>/dst-shared` in the
// destination's. The source proxy listens where the source QEMU connects (src-shared/{nbd,ram}.sock);
// the destination proxy connects where the destination QEMU listens (dst-shared/...).
import { join } from 'node:path';
import type { Pki } from '../pki.js';
import { startTunnel, type Tunnel } from '../proxies.js';
import { startLibvirtd, type Libvirtd } from './libvirtd.js';

export interface LibvirtPair {
  source: Libvirtd;
  dest: Libvirtd;
  /** The path libvirt and QEMU use on both "hosts". */
  shared: string;
  /** What `shared` is, seen from outside the namespaces. */
  sourceShared: string;
  destShared: string;
  tunnel: Tunnel;
  stop(): Promise<void>;
}

export async function startLibvirtPair(dir: string, pki: Pki): Promise<LibvirtPair> {
  const shared = join(dir, 'shared');
  const sourceShared = join(dir, 'src-shared');
  const destShared = join(dir, 'dst-shared');
  const started: Array<{ stop(): Promise<void> }> = [];
  const stop = async (): Promise<void> => {
    for (const part of started.reverse()) await part.stop().catch(() => {});
  };
  try {
    // One at a time: each probes QEMU's capabilities at start, which takes a core for seconds.
    const source = await startLibvirtd({ dir: join(dir, 'src'), hostUuid: '6e62d7d1-0000-4000-8000-000000000001', sharedPath: shared, sharedSource: sourceShared });
    started.push(source);
    const dest = await startLibvirtd({ dir: join(dir, 'dst'), hostUuid: '6e62d7d1-0000-4000-8000-000000000002', sharedPath: shared, sharedSource: destShared });
    started.push(dest);
    const sockets = (base: string): Record<string, string> => ({ 'vm1-vda': join(base, 'nbd.sock'), 'vm1-ram': join(base, 'ram.sock') });
    const tunnel = await startTunnel({ pki, destRoutes: sockets(destShared), sourceRoutes: sockets(sourceShared) });
    started.push(tunnel);
    return { source, dest, shared, sourceShared, destShared, tunnel, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
