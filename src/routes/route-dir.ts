// --route-dir DIR: route NAME is DIR/NAME.sock. The name is checked first, so it is never a path.
import { lstat } from 'node:fs/promises';
import { join } from 'node:path';

export function routeDirSocket(dir: string, name: string): string {
  return join(dir, `${name}.sock`);
}

export type DirLookup = { ok: true; path: string } | { ok: false; missing: boolean; message: string };

/** DIR/NAME.sock when it is a socket; a symlink or any other file is refused with the reason. */
export async function lookUpRouteDir(dir: string, name: string): Promise<DirLookup> {
  const path = routeDirSocket(dir, name);
  try {
    const stat = await lstat(path);
    if (stat.isSymbolicLink()) return { ok: false, missing: false, message: `${path} is a symbolic link; --route-dir takes sockets only, not links` };
    if (!stat.isSocket()) return { ok: false, missing: false, message: `${path} is not a socket` };
    return { ok: true, path };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'ENOENT') return { ok: false, missing: true, message: `no socket ${path}` };
    return { ok: false, missing: false, message: `${path}: cannot look at it: ${code}` };
  }
}
