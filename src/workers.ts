// Several processes behind one command: the primary forks N workers (node:cluster), which share
// the listening sockets, so that several tunnel connections use several cores. The primary is
// not on the data path: it hands accepted connections round-robin to the workers, prints the one
// ready line once all of them are ready, restarts a worker that dies, and stops them on a signal.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from './log.js';

export const inWorker = cluster.isWorker;

/** This process among its siblings: `w<id>` in a worker, undefined alone. */
export function workerName(): string | undefined {
  return cluster.worker ? `w${cluster.worker.id}` : undefined;
}

type ReadyMessage = { type: 'nbd-tunnel-ready'; fields: Record<string, unknown> };

const RESTART_DELAY_MS = 1_000;

/** In a worker: tells the primary this worker serves, with the fields for the ready line. */
export function reportReady(fields: Record<string, unknown>): void {
  const message: ReadyMessage = { type: 'nbd-tunnel-ready', fields };
  process.send?.(message);
}

export interface Supervisor {
  /** The first worker's ready fields. */
  readyFields: Record<string, unknown>;
  /** The next ready worker, round-robin; null while none is running. */
  pick(): Worker | null;
  /** SIGTERM to every worker; resolves when all have exited. */
  close(): Promise<void>;
}

/** In the primary: forks `count` workers running this same command line; resolves once all are ready. */
export function superviseWorkers(count: number, log: Logger): Promise<Supervisor> {
  return new Promise((resolve, reject) => {
    const workers = new Set<Worker>();
    const ready: Worker[] = [];
    let turn = 0;
    let readyCount = 0;
    let readyFields: Record<string, unknown> | null = null;
    let stopping = false;
    let started = false;

    const fork = (): void => {
      const worker = cluster.fork();
      workers.add(worker);
      worker.on('message', (message: ReadyMessage) => {
        if (message?.type !== 'nbd-tunnel-ready') return;
        ready.push(worker);
        if (started) return;
        readyFields ??= message.fields;
        if (++readyCount === count) {
          started = true;
          resolve({ readyFields, pick, close });
        }
      });
      worker.on('exit', (code, signal) => {
        workers.delete(worker);
        if (ready.includes(worker)) ready.splice(ready.indexOf(worker), 1);
        if (stopping) return;
        if (!started) {
          // A worker that cannot start has printed why; the others are stopped too.
          void close().then(() => reject(new Error(`worker ${worker.process.pid} exited during start (code ${code}, signal ${signal})`)));
          return;
        }
        log.error({ worker: worker.process.pid, code, signal, restartInMs: RESTART_DELAY_MS }, 'worker exited; restarting it');
        setTimeout(() => stopping || fork(), RESTART_DELAY_MS);
      });
    };

    const pick = (): Worker | null => (ready.length === 0 ? null : ready[turn++ % ready.length]);

    const close = async (): Promise<void> => {
      stopping = true;
      await Promise.all(
        [...workers].map(
          (worker) =>
            new Promise<void>((done) => {
              if (worker.isDead()) return done();
              worker.once('exit', () => done());
              worker.process.kill('SIGTERM');
            }),
        ),
      );
    };

    // SIGHUP (reload certificates) is for the workers, which hold the TLS state.
    process.on('SIGHUP', () => {
      for (const worker of workers) worker.process.kill('SIGHUP');
    });
    for (let i = 0; i < count; i++) fork();
  });
}
