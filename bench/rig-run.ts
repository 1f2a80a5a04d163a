// One measured run: a rig whose path is the one under test, the scenario's body, the proxies'
// peak memory, and verification; everything started is stopped and the run's files removed,
// also when something fails.
import { removeDir, startRig, type DiskSpec, type Pki, type Rig } from '../test/harness/index.js';
import { startPath, type PathHandle, type PathKind } from './paths/index.js';
import { statusKiB } from './proc.js';

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
  /** Default: rig.verify(), every destination disk identical to its source. */
  verify?: (rig: Rig) => Promise<Verdicts>;
}

export interface RigRunResult<T> {
  value: T;
  peaks: ProcessPeak[];
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
      connect: async (context) => (path = await startPath(options.kind, { ...context, rttMs: options.rttMs ?? 0 })),
    });
    const value = await body(rig, path!);
    // Now, before the daemons quit: socat's per-connection children exit with their connection.
    const peaks = peakMemory(path!);
    const verdicts = await (options.verify ?? ((r: Rig) => r.verify()))(rig);
    const different = verdicts.filter((v) => !v.identical);
    if (different.length > 0) throw new Error(`images differ: ${different.map((v) => `${v.name}: ${v.output}`).join('; ')}`);
    return { value, peaks, notes: path!.notes() };
  } finally {
    await rig?.stop();
    await removeDir(options.dir);
  }
}

function peakMemory(path: PathHandle): ProcessPeak[] {
  return path.processes().flatMap(({ name, pid }) => {
    const peakKiB = statusKiB(pid, 'VmHWM');
    return peakKiB === null ? [] : [{ name, pid, peakKiB }];
  });
}
