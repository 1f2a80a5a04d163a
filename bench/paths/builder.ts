// The parts every path module shares: processes it owns (stopped by PID, in reverse order,
// also when starting fails half-way), the optional delay relay between its two TCP ends, and
// the process listing that includes per-connection children (socat forks, sshd sessions).
import { spawnChild, startTcpRelay, type Child } from '../../test/harness/index.js';
import { commandLine, descendants } from '../proc.js';
import type { NamedProcess, PathHandle, PathOptions } from './types.js';

export class PathBuilder {
  private readonly watched: NamedProcess[] = [];
  private readonly stops: Array<() => Promise<void>> = [];
  private readonly facts: string[] = [];

  constructor(readonly options: PathOptions) {}

  /** Starts a process that belongs to the path; it is stopped with the path. */
  async spawn(name: string, cmd: string, args: readonly string[]): Promise<Child> {
    const child = await spawnChild(cmd, args);
    this.watch(name, child.pid);
    this.onStop(() => child.stop());
    return child;
  }

  /** Lists a process started by someone else (e.g. the harness's tunnel) among the path's processes. */
  watch(name: string, pid: number): void {
    this.watched.push({ name, pid });
  }

  onStop(stop: () => Promise<void>): void {
    this.stops.push(stop);
  }

  note(fact: string): void {
    this.facts.push(fact);
  }

  /**
   * The port the path's client half should connect to: `port` itself, or, with a round-trip
   * time to add, that of a delay relay in front of it (RTT/2 each way).
   */
  async via(port: number): Promise<number> {
    if (this.options.rttMs <= 0) return port;
    const relay = await startTcpRelay({ target: { host: '127.0.0.1', port }, oneWayDelayMs: this.options.rttMs / 2 });
    this.onStop(() => relay.close());
    return relay.port;
  }

  async stopAll(): Promise<void> {
    // Client halves were started last and go first, so nothing reconnects to a stopped server.
    for (const stop of this.stops.splice(0).reverse()) await stop().catch(() => {});
  }

  handle(clientSocket: (route: string) => string): PathHandle {
    return {
      clientSocket,
      processes: () => this.watched.flatMap((p) => [p, ...descendants(p.pid).map((pid) => ({ name: `${p.name} child (${shortTitle(pid)})`, pid }))]),
      notes: () => [...this.facts],
      stop: () => this.stopAll(),
    };
  }
}

/** Runs a path module's start-up; if it throws, whatever it had started is stopped. */
export async function buildPath(options: PathOptions, start: (b: PathBuilder) => Promise<(route: string) => string>): Promise<PathHandle> {
  const builder = new PathBuilder(options);
  try {
    return builder.handle(await start(builder));
  } catch (error) {
    await builder.stopAll();
    throw error;
  }
}

/** sshd's own process titles (`sshd: root@notty`) are short and telling; other command lines are cut to the program. */
function shortTitle(pid: number): string {
  const title = commandLine(pid);
  return title.length <= 32 ? title : (title.split(' ')[0].split('/').pop() ?? title);
}
