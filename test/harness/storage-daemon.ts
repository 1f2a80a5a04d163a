import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnChild, type Child, type ExitStatus } from './child.js';
import { createTestImage } from './images.js';
import { QmpClient, type QmpEvent } from './qmp.js';

export interface MirrorOpts {
  jobId: string;
  /** Source node name. */
  device: string;
  /** Target node name. */
  target: string;
  copyMode?: 'background' | 'write-blocking';
}

/** Events that end a job's wait: the one wanted, or one that means the job failed or went away. */
const JOB_OUTCOME_EVENTS = ['BLOCK_JOB_READY', 'BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED', 'BLOCK_JOB_ERROR', 'JOB_STATUS_CHANGE'];

/** How long a failed wait lingers for the job's final event, whose `error` says why it failed. */
const FINAL_EVENT_GRACE_MS = 2000;

/** A running qemu-storage-daemon driven over QMP. */
export class StorageDaemon {
  constructor(
    readonly child: Child,
    readonly qmp: QmpClient,
    readonly qmpSocket: string,
  ) {}

  get pid(): number {
    return this.child.pid;
  }

  async addRawImage(nodeName: string, filePath: string, opts: { readOnly?: boolean } = {}): Promise<void> {
    await this.qmp.execute('blockdev-add', {
      driver: 'raw',
      'node-name': nodeName,
      'read-only': opts.readOnly ?? false,
      file: { driver: 'file', filename: filePath, cache: { direct: false } },
    });
  }

  async startNbdServer(socketPath: string): Promise<void> {
    // nbd-server-start takes the legacy SocketAddress form, with the fields nested under `data`.
    await this.qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socketPath } } });
  }

  async exportNbd(nodeName: string, exportName: string, writable: boolean): Promise<void> {
    await this.qmp.execute('block-export-add', {
      type: 'nbd',
      id: exportName,
      'node-name': nodeName,
      name: exportName,
      writable,
    });
  }

  /**
   * Adds an NBD client node; QEMU connects to `socketPath` during this call. With
   * `reconnectDelay` (seconds), QEMU reconnects after losing the connection and re-runs the
   * requests it held meanwhile.
   */
  async addNbdClient(nodeName: string, socketPath: string, exportName: string, reconnectDelay?: number): Promise<void> {
    await this.qmp.execute('blockdev-add', {
      driver: 'nbd',
      'node-name': nodeName,
      server: { type: 'unix', path: socketPath },
      export: exportName,
      ...(reconnectDelay === undefined ? {} : { 'reconnect-delay': reconnectDelay }),
    });
  }

  async mirror(opts: MirrorOpts): Promise<void> {
    await this.qmp.execute('blockdev-mirror', {
      'job-id': opts.jobId,
      device: opts.device,
      target: opts.target,
      sync: 'full',
      'copy-mode': opts.copyMode ?? 'background',
    });
  }

  /** Resolves with the BLOCK_JOB_READY data; rejects if the job fails or ends first. */
  waitJobReady(jobId: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return this.waitJob(jobId, 'BLOCK_JOB_READY', timeoutMs);
  }

  /** Resolves with the BLOCK_JOB_COMPLETED data; rejects if the job failed or was force-cancelled. */
  waitJobCompleted(jobId: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return this.waitJob(jobId, 'BLOCK_JOB_COMPLETED', timeoutMs);
  }

  /** On a READY mirror this completes the job without pivoting to the target. */
  async cancelJob(jobId: string): Promise<void> {
    await this.qmp.execute('block-job-cancel', { device: jobId });
  }

  /** Mirror → READY → cancel → COMPLETED; returns milliseconds from issuing the mirror to READY. */
  async mirrorToCompletion(opts: MirrorOpts, timeoutMs: number): Promise<number> {
    const start = performance.now();
    await this.mirror(opts);
    await this.waitJobReady(opts.jobId, timeoutMs);
    const readyMs = performance.now() - start;
    await this.cancelJob(opts.jobId);
    await this.waitJobCompleted(opts.jobId, timeoutMs);
    return readyMs;
  }

  /** Asks the daemon to quit; kills it if it has not exited within `graceMs`. */
  async quit(graceMs = 5000): Promise<ExitStatus> {
    // The daemon may drop the connection before replying; its exit is what counts.
    await this.qmp.execute('quit').catch(() => {});
    await Promise.race([this.child.exited, sleep(graceMs, undefined, { ref: false })]);
    await this.stop();
    return this.child.exited;
  }

  /** Kills the daemon (SIGTERM, then SIGKILL); safe to call repeatedly and after quit(). */
  async stop(): Promise<void> {
    await this.child.stop();
    await this.qmp.close();
  }

  private async waitJob(jobId: string, wanted: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const event = await this.qmp.waitEvent(JOB_OUTCOME_EVENTS, (e) => isJobOutcome(e, jobId, wanted), timeoutMs);
    if (event.event === wanted && event.data.error === undefined) return event.data;
    // The first failure sign (BLOCK_JOB_ERROR, aborting) lacks the reason; the job's final event carries it.
    const final = await this.qmp
      .waitEvent(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (e) => e.data.device === jobId, FINAL_EVENT_GRACE_MS)
      .catch(() => event);
    const outcome = [event, final].filter((e, i, all) => all.indexOf(e) === i).map((e) => `${e.event} ${JSON.stringify(e.data)}`);
    throw new Error(`block job ${jobId} failed while waiting for ${wanted}: ${outcome.join(', then ')}`);
  }
}

