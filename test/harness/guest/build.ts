// Builds the guest's initramfs from the host's Debian packages: busybox-static, the virtio
// modules of linux-image-amd64's kernel, and init.sh as /init. Cached by kernel version and
// content hash, so only the first test of a machine pays for it.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { cpioNewc, type CpioEntry } from './cpio.js';
import { findHostKernel, moduleClosure, readModule } from './kernel.js';

const BUSYBOX = '/bin/busybox';
/** virtio_pci finds the disk's PCI function, virtio_blk makes it /dev/vda; the rest come from modules.dep. */
const MODULES = ['virtio_pci', 'virtio_blk'];
const INIT = new URL('./init.sh', import.meta.url);

export interface GuestBoot {
  kernelVersion: string;
  /** The host's /boot/vmlinuz-VERSION. */
  kernel: string;
  /** The cached initramfs (newc cpio, gzip). */
  initrd: string;
}

export async function buildGuest(cacheRoot = join(tmpdir(), 'nbd-tunnel-guest')): Promise<GuestBoot> {
  const kernel = await findHostKernel();
  const dir = join(cacheRoot, kernel.version);
  await mkdir(dir, { recursive: true });
  const busybox = await readFile(BUSYBOX);
  if (hasInterpreter(busybox)) throw new Error(`${BUSYBOX} is dynamically linked: install busybox-static (scripts/ensure-guest.sh)`);
  const modules = await Promise.all(
    (await moduleClosure(kernel, MODULES)).map(async (file) => ({
      name: basename(file).replace(/\.ko\.\w+$/, '.ko'),
      data: await readModule(kernel, file, join(dir, `scratch-${process.pid}.ko`)),
    })),
  );
  const init = await readFile(INIT);

  const hash = createHash('sha256').update(init).update(busybox);
  for (const m of modules) hash.update(m.name).update(m.data);
  const initrd = join(dir, `initrd-${hash.digest('hex').slice(0, 16)}.cpio.gz`);
  if (await stat(initrd).catch(() => null)) return { kernelVersion: kernel.version, kernel: kernel.image, initrd };

  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'etc', 'lib', 'lib/modules', 'proc', 'sys', 'tmp'].map((path): CpioEntry => ({ type: 'dir', path })),
    // The kernel opens /dev/console for /init before anything could mount devtmpfs.
    { type: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { type: 'file', path: 'bin/busybox', data: busybox, mode: 0o755 },
    { type: 'symlink', path: 'bin/sh', target: 'busybox' },
    { type: 'file', path: 'init', data: init, mode: 0o755 },
    { type: 'file', path: 'etc/modules', data: Buffer.from(modules.map((m) => `${m.name}\n`).join('')) },
    ...modules.map((m): CpioEntry => ({ type: 'file', path: `lib/modules/${m.name}`, data: m.data })),
  ];
  // Written aside and renamed: a concurrent build, or a reader, never sees half a file.
  const partial = `${initrd}.${process.pid}.partial`;
  await writeFile(partial, gzipSync(cpioNewc(entries)));
  await rename(partial, initrd);
  return { kernelVersion: kernel.version, kernel: kernel.image, initrd };
}

/** True if the ELF64 file has a PT_INTERP program header, i.e. needs a dynamic loader. */
function hasInterpreter(elf: Buffer): boolean {
  const PT_INTERP = 3;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) if (elf.readUInt32LE(phoff + i * phentsize) === PT_INTERP) return true;
  return false;
}
