// The Prometheus view of a Registry: every value computed at scrape time from live streams plus
// the totals of closed ones. Each metric's `aggregator` says how a primary merges its workers'
// values (cluster-view.ts): counters and most gauges add up; the rest say so.
import { collectDefaultMetrics, Counter, Gauge, Registry as PromRegistry, type LabelValues } from 'prom-client';
import { droppedLogLines } from '../log.js';
import { replayMemory } from '../tunnel/index.js';
import { buildInfo } from '../version.js';
import { directionBytes, negotiated, type Registry } from './registry.js';

type Labels = LabelValues<string>;

/**
 * Figures of one process (its CPU, memory, descriptors, event loop, replay peak): with workers,
 * each worker's are kept apart under a `worker` label rather than merged.
 */
export const perProcess = (name: string): boolean => /^nbd_tunnel_(process_|nodejs_|replay_bytes_peak$)/.test(name);

/** Sums `entries` into a label-keyed map, starting from closed-stream totals. */
function sum(base: Map<string, number>, entries: Array<[string[], number]>): Map<string, number> {
  const out = new Map(base);
  for (const [key, n] of entries) {
    const k = key.join('\0');
    out.set(k, (out.get(k) ?? 0) + n);
  }
  return out;
}

function setAll(metric: Counter | Gauge, names: string[], values: Map<string, number>): void {
  metric.reset();
  for (const [key, value] of values) {
    const parts = key.split('\0');
    const labels: Labels = Object.fromEntries(names.map((n, i) => [n, parts[i]]));
    if (metric instanceof Counter) metric.inc(labels, value);
    else metric.set(labels, value);
  }
}

