// The main job, end to end: throwaway CA and certificates, destination and source proxies, two
// qemu-storage-daemons, a 1 GiB disk with data and zero regions mirrored with blockdev-mirror
// through the tunnel, then qemu-img compare. `--direct` also runs the same mirror without the tunnel.
import { join } from 'node:path';
import { makeTempDir, removeDir, startRig, type Rig } from '../test/harness/index.js';

const SIZE = 1024 * 1024 * 1024;
const withDirect = process.argv.includes('--direct');

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function mirrorOnce(dir: string, tunnel: boolean): Promise<{ mbps: number; identical: boolean }> {
  let rig: Rig | null = null;
  try {
    rig = await startRig({ dir, tunnel, disks: [{ name: 'demo-vda', size: SIZE, seed: 2026 }] });
    if (rig.tunnel) say(`  tunnel up: wss://localhost:${rig.tunnel.port} (TLS 1.3, mutual certificates)`);
    const readyMs = await rig.mirrorAll();
    const [result] = await rig.verify();
    return { mbps: SIZE / 1e6 / (readyMs / 1000), identical: result.identical };
  } finally {
    await rig?.stop();
  }
}

const dir = await makeTempDir('nbdt-demo-');
let ok = true;
try {
  say('nbd-tunnel demo: 1 GiB disk, blockdev-mirror (sync=full) through the tunnel');
  const tunnel = await mirrorOnce(join(dir, 'tunnel'), true);
  say(`  through nbd-tunnel: ${tunnel.mbps.toFixed(0)} MB/s to READY, images ${tunnel.identical ? 'identical' : 'DIFFERENT'}`);
  ok = tunnel.identical;
  if (withDirect) {
    const direct = await mirrorOnce(join(dir, 'direct'), false);
    say(`  direct UNIX socket: ${direct.mbps.toFixed(0)} MB/s to READY, images ${direct.identical ? 'identical' : 'DIFFERENT'}`);
    say(`  tunnel / direct: ${(tunnel.mbps / direct.mbps).toFixed(2)}`);
    ok &&= direct.identical;
  }
  say(ok ? 'verdict: PASS (qemu-img compare: identical)' : 'verdict: FAIL (qemu-img compare found differences)');
} catch (error) {
  ok = false;
  say(`verdict: FAIL (${(error as Error).message})`);
} finally {
  await removeDir(dir);
}
process.exit(ok ? 0 : 1);
