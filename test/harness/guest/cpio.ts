// A newc ("070701") cpio archive, the format the kernel unpacks as an initramfs. Written here
// rather than with cpio(1) so that device nodes (/dev/console) need no root and no mknod.

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Buffer; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

/** The archive's bytes; paths are relative to the root ("init", "bin/busybox"). */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  let offset = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    offset += b.length;
  };
  const pad = (): void => {
    if (offset % 4 !== 0) push(Buffer.alloc(4 - (offset % 4)));
  };
  const record = (path: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0]): void => {
    const name = Buffer.from(`${path}\0`);
    const fields = [ino++, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, rdev[0], rdev[1], name.length, 0];
    push(Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`, 'ascii'));
    push(name);
    pad();
    push(data);
    pad();
  };
  for (const e of entries) {
    switch (e.type) {
      case 'dir':
        record(e.path, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0));
        break;
      case 'file':
        record(e.path, S_IFREG | (e.mode ?? 0o644), e.data);
        break;
      case 'symlink':
        record(e.path, S_IFLNK | 0o777, Buffer.from(e.target));
        break;
      case 'chardev':
        record(e.path, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), [e.major, e.minor]);
        break;
    }
  }
  // The trailer's inode number is 0 by convention.
  ino = 0;
  record('TRAILER!!!', 0, Buffer.alloc(0));
  return Buffer.concat(parts);
}
