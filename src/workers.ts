// Several processes behind one command: the primary forks N workers (node:cluster), which share
// the listening sockets, so that several tunnel connections use several cores. The primary is
// not on the data path: it hands accepted connections round-robin to the workers, prints the one
// ready line once all of them are ready, restarts a worker that dies, and stops them on a signal.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from './log.js';

export const inWorker = cluster.isWorker;

/** A worker's name, `w<id>`: the cluster's ids are never reused, so a restarted worker has a new one. */
export const nameOf = (worker: Worker): string => `w${worker.id}`;

/** This process among its siblings: `w<id>` in a worker, undefined alone. */
export function workerName(): string | undefined {
  return cluster.worker ? nameOf(cluster.worker) : undefined;
}

type ReadyMessage = { type: 'nbd-tunnel-ready'; fields: Record<string, unknown> };

const RESTART_DELAY_MS = 1_000;

/** In a worker: tells the primary this worker serves, with the fields for the ready line. */
export function reportReady(fields: Record<string, unknown>): void {
  const message: ReadyMessage = { type: 'nbd-tunnel-ready', fields };
  process.send?.(message);
}

/** One of the N places the supervisor keeps filled, as /status and /healthz report it. */
export interface Member {
  name: string;
  pid: number;
  /** The running worker; null once it has exited (a replacement follows). */
  worker: Worker | null;
  /** Why it does not serve now (exited, starting); absent while it serves. */
  down?: string;
}

export interface Supervisor {
  /** The first worker's ready fields. */
  readyFields: Record<string, unknown>;
  /** The next ready worker, round-robin; null while none is running. */
  pick(): Worker | null;
  /** Every place, in order: its worker, or the one that exited from it. */
  members(): Member[];
  /** SIGTERM to every worker; resolves when all have exited. */
  close(): Promise<void>;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  /** Set once the worker has exited: how. */
  exited?: string;
  /** The worker this one replaces, and how it ended. */
  replaces?: string;
}

const describe = (worker: Worker): string => `worker ${nameOf(worker)} (pid ${worker.process.pid})`;

/** In the primary: forks `count` workers running this same command line; resolves once all are ready. */
export function superviseWorkers(count: number, log: Logger): Promise<Supervisor> {
  return new Promise((resolve, reject) => {
    const slots: Slot[] = [];
    let turn = 0;
    let readyFields: Record<string, unknown> | null = null;
    let stopping = false;
    let started = false;

    const fork = (index: number, replaces?: string): void => {
      const worker = cluster.fork();
      const slot: Slot = { worker, ready: false, replaces };
      slots[index] = slot;
      worker.on('message', (message: ReadyMessage) => {
        if (message?.type !== 'nbd-tunnel-ready') return;
        slot.ready = true;
        slot.replaces = undefined;
        readyFields ??= message.fields;
        if (!started && slots.length === count && slots.every((s) => s.ready)) {
          started = true;
          resolve({ readyFields, pick, members, close });
        }
      });
      worker.on('exit', (code, signal) => {
        slot.ready = false;
        slot.exited = signal ? `signal ${signal}` : `code ${code}`;
        if (stopping) return;
        if (!started) {
          // A worker that cannot start has printed why; the others are stopped too.
          void close().then(() => reject(new Error(`worker ${worker.process.pid} exited during start (code ${code}, signal ${signal})`)));
          return;
        }
        log.error({ worker: worker.process.pid, code, signal, restartInMs: RESTART_DELAY_MS }, 'worker exited; restarting it');
        setTimeout(() => stopping || fork(index, `${describe(worker)}, which exited (${slot.exited})`), RESTART_DELAY_MS);
      });
    };

    const pick = (): Worker | null => {
      const ready = slots.filter((s) => s.ready);
      return ready.length === 0 ? null : ready[turn++ % ready.length].worker;
    };

    const members = (): Member[] =>
      slots.map(({ worker, ready, exited, replaces }) => {
        const member = { name: nameOf(worker), pid: worker.process.pid ?? 0 };
        if (exited) return { ...member, worker: null, down: `exited (${exited})${stopping ? '' : ', to be restarted'}` };
        if (!ready) return { ...member, worker, down: `starting${replaces ? `, in place of ${replaces}` : ''}` };
        return { ...member, worker };
      });

    const close = async (): Promise<void> => {
      stopping = true;
      await Promise.all(
        slots.map(
          ({ worker }) =>
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
      for (const { worker } of slots) if (!worker.isDead()) worker.process.kill('SIGHUP');
    });
    for (let i = 0; i < count; i++) fork(i);
  });
}
