// Proves the harness against real QEMU with no proxy in between: a mirror over
// a direct NBD UNIX socket must reproduce the source image exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  compareImages,
  createBlankImage,
  createTestImage,
  makeTempDir,
  removeDir,
  startStorageDaemon,
  type StorageDaemon,
} from '../harness/index.js';

const SIZE = 64 << 20;

test('storage daemons mirror an image over a direct NBD socket', async () => {
  const dir = await makeTempDir('nbdt-');
  const daemons: StorageDaemon[] = [];
  try {
    const srcImage = join(dir, 'src.raw');
    const dstImage = join(dir, 'dst.raw');
    const nbdSocket = join(dir, 'nbd.sock');
    const summary = await createTestImage(srcImage, SIZE, 1);
    assert.ok(summary.dataBytes > 0 && summary.zeroBytes > 0, `image mixes data and holes: ${JSON.stringify(summary)}`);
    await createBlankImage(dstImage, SIZE);

    const dst = await startStorageDaemon(dir, 'dst');
    daemons.push(dst);
    await dst.addRawImage('disk', dstImage);
    await dst.startNbdServer(nbdSocket);
    await dst.exportNbd('disk', 'disk', true);

    const src = await startStorageDaemon(dir, 'src');
    daemons.push(src);
    await src.addRawImage('disk', srcImage, { readOnly: true });
    await src.addNbdClient('remote', nbdSocket, 'disk');
    const readyMs = await src.mirrorToCompletion({ jobId: 'm0', device: 'disk', target: 'remote' }, 30_000);
    assert.ok(readyMs > 0);

    assert.equal((await src.quit()).code, 0);
    assert.equal((await dst.quit()).code, 0);
    const { identical, output } = await compareImages(srcImage, dstImage);
    assert.ok(identical, output);
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await removeDir(dir);
  }
});

test('compareImages reports different images as different', async () => {
  const dir = await makeTempDir('nbdt-');
  try {
    const a = join(dir, 'a.raw');
    const b = join(dir, 'b.raw');
    await createTestImage(a, 1 << 20, 1);
    await createTestImage(b, 1 << 20, 2);
    const { identical, output } = await compareImages(a, b);
    assert.equal(identical, false);
    assert.match(output, /mismatch/i);
  } finally {
    await removeDir(dir);
  }
});
