import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';

/** Output kept per stream; a chatty long-running daemon must not grow memory without bound. */
const OUTPUT_LIMIT = 1 << 20;

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOpts {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** `inherit`: the child writes to this process's stdout and stderr (nothing is captured). Default `pipe`. */
  output?: 'pipe' | 'inherit';
}

export interface Child {
  readonly pid: number;
  readonly proc: ChildProcess;
  /** The last ~1 MiB written to stdout so far. */
  readonly stdout: string;
  /** The last ~1 MiB written to stderr so far. */
  readonly stderr: string;
  /** Settles once the process has exited and its output pipes are drained. */
  readonly exited: Promise<ExitStatus>;
  /**
   * Sends `signal`, escalates to SIGKILL after `graceMs`, resolves once the
   * process has exited (its last output may still be in flight; await
   * `exited` for that). Safe to call repeatedly or after the process ended.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** Children still running, killed when this Node process exits so a crashed test leaks no daemons. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const proc of live) proc.kill('SIGKILL');
});

/** Resolves once the process is running (so `pid` is real); rejects if it could not be started (e.g. ENOENT). */
export async function spawnChild(cmd: string, args: readonly string[], opts: SpawnOpts = {}): Promise<Child> {
  const { output = 'pipe', ...spawnOpts } = opts;
  const proc = spawn(cmd, args, { ...spawnOpts, stdio: ['ignore', output, output] });
  const stdout = capture(proc.stdout);
  const stderr = capture(proc.stderr);
  await once(proc, 'spawn');
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`${commandLine(cmd, args)}: spawned without a pid`);
  live.add(proc);
  // 'exit' means the process is gone; 'close' also waits for its output, which
  // a grandchild holding the pipes could delay indefinitely, so stop() uses 'exit'.
  const gone = new Promise<void>((resolve) => {
    proc.once('exit', () => {
      live.delete(proc);
      resolve();
    });
  });
  const exited = new Promise<ExitStatus>((resolve) => {
    proc.once('close', (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal }));
  });

  const hasExited = (): boolean => proc.exitCode !== null || proc.signalCode !== null;
  return {
    pid,
    proc,
    get stdout() {
      return stdout();
    },
    get stderr() {
      return stderr();
    },
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
      if (hasExited()) return;
      // proc.kill signals this PID but, unlike process.kill(pid), never a recycled PID after reaping.
      proc.kill(signal);
      const escalate = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      try {
        await gone;
      } finally {
        clearTimeout(escalate);
      }
    },
  };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOpts extends SpawnOpts {
  /** Exit codes that count as success (default [0]); e.g. `qemu-img compare` exits 1 for "different". */
  okCodes?: readonly number[];
}

/** Runs a short command to completion; rejects with the command line and stderr on an unexpected exit. */
export async function run(cmd: string, args: readonly string[], opts: RunOpts = {}): Promise<RunResult> {
  const { okCodes = [0], ...spawnOpts } = opts;
  const child = await spawnChild(cmd, args, spawnOpts);
  const { code, signal } = await child.exited;
  if (code === null || !okCodes.includes(code)) {
    const how = signal !== null ? `killed by ${signal}` : `exited with ${code}`;
    throw new Error(`${commandLine(cmd, args)} ${how}: ${child.stderr.trim()}`);
  }
  return { code, stdout: child.stdout, stderr: child.stderr };
}

function commandLine(cmd: string, args: readonly string[]): string {
  return [cmd, ...args].join(' ');
}

/** Accumulates a stream's text, keeping only the tail; returns a reader for the current tail. */
function capture(stream: Readable | null): () => string {
  let text = '';
  if (stream === null) return () => text;
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    text += chunk;
    // Trim only once twice over the limit so trimming stays amortised O(1) per byte.
    if (text.length > 2 * OUTPUT_LIMIT) text = text.slice(-OUTPUT_LIMIT);
  });
  return () => text.slice(-OUTPUT_LIMIT);
}
