// `nbd-tunnel migrate` on the source: libvirt's --copy-storage-all sequence through one tunnel
// session. The destination exports the VM's disks (prepare); each disk is mirrored into an nbd
// node on a bridge socket to READY; then either the mirrors complete (storage only) or RAM goes
// with pause-before-switchover, the mirrors complete at pre-switchover and the migration
// continues; finally the destination stops its NBD server and resumes the VM (finish). Every
// step that changes a QEMU pushes its undo; a failure or an interrupt runs them in reverse.
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.js';
import type { QmpClient } from '../qmp/index.js';
import { OpenRefusedError, openDeadlineMs, requestOpen, type Session } from '../tunnel/index.js';
import { openBridge } from './bridge.js';
import { LineChannel } from './line-channel.js';
import { parseControlReply, type ControlRequest, type DiskSpec } from './protocol.js';

export interface MigrateOptions {
  vm: string;
  /** Block node names; empty: every writable disk of the VM. */
  disks: string[];
  storageOnly: boolean;
  copyMode: 'background' | 'write-blocking';
  /** Mirror speed limit per disk, bytes/s; 0: none. */
  speed: number;
}

export interface DiskProgress {
  node: string;
  offset: number;
  len: number;
  ready: boolean;
}

export interface MigrationProgress {
  phase: 'mirror' | 'ram' | 'switchover' | 'finish';
  disks: DiskProgress[];
  ram: { transferred: number; total: number; remaining: number } | null;
}

export interface MigrationReport {
  vm: string;
  disks: Array<{ node: string; size: number; mbps: number; readyMs: number }>;
  ram: { bytes: number; mbps: number } | null;
  downtimeMs: number | null;
  totalMs: number;
  /** The VM's status on the destination afterwards. */
  destination: string;
}

interface BlockInfo {
  device: string;
  qdev?: string;
  inserted?: { 'node-name': string; ro: boolean };
}
interface NamedNode {
  'node-name': string;
  image: { 'virtual-size': number };
}
interface BlockJob {
  device: string;
  offset: number;
  len: number;
  ready: boolean;
}
interface MigrationInfo {
  status?: string;
  'error-desc'?: string;
  downtime?: number;
  ram?: { transferred: number; total: number; remaining: number; mbps: number };
}

const POLL_MS = 250;
/** While RAM goes: the guest is paused at pre-switchover until the poll that sees it, so look often. */
const MIGRATION_POLL_MS = 20;
/** How long a cancelled mirror may take to end. */
const JOB_END_MS = 60_000;
/** How long QEMU's connections may take to end by themselves once their work is done. */
const BRIDGE_GRACE_MS = 10_000;
/** A command to a QEMU being undone may fail (the thing is gone already); its error is not the story. */
const quietly = (step: Promise<unknown>): Promise<unknown> => step.catch(() => undefined);

