// What the demo started, stopped by PID (each thing's own stop()) in reverse order: at the end of
// each run, on failure, and on Ctrl-C or SIGTERM.
export class Stops {
  private readonly pending: Array<() => Promise<void>> = [];

  /** Registers what was just started; returns it. */
  add<T extends { stop(): Promise<void> }>(thing: T): T {
    this.pending.push(() => thing.stop());
    return thing;
  }

  /** Stops everything registered so far, newest first; a failing stop does not keep the others. */
  async run(): Promise<void> {
    for (let stop = this.pending.pop(); stop; stop = this.pending.pop()) await stop().catch(() => {});
  }
}
