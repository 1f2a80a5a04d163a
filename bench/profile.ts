// `npm run bench:profile`: where nbd-tunnel's CPU goes. Mirrors disks through the tunnel with both
// proxies under node --cpu-prof, then prints each side's functions with the most self time.
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { makePki, makeTempDir, removeDir } from '../test/harness/index.js';
import { withPathRig } from './rig-run.js';
import { mbPerSecond } from './scenarios/types.js';

const MiB = 1 << 20;
const { values } = parseArgs({
  options: {
    disks: { type: 'string', default: '1' },
    'size-mib': { type: 'string', default: '1024' },
    top: { type: 'string', default: '12' },
  },
  strict: true,
});
const disks = Number(values.disks);
const sizeMiB = Number(values['size-mib']);
const top = Number(values.top);

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Self samples per function (name, file and line), idle excluded; as shares of the busy samples. */
function selfTimes(profile: { nodes: ProfileNode[] }): { busy: number; rows: Array<[string, number]> } {
  const hits = new Map<string, number>();
  let busy = 0;
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const count = node.hitCount ?? 0;
    if (functionName === '(idle)' || count === 0) continue;
    busy += count;
    const where = url ? ` ${basename(url)}:${lineNumber + 1}` : '';
    const key = `${functionName || '(anonymous)'}${where}`;
    hits.set(key, (hits.get(key) ?? 0) + count);
  }
  return { busy, rows: [...hits].sort((a, b) => b[1] - a[1]) };
}

const root = await makeTempDir('nbdt-profile-');
try {
  const pki = await makePki(join(root, 'pki'));
  const profileDir = join(root, 'profiles');
  const specs = Array.from({ length: disks }, (_, i) => ({ name: `disk${i}`, size: sizeMiB * MiB, seed: i + 1 }));
  const run = await withPathRig({ kind: 'nbd-tunnel', dir: join(root, 'rig'), pki, disks: specs, profileDir }, (rig) => rig.mirrorAll());
  console.log(`${disks} × ${sizeMiB} MiB through nbd-tunnel: ${mbPerSecond(disks * sizeMiB * MiB, run.value).toFixed(0)} MB/s, proxy CPU ${run.cpuSeconds?.toFixed(2)} s`);
  for (const side of ['source', 'dest']) {
    const files = await readdir(join(profileDir, side));
    const profile = JSON.parse(await readFile(join(profileDir, side, files[0]), 'utf8')) as { nodes: ProfileNode[] };
    const { busy, rows } = selfTimes(profile);
    console.log(`\n${side}: top ${top} by self time (share of busy samples)`);
    for (const [name, count] of rows.slice(0, top)) console.log(`  ${((100 * count) / busy).toFixed(1).padStart(5)}%  ${name}`);
  }
} finally {
  await removeDir(root);
}
