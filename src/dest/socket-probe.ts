// A route's socket as a probe (`nbd-tunnel check`) sees it, without connecting: present, a
// socket, writable by this process (what connect(2) needs), and listened on. A connection that
// sends nothing is not harmless: QEMU waiting with `-incoming unix:` takes the first one as the
// migration stream and exits when it ends, and its NBD server logs a failed negotiation.
import { constants } from 'node:fs';
import { access, readFile, realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { socketFailure } from './route-socket.js';

/** /proc/net/unix: Num RefCount Protocol Flags Type St Inode [Path]. */
const UNIX_LINE = /^\S+:\s+\S+\s+\S+\s+([0-9A-Fa-f]+)\s+\S+\s+\S+\s+\d+ (.+)$/;
/** __SO_ACCEPTCON in the Flags column: the socket listens. */
const ACCEPTING = 0x10000;

/** Resolves with null (nothing to hand on) when a connection would be accepted; rejects with the reason as a connect would. */
export async function probeRouteSocket(path: string): Promise<null> {
  const errno = (error: unknown): string => (error as NodeJS.ErrnoException).code ?? 'EIO';
  const info = await stat(path).catch((error: unknown) => {
    throw socketFailure(path, errno(error));
  });
  if (!info.isSocket()) throw socketFailure(path, 'ENOTSOCK');
  await access(path, constants.W_OK).catch((error: unknown) => {
    throw socketFailure(path, errno(error));
  });
  if ((await listenedOn(path)) === false) throw socketFailure(path, 'ECONNREFUSED', 'has no process listening on it (a stale socket file: is the QEMU NBD server started?)');
  return null;
}

/**
 * Whether a listening socket in this network namespace is bound to `path` (or, through links, to
 * the same file); null when /proc/net/unix cannot be read, and nothing is claimed then.
 */
async function listenedOn(path: string): Promise<boolean | null> {
  let table: string;
  try {
    table = await readFile('/proc/net/unix', 'utf8');
  } catch {
    return null;
  }
  const target = await realpath(path).catch(() => path);
  for (const line of table.split('\n')) {
    const match = UNIX_LINE.exec(line);
    if (!match || (parseInt(match[1]!, 16) & ACCEPTING) === 0) continue;
    const bound = match[2]!;
    if (bound === path) return true;
    // The same file by another name (a linked folder): resolve only names that could be it.
    if (basename(bound) === basename(path) && (await realpath(bound).catch(() => bound)) === target) return true;
  }
  return false;
}
