// Real libvirt as the client: two libvirtd instances, each in its own mount namespace, and
// `virsh migrate --live --copy-storage-all` with its disk and RAM streams through nbd-tunnel
// (--disks-uri and --migrateuri on the tunnel's UNIX sockets), then the guest verified.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test, type TestContext } from 'node:test';
import { run } from '../harness/child.js';
import { buildGuest, type GuestBoot } from '../harness/guest/build.js';
import { SerialConsole } from '../harness/guest/console.js';
import { guestDomainXml } from '../harness/guest/domain.js';
import { GUEST_RAM } from '../harness/guest/vm.js';
import { startLibvirtPair } from '../harness/guest/libvirt-pair.js';
import { lastProgress, requestVerify, waitProgress } from '../harness/guest/protocol.js';
import { compareImages, createBlankImage, createTestImage } from '../harness/images.js';
import { suiteFolder } from '../harness/suite.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 64 * MiB;
const BLOCKS = 256;
const DOMAIN = 'nbdt-guest';
const GUEST_RAM_BYTES = Number(GUEST_RAM.slice(0, -1)) * 1024;

const suite = suiteFolder('nbdt-lv-');
let boot: GuestBoot;
before(async () => {
  boot = await buildGuest();
});

async function virshMigrate(t: TestContext, name: string, extraFlags: string[]): Promise<void> {
  const pair = await startLibvirtPair(await suite.caseDir(name), suite.pki);
  const consoles: SerialConsole[] = [];
  try {
    const image = join(pair.shared, 'disk.img');
    await createTestImage(join(pair.sourceShared, 'disk.img'), DISK_BYTES, 11);
    // libvirt needs the destination's image to exist (outside a storage pool it creates none).
    await createBlankImage(join(pair.destShared, 'disk.img'), DISK_BYTES);
    const xml = join(pair.sourceShared, 'domain.xml');
    await writeFile(xml, guestDomainXml({ name: DOMAIN, boot, image, consoleSocket: join(pair.shared, 'console.sock'), blocks: BLOCKS }));

    await pair.source.virsh('create', xml, '--paused');
    // The RAM size libvirt would have rounded is the one QEMU runs with (see domain.ts).
    const memory = JSON.parse(await pair.source.virsh('qemu-monitor-command', DOMAIN, '{"execute":"query-memory-size-summary"}')) as { return: { 'base-memory': number } };
    assert.equal(memory.return['base-memory'], GUEST_RAM_BYTES);
    const sourceConsole = await SerialConsole.connect(join(pair.sourceShared, 'console.sock'), 'source');
    consoles.push(sourceConsole);
    await pair.source.virsh('resume', DOMAIN);
    await sourceConsole.waitLine(new RegExp(`^wrote ${2 * BLOCKS} `));

    const started = performance.now();
    // --suspend: the destination keeps the guest paused, so the images can be compared first.
    await run('virsh', [
      ...['-c', pair.source.uri, 'migrate', '--live', '--copy-storage-all', '--suspend', ...extraFlags],
      ...['--migrateuri', `unix://${join(pair.shared, 'ram.sock')}`, '--disks-uri', `unix://${join(pair.shared, 'nbd.sock')}`],
      ...[DOMAIN, pair.dest.uri],
    ]);
    t.diagnostic(`virsh migrate ${extraFlags.join(' ')}: ${(performance.now() - started).toFixed(0)} ms`);

    assert.equal((await pair.dest.virsh('domstate', DOMAIN)).trim(), 'paused');
    assert.equal((await pair.source.virsh('list', '--all', '--name')).trim(), '', 'the domain is gone from the source');
    const compared = await compareImages(join(pair.sourceShared, 'disk.img'), join(pair.destShared, 'disk.img'), { forceShare: true });
    assert.ok(compared.identical, compared.output);
    const routes = pair.tunnel.dest.logs.filter((l) => l.msg === 'stream opened').map((l) => l.route);
    assert.deepEqual([...new Set(routes)].sort(), ['vm1-ram', 'vm1-vda'], 'disk and RAM went through the tunnel');

    const sourceLast = lastProgress(sourceConsole);
    assert.ok(sourceLast, 'the source guest printed progress');
    const destConsole = await SerialConsole.connect(join(pair.destShared, 'console.sock'), 'destination');
    consoles.push(destConsole);
    await pair.dest.virsh('resume', DOMAIN);
    assert.equal((await pair.dest.virsh('domstate', DOMAIN)).trim(), 'running');
    const first = await waitProgress(destConsole);
    assert.equal(first.boot, sourceLast.boot, 'same boot id: the guest was not rebooted');
    assert.ok(first.n > sourceLast.n, `counter went on: ${first.n} after the source's ${sourceLast.n}`);
    const verified = await requestVerify(destConsole);
    assert.ok(verified.ok, verified.line);
    assert.match(verified.line, new RegExp(` blocks ${BLOCKS} boot ${sourceLast.boot}$`), 'every block checked');
  } finally {
    for (const c of consoles) c.close();
    await pair.stop();
  }
}

test('virsh migrate --live --copy-storage-all through nbd-tunnel: runs on the destination, gone from the source, images identical, guest verified', async (t) => {
  await virshMigrate(t, 'plain', []);
});

test('the same with --p2p (the source libvirtd drives the destination itself)', async (t) => {
  await virshMigrate(t, 'p2p', ['--p2p']);
});
