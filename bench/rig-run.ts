// One measured run: a rig whose path is the one under test, the scenario's body, the proxies'
// peak memory, and verification; everything started is stopped and the run's files removed,
// also when something fails.
import { removeDir, startRig, type DiskSpec, type Pki, type Rig } from '../test/harness/index.js';
import { startPath, type PathHandle, type PathKind } from './paths/index.js';
import { cpuSeconds, statusKiB } from './proc.js';

export interface ProcessPeak {
  name: string;
  pid: number;
  /** VmHWM: the most resident memory the process ever had, in KiB. */
  peakKiB: number;
}

export type Verdicts = Array<{ name: string; identical: boolean; output: string }>;

export interface RigRunOptions {
  kind: PathKind;
  dir: string;
  pki: Pki;
  disks: DiskSpec[];
  rttMs?: number;
  writerSocket?: string;
  /** See PathOptions.profileDir. */
  profileDir?: string;
  /** Default: rig.verify(), every destination disk identical to its source. */
  verify?: (rig: Rig) => Promise<Verdicts>;
}

export interface RigRunResult<T> {
  value: T;
  peaks: ProcessPeak[];
  /** CPU seconds the path's processes (children included) spent during the body; null without processes. */
  cpuSeconds: number | null;
  notes: string[];
}

export async function withPathRig<T>(options: RigRunOptions, body: (rig: Rig, path: PathHandle) => Promise<T>): Promise<RigRunResult<T>> {
  let path: PathHandle | null = null;
  let rig: Rig | null = null;
  try {
    rig = await startRig({
      dir: options.dir,
      pki: options.pki,
      disks: options.disks,
      writerSocket: options.writerSocket,
      connect: async (context) => (path = await startPath(options.kind, { ...context, rttMs: options.rttMs ?? 0, profileDir: options.profileDir })),
    });
    const cpuBefore = pathCpu(path!);
    const value = await body(rig, path!);
    const cpuAfter = pathCpu(path!);
    // Now, before the daemons quit: socat's per-connection children exit with their connection.
    const peaks = peakMemory(path!);
    const verdicts = await (options.verify ?? ((r: Rig) => r.verify()))(rig);
    const different = verdicts.filter((v) => !v.identical);
    if (different.length > 0) throw new Error(`images differ: ${different.map((v) => `${v.name}: ${v.output}`).join('; ')}`);
    const cpu = cpuBefore === null || cpuAfter === null ? null : cpuAfter - cpuBefore;
    return { value, peaks, cpuSeconds: cpu, notes: path!.notes() };
  } finally {
    await rig?.stop();
    await removeDir(options.dir);
  }
}

/** The path's CPU seconds so far, its living descendants included; null for a path without processes. */
function pathCpu(path: PathHandle): number | null {
  const readings = path.processes().map(({ pid }) => cpuSeconds(pid) ?? 0);
  return readings.length === 0 ? null : readings.reduce((a, b) => a + b, 0);
}

function peakMemory(path: PathHandle): ProcessPeak[] {
  return path.processes().flatMap(({ name, pid }) => {
    const peakKiB = statusKiB(pid, 'VmHWM');
    return peakKiB === null ? [] : [{ name, pid, peakKiB }];
  });
}