export async function migrate(
  qmp: QmpClient,
  qmpSocket: string,
  session: Session,
  options: MigrateOptions,
  log: Logger,
  onProgress: (progress: MigrationProgress) => void,
  signal: AbortSignal,
): Promise<MigrationReport> {
  const started = Date.now();
  const undo: Array<() => Promise<unknown>> = [];
  const { status: sourceStatus } = await qmp.execute<{ status: string }>('query-status');
  if (sourceStatus !== 'running' && sourceStatus !== 'paused') throw new Error(`VM is ${sourceStatus} on the source; only a running or paused VM migrates`);
  const disks = await chooseDisks(qmp, options);
  try {
    // Whatever failed, a VM that was running runs again here (a cancelled migration may leave it paused).
    undo.push(async () => {
      const { status } = await qmp.execute<{ status: string }>('query-status');
      if (sourceStatus === 'running' && status !== 'running') await qmp.execute('cont');
    });
    const control = await openControl(session, options.vm, signal);
    undo.push(() => control.request({ op: 'abort' }).finally(() => control.close()));
    const prepared = await control.request({ op: 'prepare', disks, ram: !options.storageOnly });
    const base = join(dirname(qmpSocket), `nbd-tunnel-migrate-${process.pid}`);
    const nbdBridge = await openBridge(`${base}-nbd.sock`, prepared.route!, session, qmpSocket, log);
    undo.push(() => nbdBridge.close());
    const jobs = disks.map((disk, i) => ({ ...disk, target: `nbd-tunnel-${i}`, job: `nbd-tunnel-mirror-${i}` }));
    for (const job of jobs) {
      await qmp.execute('blockdev-add', { driver: 'nbd', 'node-name': job.target, server: { type: 'unix', path: nbdBridge.path }, export: job.node });
      undo.push(() => qmp.execute('blockdev-del', { 'node-name': job.target }));
      const speed = options.speed > 0 ? { speed: options.speed } : {};
      await qmp.execute('blockdev-mirror', { 'job-id': job.job, device: job.node, target: job.target, sync: 'full', 'copy-mode': options.copyMode, ...speed });
      undo.push(() => cancelJob(qmp, job.job, true));
    }
    const readyAt = await waitReady(qmp, jobs, (d) => onProgress({ phase: 'mirror', disks: d, ram: null }), signal);
    let ram: MigrationReport['ram'] = null;
    let downtimeMs: number | null = null;
    if (options.storageOnly) {
      for (const job of jobs) await cancelJob(qmp, job.job, false);
    } else {
      const receiving = await control.request({ op: 'ram' });
      const ramBridge = await openBridge(`${base}-ram.sock`, receiving.route!, session, qmpSocket, log);
      undo.push(() => ramBridge.close());
      await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'pause-before-switchover', state: true }] });
      undo.push(() => qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'pause-before-switchover', state: false }] }));
      const ramStarted = Date.now();
      await qmp.execute('migrate', { uri: `unix:${ramBridge.path}` });
      undo.push(() => quietly(qmp.execute('migrate_cancel')));
      await waitMigration(qmp, 'pre-switchover', (r) => onProgress({ phase: 'ram', disks: jobs.map((j) => ({ node: j.node, offset: j.size, len: j.size, ready: true })), ram: r }), signal);
      // The guest is paused: the mirrors have nothing left to copy, and complete consistent with the RAM.
      onProgress({ phase: 'switchover', disks: [], ram: null });
      for (const job of jobs) await cancelJob(qmp, job.job, false);
      await qmp.execute('migrate-continue', { state: 'pre-switchover' });
      const done = await waitMigration(qmp, 'completed', () => {}, signal);
      ram = { bytes: done.ram?.transferred ?? 0, mbps: Math.round(((done.ram?.transferred ?? 0) / Math.max(1, Date.now() - ramStarted)) / 1e3) };
      downtimeMs = done.downtime ?? null;
      await quietly(qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'pause-before-switchover', state: false }] }));
      // "completed" comes before QEMU closes its end: the stream's last bytes may still be on their way.
      await ramBridge.close(BRIDGE_GRACE_MS);
    }
    onProgress({ phase: 'finish', disks: [], ram: null });
    for (const job of jobs) await qmp.execute('blockdev-del', { 'node-name': job.target });
    await nbdBridge.close(BRIDGE_GRACE_MS); // blockdev-del disconnected the NBD clients
    const finished = await control.request({ op: 'finish' });
    control.close();
    return {
      vm: options.vm,
      disks: jobs.map((job) => {
        const readyMs = readyAt.get(job.job)! - started;
        return { node: job.node, size: job.size, readyMs, mbps: Math.round(job.size / Math.max(1, readyMs) / 1e3) };
      }),
      ram,
      downtimeMs,
      totalMs: Date.now() - started,
      destination: finished.status ?? 'unknown',
    };
  } catch (error) {
    log.warn({ vm: options.vm, reason: (error as Error).message, steps: undo.length }, 'migration failed: undoing');
    for (const step of undo.reverse()) await quietly(step());
    throw error;
  }
}

/** The disks named, or every writable one the VM has; each with its size. */
async function chooseDisks(qmp: QmpClient, options: MigrateOptions): Promise<DiskSpec[]> {
  const nodes = await qmp.execute<NamedNode[]>('query-named-block-nodes', { flat: true });
  let names = options.disks;
  if (names.length === 0) {
    const blocks = await qmp.execute<BlockInfo[]>('query-block');
    const writable = blocks.filter((b) => b.inserted && !b.inserted.ro).map((b) => b.inserted!['node-name']);
    const unnamed = writable.filter((n) => n.startsWith('#'));
    if (unnamed.length > 0) throw new Error(`disk nodes ${unnamed.join(', ')} have no name of their own (attach disks with -blockdev node-name=…, or name them with --disk)`);
    names = writable;
  }
  if (names.length === 0 && options.storageOnly) throw new Error('the VM has no writable disk to migrate');
  return names.map((name) => {
    const node = nodes.find((n) => n['node-name'] === name);
    if (!node) throw new Error(`disk node '${name}' does not exist on the source`);
    return { node: name, size: node.image['virtual-size'] };
  });
}

