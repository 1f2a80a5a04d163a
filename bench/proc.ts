// Readings from /proc: memory of the proxies, bytes they read, and the children they fork.
import { readdirSync, readFileSync } from 'node:fs';

/** A `kB` field of /proc/<pid>/status (VmHWM, VmRSS), in KiB; null once the process is gone. */
export function statusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number | null {
  const status = readOrNull(`/proc/${pid}/status`);
  const match = status?.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return match ? Number(match[1]) : null;
}

/** Bytes the process has read with read-like system calls (sockets included), from /proc/<pid>/io. */
export function bytesRead(pid: number): number | null {
  const match = readOrNull(`/proc/${pid}/io`)?.match(/^rchar:\s+(\d+)/m);
  return match ? Number(match[1]) : null;
}

/** The command line as `ps` shows it; sshd rewrites its own (`sshd: root@notty`), which is what we want. */
export function commandLine(pid: number): string {
  return (readOrNull(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' ');
}

/** Every living descendant of `pid`, children before grandchildren. */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readOrNull(`/proc/${entry}/stat`);
    // Field 4 is the parent pid; field 2 (comm) is in parentheses and may contain spaces.
    const afterComm = stat?.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (afterComm) parentOf.set(Number(entry), Number(afterComm[1]));
  }
  const found: number[] = [];
  for (let frontier = [pid]; frontier.length > 0; ) {
    const next = [...parentOf].filter(([, parent]) => frontier.includes(parent)).map(([child]) => child);
    found.push(...next);
    frontier = next;
  }
  return found;
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
