// `npm run demo -- --storage-only`: a 1 GiB disk with data and zero regions mirrored by real
// qemu-storage-daemons with blockdev-mirror through the tunnel, then qemu-img compare.
// `--direct` also runs the same mirror without the tunnel.
import { join } from 'node:path';
import { startRig } from '../../test/harness/index.js';
import type { Demo, Outcome } from './context.js';

const SIZE = 1024 * 1024 * 1024;

async function mirrorOnce({ stops, say }: Demo, dir: string, tunnel: boolean): Promise<{ mbps: number; identical: boolean }> {
  try {
    const rig = stops.add(await startRig({ dir, tunnel, disks: [{ name: 'demo-vda', size: SIZE, seed: 2026 }] }));
    if (rig.tunnel) say(`  tunnel up: wss://localhost:${rig.tunnel.port} (TLS 1.3, mutual certificates)`);
    const readyMs = await rig.mirrorAll();
    const [result] = await rig.verify();
    return { mbps: SIZE / 1e6 / (readyMs / 1000), identical: result.identical };
  } finally {
    await stops.run();
  }
}

export async function storageDemo(demo: Demo): Promise<Outcome> {
  const { say, dir, direct } = demo;
  say('nbd-tunnel demo: 1 GiB disk, blockdev-mirror (sync=full) through the tunnel');
  const tunnel = await mirrorOnce(demo, join(dir, 'tunnel'), true);
  say(`  through nbd-tunnel: ${tunnel.mbps.toFixed(0)} MB/s to READY, images ${tunnel.identical ? 'identical' : 'DIFFERENT'}`);
  let ok = tunnel.identical;
  if (direct) {
    const baseline = await mirrorOnce(demo, join(dir, 'direct'), false);
    say(`  direct UNIX socket: ${baseline.mbps.toFixed(0)} MB/s to READY, images ${baseline.identical ? 'identical' : 'DIFFERENT'}`);
    say(`  tunnel / direct: ${(tunnel.mbps / baseline.mbps).toFixed(2)}`);
    ok &&= baseline.identical;
  }
  return { ok, verdict: ok ? 'qemu-img compare: identical' : 'qemu-img compare found differences' };
}
