// An NBD error reply through the tunnel is logged at warn with the request it answers and
// counted in /metrics: a client writes to a read-only export of a real qemu-storage-daemon.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  createBlankImage,
  makePki,
  makeTempDir,
  NbdClient,
  removeDir,
  startStorageDaemon,
  startTunnel,
  type StorageDaemon,
  type Tunnel,
} from '../harness/index.js';

let dir: string;
let daemon: StorageDaemon;
let tunnel: Tunnel;

before(async () => {
  dir = await makeTempDir('nbdt-nbderr-');
  const image = join(dir, 'ro.img');
  await createBlankImage(image, 16 * 1024 * 1024);
  daemon = await startStorageDaemon(dir, 'dest');
  await daemon.addRawImage('ro', image, { readOnly: true });
  await daemon.startNbdServer(join(dir, 'nbd.sock'));
  await daemon.exportNbd('ro', 'vm7-ro', false);
  const metrics = ['--metrics', '127.0.0.1:0'];
  tunnel = await startTunnel({
    pki: await makePki(join(dir, 'pki')),
    destRoutes: { 'vm7-ro': join(dir, 'nbd.sock') },
    sourceRoutes: { 'vm7-ro': join(dir, 'src.sock') },
    destArgs: metrics,
    sourceArgs: metrics,
  });
});

after(async () => {
  await tunnel?.stop();
  await daemon?.stop();
  await removeDir(dir);
});

test('a WRITE refused by a read-only export: logged with type, offset, length and errno, and counted', async () => {
  const client = await NbdClient.connect(join(dir, 'src.sock'), 'vm7-ro', true);
  assert.equal(client.size, 16 * 1024 * 1024);
  // QEMU 7.2 answers writes to a read-only export with NBD_EINVAL ("Export is read-only").
  await assert.rejects(client.write(65536, Buffer.alloc(4096, 1)), /errno 22/);
  await client.close();
  for (const proxy of [tunnel.source, tunnel.dest]) {
    const line = await proxy.waitForLog((l) => l.msg === 'nbd error reply');
    assert.equal(line.level, 40);
    assert.deepEqual([line.type, line.offset, line.length, line.errno], ['WRITE', 65536, 4096, 'EINVAL']);
    const closed = await proxy.waitForLog((l) => l.msg === 'stream closed');
    assert.equal(closed.nbdErrors, 1);
    assert.equal(closed.export, 'vm7-ro');
    const ready = await proxy.waitForLog((l) => l.msg === 'listening' || l.msg === 'ready');
    const metrics = await (await fetch(`http://${String(ready.metrics)}/metrics`)).text();
    assert.match(metrics, /^nbd_tunnel_nbd_errors_total\{route="vm7-ro",export="vm7-ro"\} 1$/m);
    assert.match(metrics, /^nbd_tunnel_nbd_requests_total\{route="vm7-ro",export="vm7-ro",type="WRITE"\} 1$/m);
    assert.match(metrics, /^nbd_tunnel_nbd_requests_total\{route="vm7-ro",export="vm7-ro",type="DISC"\} 1$/m);
  }
});
