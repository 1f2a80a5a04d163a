// What the numbers were measured on: the machine and the version of every program in a path.
import { readFileSync } from 'node:fs';
import { availableParallelism, release } from 'node:os';
import { run } from '../../test/harness/index.js';

export interface Environment {
  date: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; kernel: string };
  versions: Record<string, string>;
}

export async function describeEnvironment(): Promise<Environment> {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const memKiB = Number(readFileSync('/proc/meminfo', 'utf8').match(/^MemTotal:\s+(\d+)/m)?.[1] ?? 0);
  return {
    date: new Date().toISOString(),
    machine: {
      cpus: availableParallelism(),
      cpuModel: cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1].trim() ?? 'unknown',
      memoryGiB: Math.round((memKiB / (1 << 20)) * 10) / 10,
      kernel: release(),
    },
    versions: {
      node: process.version,
      qemu: await firstLine('qemu-storage-daemon', ['--version'], /qemu-storage-daemon version (\S+)/),
      openssl: await firstLine('openssl', ['version'], /OpenSSL (\S+)/),
      stunnel: await firstLine('stunnel', ['-version'], /stunnel (\S+) on/),
      ssh: await firstLine('ssh', ['-V'], /(OpenSSH_\S+)/),
      socat: await firstLine('socat', ['-V'], /socat version (\S+)/),
    },
  };
}

/** The version `pattern` finds in what the command printed (either stream; stunnel and ssh use stderr). */
async function firstLine(cmd: string, args: string[], pattern: RegExp): Promise<string> {
  try {
    const { stdout, stderr } = await run(cmd, args, { okCodes: [0, 1] });
    return (stdout + stderr).match(pattern)?.[1] ?? 'unknown';
  } catch {
    return 'not installed';
  }
}
