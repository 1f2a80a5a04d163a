// dest --route-dir: a route name becomes DIR/NAME.sock only when that is a socket; fixed routes win.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { RouteTable } from '../../src/dest/route-table.js';
import { makeTempDir, removeDir } from '../harness/tmpdir.js';

let dir: string;
let routeDir: string;
let server: Server;

before(async () => {
  dir = await makeTempDir('nbdt-route-dir-');
  routeDir = join(dir, 'routes');
  await mkdir(routeDir);
  server = createServer();
  await new Promise<void>((resolve) => server.listen(join(routeDir, 'vm1-vda.sock'), resolve));
  await symlink(join(routeDir, 'vm1-vda.sock'), join(routeDir, 'vm1-link.sock'));
  await writeFile(join(routeDir, 'vm1-file.sock'), 'not a socket');
});
after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await removeDir(dir);
});

test('a socket in --route-dir is the route; a fixed --route of the same name wins', async () => {
  assert.deepEqual(await new RouteTable(new Map(), routeDir).resolve('vm1-vda'), { ok: true, path: join(routeDir, 'vm1-vda.sock') });
  const fixed = new RouteTable(new Map([['vm1-vda', '/run/qemu/fixed.sock']]), routeDir);
  assert.deepEqual(await fixed.resolve('vm1-vda'), { ok: true, path: '/run/qemu/fixed.sock' });
});

test('a symlink or a non-socket is refused with the path and the reason', async () => {
  const table = new RouteTable(new Map(), routeDir);
  const link = await table.resolve('vm1-link');
  assert.equal(link.ok, false);
  assert.ok(!link.ok && link.code === 'bad-route' && link.message.includes(join(routeDir, 'vm1-link.sock')) && /symbolic link/.test(link.message), JSON.stringify(link));
  const file = await table.resolve('vm1-file');
  assert.ok(!file.ok && file.code === 'bad-route' && /vm1-file\.sock is not a socket/.test(file.message), JSON.stringify(file));
});

test('a missing socket is an unknown route, and the message names the folder; a bad name is never a path', async () => {
  const missing = await new RouteTable(new Map(), routeDir).resolve('vm9-vda');
  assert.ok(!missing.ok && missing.code === 'unknown-route', JSON.stringify(missing));
  assert.ok(!missing.ok && missing.message.includes(`no socket ${join(routeDir, 'vm9-vda.sock')} in --route-dir`), missing.ok ? '' : missing.message);
  const noDir = await new RouteTable(new Map(), undefined).resolve('vm9-vda');
  assert.deepEqual(noDir, { ok: false, code: 'unknown-route', message: "route 'vm9-vda' is not configured on the destination" });
  for (const name of ['../routes/vm1-vda', '.hidden', 'a/b', '']) {
    const bad = await new RouteTable(new Map(), routeDir).resolve(name);
    assert.ok(!bad.ok && bad.code === 'bad-route', `${name}: ${JSON.stringify(bad)}`);
  }
});