interface Control {
  request(request: ControlRequest): Promise<ReturnType<typeof parseControlReply> & { ok: true }>;
  close(): void;
}

async function openControl(session: Session, vm: string, signal: AbortSignal): Promise<Control> {
  const stream = session.open();
  try {
    await requestOpen(stream, { migrate: vm }, openDeadlineMs(session));
  } catch (error) {
    if (error instanceof OpenRefusedError) throw new Error(`the destination refused the migration: ${error.message}`);
    throw error;
  }
  const channel = new LineChannel(stream);
  return {
    async request(request) {
      channel.send(request);
      // An interrupt does not wait for the destination; abort, sent while undoing, is the exception.
      const message = request.op === 'abort' ? await channel.next() : await abortable(channel.next(), signal);
      if (message === null) throw new Error(`the destination closed the migration channel${channel.error ? `: ${channel.error.message}` : ''}`);
      const reply = parseControlReply(message);
      if (!reply.ok) throw new Error(reply.error);
      return reply;
    },
    close: () => channel.close(),
  };
}

/** Polls the mirrors until all are READY; resolves with when each became so. A job that ends first fails with QEMU's error. */
async function waitReady(qmp: QmpClient, jobs: Array<{ node: string; job: string }>, onProgress: (disks: DiskProgress[]) => void, signal: AbortSignal): Promise<Map<string, number>> {
  const readyAt = new Map<string, number>();
  for (;;) {
    signal.throwIfAborted();
    const running = await qmp.execute<BlockJob[]>('query-block-jobs');
    const progress = jobs.map(({ node, job }) => {
      const info = running.find((j) => j.device === job);
      if (!info) throw new Error(`mirror of disk '${node}' ended before it was READY: ${jobError(qmp, job) ?? 'no error given'}`);
      if (info.ready && !readyAt.has(job)) readyAt.set(job, Date.now());
      return { node, offset: info.offset, len: info.len, ready: info.ready };
    });
    onProgress(progress);
    if (readyAt.size === jobs.length) return readyAt;
    // An interrupt rejects with its reason (why the migration stops), not the timer's AbortError.
    await sleep(POLL_MS, undefined, { signal }).catch(() => signal.throwIfAborted());
  }
}

function jobError(qmp: QmpClient, job: string): string | null {
  const ended = qmp.events.filter((e) => (e.event === 'BLOCK_JOB_COMPLETED' || e.event === 'BLOCK_JOB_CANCELLED') && e.data.device === job).at(-1);
  return typeof ended?.data.error === 'string' ? ended.data.error : null;
}

/** block-job-cancel: after READY it completes the mirror (the copy consistent now); `force` abandons it. Waits for the job's end event. */
async function cancelJob(qmp: QmpClient, job: string, force: boolean): Promise<void> {
  // Waited for by event, not by polling: at switch-over the guest is paused meanwhile.
  const ended = qmp.waitEvent(['BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'], (e) => e.data.device === job, JOB_END_MS);
  ended.catch(() => {}); // the cancel below may fail first (a job already gone), and that is the error
  await qmp.execute('block-job-cancel', { device: job, force });
  const { data } = await ended;
  if (typeof data.error === 'string' && !force) throw new Error(`mirror job ${job} failed at completion: ${data.error}`);
}

/** Polls query-migrate until `status`; a failed or cancelled migration rejects with QEMU's error text. */
async function waitMigration(qmp: QmpClient, status: string, onProgress: (ram: MigrationProgress['ram']) => void, signal: AbortSignal): Promise<MigrationInfo> {
  for (;;) {
    signal.throwIfAborted();
    const info = await qmp.execute<MigrationInfo>('query-migrate');
    if (info.status === status) return info;
    if (info.status === 'failed' || info.status === 'cancelled') throw new Error(`RAM migration ${info.status}: ${info['error-desc'] ?? 'no error given'}`);
    if (info.ram) onProgress({ transferred: info.ram.transferred, total: info.ram.total, remaining: info.ram.remaining });
    // An interrupt rejects with its reason (why the migration stops), not the timer's AbortError.
    await sleep(MIGRATION_POLL_MS, undefined, { signal }).catch(() => signal.throwIfAborted());
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
