// Readings from /proc: memory and CPU time of the proxies, bytes they read, and the children they fork.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second, the unit of the CPU times in /proc/<pid>/stat. */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

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

/**
 * User + system CPU seconds of the process (all its threads), plus those of its children it has
 * reaped; null once it is gone. Summed over a process tree, the difference between two readings
 * is the tree's CPU in between, also for children that were born or died meanwhile.
 */
export function cpuSeconds(pid: number): number | null {
  const fields = statFields(pid);
  if (!fields) return null;
  // stat(5): utime, stime, cutime, cstime are fields 14 to 17.
  const ticks = [13, 14, 15, 16].reduce((sum, field) => sum + Number(fields[field]), 0);
  return ticks / CLOCK_TICKS;
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
    const fields = statFields(Number(entry));
    if (fields) parentOf.set(Number(entry), Number(fields[3]));
  }
  const found: number[] = [];
  for (let frontier = [pid]; frontier.length > 0; ) {
    const next = [...parentOf].filter(([, parent]) => frontier.includes(parent)).map(([child]) => child);
    found.push(...next);
    frontier = next;
  }
  return found;
}

/** /proc/<pid>/stat split into fields, numbered from 0 (the pid); null once the process is gone. */
function statFields(pid: number): string[] | null {
  const stat = readOrNull(`/proc/${pid}/stat`);
  if (!stat) return null;
  // Field 2 (comm) is in parentheses and may contain spaces: split after it.
  const close = stat.lastIndexOf(')');
  return [stat.slice(0, stat.indexOf(' ')), stat.slice(stat.indexOf('(') + 1, close), ...stat.slice(close + 2).split(' ')];
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}