/** True for `wanted` or any failure sign of job `jobId`; other status changes (running, ready, ...) are not outcomes. */
function isJobOutcome(e: QmpEvent, jobId: string, wanted: string): boolean {
  if (e.event === 'JOB_STATUS_CHANGE') return e.data.id === jobId && e.data.status === 'aborting';
  return e.data.device === jobId && (e.event === wanted || e.event !== 'BLOCK_JOB_READY');
}

/**
 * Starts qemu-storage-daemon with its QMP monitor on `<dir>/<name>-qmp.sock`
 * and connects to it. If anything fails the daemon is stopped before rejecting.
 */
export async function startStorageDaemon(dir: string, name: string): Promise<StorageDaemon> {
  const qmpSocket = join(dir, `${name}-qmp.sock`);
  const args = ['--chardev', `socket,id=qmp0,path=${qmpSocket},server=on,wait=off`, '--monitor', 'chardev=qmp0'];
  const { child, qmp } = await startQmpChild('qemu-storage-daemon', args, qmpSocket, name);
  return new StorageDaemon(child, qmp, qmpSocket);
}

export interface QmpChild {
  child: Child;
  qmp: QmpClient;
  /** Aborted, with the exit status and stderr as reason, once the process has exited. */
  died: AbortSignal;
}

/**
 * Starts a QEMU program whose `args` put a QMP monitor on `qmpSocket`, and connects to it. If
 * anything fails the process is stopped before rejecting.
 */
export async function startQmpChild(cmd: string, args: readonly string[], qmpSocket: string, name: string): Promise<QmpChild> {
  const child = await spawnChild(cmd, args);
  const died = new AbortController();
  void child.exited.then(({ code, signal }) => died.abort(new Error(`${cmd} ${name} exited (code ${code}, signal ${signal}): ${child.stderr.trim()}`)));
  try {
    return { child, qmp: await QmpClient.connect(qmpSocket, 10_000, died.signal), died: died.signal };
  } catch (err) {
    await child.stop();
    throw err;
  }
}

export interface ServedImage {
  daemon: StorageDaemon;
  /** The raw image file, `<dir>/<exportName>.img`. */
  image: string;
  /** The daemon's NBD server, `<dir>/<name>-nbd.sock`. */
  nbdSocket: string;
}

/**
 * A daemon serving one test image (data and holes, from `seed`) writable over NBD as
 * `exportName`. If anything fails the daemon is stopped before rejecting.
 */
export async function serveTestImage(dir: string, name: string, exportName: string, sizeBytes: number, seed: number): Promise<ServedImage> {
  const image = join(dir, `${exportName}.img`);
  const nbdSocket = join(dir, `${name}-nbd.sock`);
  await createTestImage(image, sizeBytes, seed);
  const daemon = await startStorageDaemon(dir, name);
  try {
    await daemon.addRawImage(exportName, image);
    await daemon.startNbdServer(nbdSocket);
    await daemon.exportNbd(exportName, exportName, true);
    return { daemon, image, nbdSocket };
  } catch (error) {
    await daemon.stop();
    throw error;
  }
}
