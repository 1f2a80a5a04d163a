// One unrecorded direct mirror before measuring. On this VM the first run of a fresh process
// was several times slower than the next ones (first touch of guest memory for the page cache
// and the images, it seems); without a warm-up that lands on whichever path runs first.
import type { Pki } from '../test/harness/index.js';
import { withPathRig } from './rig-run.js';
import { scaledSize } from './scenarios/types.js';

export async function warmUp(dir: string, pki: Pki, scale: number): Promise<void> {
  const disks = [{ name: 'warm', size: scaledSize(1 << 30, scale), seed: 99 }];
  await withPathRig({ kind: 'direct', dir, pki, disks }, (rig) => rig.mirrorAll());
}
