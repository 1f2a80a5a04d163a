// The primary's /metrics, /status and /healthz with workers: it asks every worker over IPC and
// merges the answers. A worker that does not answer within a second is reported as such, so
// one stuck process never holds an HTTP request (nor a Prometheus scrape) up.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Gauge, Registry as PromRegistry } from 'prom-client';
import type { Member } from '../workers.js';
import { VERSION } from '../version.js';
import type { Answer, Ask, Topic, WorkerStatus } from './ipc.js';
import { perProcess, prometheusRegistry } from './prometheus.js';
import { Registry, type SessionStatus } from './registry.js';
import type { HealthReading, MetricsView } from './server.js';

const ANSWER_WITHIN_MS = 1_000;

type MetricJson = Awaited<ReturnType<PromRegistry['getMetricsAsJSON']>>[number];
type Reply = { ok: true; body: unknown } | { ok: false; reason: string };

/** A worker in the primary's /status. */
export interface WorkerState {
  worker: string;
  pid: number;
  ok: boolean;
  /** Why it is not ok: down (exited, starting), no answer, or its own /healthz reason. */
  reason?: string;
}

const waiting = new Map<number, (reply: Reply) => void>();
let lastAsk = 0;
let listening = false;

function ask(worker: Worker, topic: Topic): Promise<Reply> {
  if (!listening) {
    listening = true;
    cluster.on('message', (_worker, message: Answer) => {
      if (message?.type !== 'nbd-tunnel-metrics-answer') return;
      waiting.get(message.id)?.(message.error === undefined ? { ok: true, body: message.body } : { ok: false, reason: `could not answer: ${message.error}` });
    });
  }
  const message: Ask = { type: 'nbd-tunnel-metrics-ask', id: ++lastAsk, topic };
  return new Promise((resolve) => {
    const settle = (reply: Reply): void => {
      clearTimeout(timer);
      waiting.delete(message.id);
      resolve(reply);
    };
    const timer = setTimeout(() => settle({ ok: false, reason: `did not answer within ${ANSWER_WITHIN_MS / 1000} s` }), ANSWER_WITHIN_MS);
    waiting.set(message.id, settle);
    if (!worker.isConnected()) return settle({ ok: false, reason: 'its IPC channel is closed' });
    worker.send(message, undefined, undefined, (error) => error && settle({ ok: false, reason: `cannot be asked: ${error.message}` }));
  });
}

/**
 * Every member with its reply; a member that is down is not asked. One that exits while asked
 * (killed) is reported by how it exited, not as silent.
 */
async function askAll(members: () => Member[], topic: Topic): Promise<Array<{ member: Member; reply: Reply }>> {
  const asked = members();
  const replies = await Promise.all(asked.map((m) => (m.worker && !m.down ? ask(m.worker, topic) : Promise.resolve<Reply>({ ok: false, reason: m.down ?? 'exited' }))));
  const now = members();
  return asked.map((member, i) => {
    const later = now.find((m) => m.pid === member.pid);
    return !replies[i].ok && later?.down ? { member: later, reply: { ok: false, reason: later.down } } : { member, reply: replies[i] };
  });
}

/** How a member is doing, given its reply; `health` reads the worker's own verdict from the body. */
function verdict(reply: Reply, health: (body: unknown) => HealthReading): HealthReading {
  return reply.ok ? health(reply.body) : reply;
}

/** Labels one process's per-process figures with its name, so that they stay apart in the merge. */
function labelled(metrics: MetricJson[], worker: string): MetricJson[] {
  return metrics.map((m) => (perProcess(m.name) ? { ...m, aggregator: 'sum', values: m.values.map((v) => ({ ...v, labels: { ...v.labels, worker } })) } : m));
}

const tagged = (worker: string) => (s: SessionStatus): SessionStatus => ({ worker, ...s, streams: s.streams.map((stream) => ({ worker, ...stream })) });

export function clusterView(role: string, members: () => Member[]): MetricsView {
  // The primary's own figures: its process metrics, its dropped log lines, the build.
  const own = prometheusRegistry(new Registry());
  const up = new Gauge({
    name: 'nbd_tunnel_worker_up',
    help: `1 when the worker answered this scrape; 0 when it exited, is starting, or did not answer within ${ANSWER_WITHIN_MS / 1000} s`,
    labelNames: ['worker'],
    registers: [own],
  });
  return {
    contentType: own.contentType,
    async metrics() {
      const replies = await askAll(members, 'metrics');
      up.reset();
      for (const { member, reply } of replies) up.set({ worker: member.name }, reply.ok ? 1 : 0);
      const sets = [labelled(await own.getMetricsAsJSON(), 'primary')];
      for (const { member, reply } of replies) if (reply.ok) sets.push(labelled(reply.body as MetricJson[], member.name));
      return AggregatorRegistry.aggregate(sets).metrics();
    },
    async status() {
      const replies = await askAll(members, 'status');
      const workers = replies.map(({ member, reply }): WorkerState => ({ worker: member.name, pid: member.pid, ...verdict(reply, (body) => (body as WorkerStatus).health) }));
      const sessions = replies.flatMap(({ member, reply }) => (reply.ok ? (reply.body as WorkerStatus).sessions.map(tagged(member.name)) : []));
      return { role, version: VERSION, pid: process.pid, workers, sessions };
    },
    async health() {
      const reasons = (await askAll(members, 'health')).flatMap(({ member, reply }) => {
        const state = verdict(reply, (body) => body as HealthReading);
        return state.ok ? [] : [`worker ${member.name} (pid ${member.pid}): ${state.reason}`];
      });
      return reasons.length === 0 ? { ok: true } : { ok: false, reason: reasons.join('; ') };
    },
  };
}