export function prometheusRegistry(registry: Registry): PromRegistry {
  const prom = new PromRegistry();
  const liveNbd = () => [...registry.streams].map(negotiated).filter((n) => n !== null);
  // The usual *_build_info idiom: a constant 1 whose labels say what runs, to join on in queries.
  new Gauge({ name: 'nbd_tunnel_build_info', help: 'Always 1; the labels name the nbd-tunnel and Node.js versions', labelNames: ['version', 'node'], aggregator: 'first', registers: [prom] }).set(
    { ...buildInfo },
    1,
  );
  new Gauge({
    name: 'nbd_tunnel_sessions_active',
    help: 'Tunnel sessions open now',
    registers: [prom],
    collect() {
      this.set(registry.sessions.size);
    },
  });
  new Gauge({
    name: 'nbd_tunnel_sessions_suspended',
    help: 'Sessions whose connection is lost, waiting for a resume',
    registers: [prom],
    collect() {
      this.set([...registry.sessions.values()].filter((s) => s.suspended).length);
    },
  });
  new Counter({
    name: 'nbd_tunnel_session_resumes_total',
    help: 'Sessions resumed after a lost connection',
    registers: [prom],
    collect() {
      this.reset();
      this.inc(registry.resumes);
    },
  });
  new Gauge({
    name: 'nbd_tunnel_replay_bytes',
    help: 'Bytes held for re-sending after a reconnect (sent, not yet confirmed by the peer), all streams',
    registers: [prom],
    collect() {
      this.set(replayMemory.bytes);
    },
  });
  new Gauge({
    name: 'nbd_tunnel_replay_bytes_peak',
    help: 'Most bytes ever held for re-sending at once by this process',
    registers: [prom],
    collect() {
      this.set(replayMemory.peak);
    },
  });
  new Gauge({
    name: 'nbd_tunnel_streams_active',
    help: 'Streams open now, by route',
    labelNames: ['route'],
    registers: [prom],
    collect() {
      setAll(this, ['route'], sum(new Map(), [...registry.streams].map((s) => [[s.route], 1])));
    },
  });
  new Counter({
    name: 'nbd_tunnel_bytes_total',
    help: 'Bytes carried, by route and direction (to_dest, to_source)',
    labelNames: ['route', 'direction'],
    registers: [prom],
    collect() {
      const live: Array<[string[], number]> = [];
      for (const s of registry.streams) {
        const [toDest, toSource] = directionBytes(s);
        live.push([[s.route, 'to_dest'], toDest], [[s.route, 'to_source'], toSource]);
      }
      setAll(this, ['route', 'direction'], sum(registry.closedBytes.values, live));
    },
  });
  new Counter({
    name: 'nbd_tunnel_nbd_requests_total',
    help: 'NBD requests seen, by route, export and type',
    labelNames: ['route', 'export', 'type'],
    registers: [prom],
    collect() {
      const live = liveNbd().flatMap(({ labels, stats }) =>
        Object.entries(stats.requests).map(([type, r]): [string[], number] => [[...labels, type], r.count]),
      );
      setAll(this, ['route', 'export', 'type'], sum(registry.closedRequests.values, live.filter(([, n]) => n > 0)));
    },
  });
  new Counter({
    name: 'nbd_tunnel_nbd_errors_total',
    help: 'NBD error replies, by route and export',
    labelNames: ['route', 'export'],
    registers: [prom],
    collect() {
      const live = liveNbd().map(({ labels, stats }): [string[], number] => [labels, stats.errors.total]);
      setAll(this, ['route', 'export'], sum(registry.closedErrors.values, live));
    },
  });
  new Gauge({
    name: 'nbd_tunnel_export_covered_ratio',
    help: 'Share of the export written at least once through an open stream, by route and export',
    labelNames: ['route', 'export'],
    aggregator: 'max', // a share: never added across processes
    registers: [prom],
    collect() {
      const live = liveNbd().flatMap(({ labels, stats }): Array<[string[], number]> => (stats.coverage ? [[labels, stats.coverage.ratio]] : []));
      setAll(this, ['route', 'export'], sum(new Map(), live));
    },
  });
  new Gauge({
    name: 'nbd_tunnel_session_rtt_seconds',
    help: 'Round-trip time of the latest keepalive ping (the largest over open sessions)',
    aggregator: 'max',
    registers: [prom],
    collect() {
      const rtts = [...registry.sessions.values()].map((s) => s.rttMs).filter((r): r is number => r !== null);
      if (rtts.length > 0) this.set(Math.max(...rtts) / 1000);
      else this.reset();
    },
  });
  new Counter({
    name: 'nbd_tunnel_streams_refused_total',
    help: 'Streams refused, by reason code',
    labelNames: ['reason'],
    registers: [prom],
    collect() {
      setAll(this, ['reason'], registry.refusals.values);
    },
  });
  new Gauge({
    name: 'nbd_tunnel_certificate_expiry_seconds',
    help: "Seconds until this side's certificate (own) and its CA (ca) expire; negative once expired",
    labelNames: ['which'],
    aggregator: 'min', // every process reads the same files; the soonest expiry after a partial reload
    registers: [prom],
    collect() {
      this.reset();
      const left = registry.certificateExpiry?.();
      if (left) for (const [which, seconds] of Object.entries(left)) this.set({ which }, Math.round(seconds));
    },
  });
  new Counter({
    name: 'nbd_tunnel_connections_refused_total',
    help: 'Tunnel connections the destination refused, by HTTP status (401 credentials, 403 not allowed, 408 too slow, 503 busy…)',
    labelNames: ['status'],
    registers: [prom],
    collect() {
      setAll(this, ['status'], registry.connectionRefusals.values);
    },
  });
  // The process itself: CPU, memory, heap, event loop lag, file descriptors (prom-client's defaults).
  collectDefaultMetrics({ register: prom, prefix: 'nbd_tunnel_' });
  new Counter({
    name: 'nbd_tunnel_log_lines_dropped_total',
    help: 'Log lines not written because stdout/stderr was closed, failed, or its reader fell behind',
    registers: [prom],
    collect() {
      this.reset();
      this.inc(droppedLogLines.count);
    },
  });
  return prom;
}
