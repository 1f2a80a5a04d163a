// What this process carries right now and has carried: sessions, streams, bytes, NBD requests.
// The data path only registers and unregisters; every figure is read at scrape time, so the
// hot path pays nothing for metrics.
import type { ExpiryReading } from '../certificate-expiry.js';
import type { NbdObserver, NbdStreamStats } from '../nbd/index.js';
import type { Stream } from '../tunnel/index.js';

export interface TrackedStream {
  route: string;
  session: number;
  stream: Stream;
  /** Which way the stream's sent bytes go (see relay()). */
  side: 'source' | 'dest';
  observer: NbdObserver | undefined;
  startedAt: number;
}

export interface StreamStatus {
  /** With workers: the one carrying the stream (session and stream ids are per process). */
  worker?: string;
  session: number;
  stream: number;
  route: string;
  export: string | null;
  size: number | null;
  coveredRatio: number | null;
  bytesToDest: number;
  bytesToSource: number;
  /** NBD write throughput over the last seconds, MB/s. */
  mbps: number;
  inspection: string;
  durationMs: number;
}

export interface SessionInfo {
  id: number;
  peer: string;
  client?: string;
  rttMs: number | null;
  /** The connection is lost and the session waits for a resume. */
  suspended: boolean;
}

/** What trackSession needs of a Session. */
export interface TrackableSession {
  on(event: 'suspend' | 'resume' | 'close', listener: () => void): unknown;
  /** Streams in the session's table: relayed ones, and any still being opened or settled. */
  readonly streamCount: number;
}

export interface SessionStatus extends SessionInfo {
  /** With workers: the one serving the session. */
  worker?: string;
  /** The session's stream table; `streams` lists the ones being relayed. */
  openStreams: number;
  streams: StreamStatus[];
}

/** Totals that outlive streams, keyed by label values joined with NUL. */
class Totals {
  readonly values = new Map<string, number>();
  add(key: string[], n: number): void {
    if (n === 0) return;
    const k = key.join('\0');
    this.values.set(k, (this.values.get(k) ?? 0) + n);
  }
}

export class Registry {
  readonly sessions = new Map<number, SessionInfo>();
  readonly streams = new Set<TrackedStream>();
  readonly closedBytes = new Totals(); // route, direction
  readonly closedRequests = new Totals(); // route, export, type
  readonly closedErrors = new Totals(); // route, export
  readonly refusals = new Totals(); // reason
  readonly connectionRefusals = new Totals(); // HTTP status (destination)
  /** Seconds left on this side's certificate and its CA (null with --insecure). */
  certificateExpiry: ExpiryReading | null = null;
  /** Sessions resumed after a lost connection, since start. */
  resumes = 0;

  /** Each session's own stream table, which /status shows next to the streams relayed. */
  private readonly tables = new Map<number, { readonly streamCount: number }>();

  /** Keeps a session's entry current through suspensions and resumes, and drops it on close. */
  trackSession(info: SessionInfo, session: TrackableSession): void {
    this.sessions.set(info.id, info);
    this.tables.set(info.id, session);
    session.on('suspend', () => (info.suspended = true));
    session.on('resume', () => {
      info.suspended = false;
      this.resumes++;
    });
    session.on('close', () => {
      this.sessions.delete(info.id);
      this.tables.delete(info.id);
    });
  }

  track(entry: TrackedStream): () => void {
    this.streams.add(entry);
    return () => {
      this.streams.delete(entry);
      const [toDest, toSource] = directionBytes(entry);
      this.closedBytes.add([entry.route, 'to_dest'], toDest);
      this.closedBytes.add([entry.route, 'to_source'], toSource);
      const nbd = negotiated(entry);
      if (!nbd) return;
      for (const [type, r] of Object.entries(nbd.stats.requests)) this.closedRequests.add([...nbd.labels, type], r.count);
      this.closedErrors.add(nbd.labels, nbd.stats.errors.total);
    };
  }

  refused(reason: string): void {
    this.refusals.add([reason], 1);
  }

  /** A tunnel connection the destination refused, by the HTTP status it answered (401, 403, 408, 503…). */
  connectionRefused(status: number): void {
    this.connectionRefusals.add([String(status)], 1);
  }

  status(): { sessions: Array<SessionStatus> } {
    const bySession = new Map<number, StreamStatus[]>();
    for (const entry of this.streams) {
      const list = bySession.get(entry.session) ?? [];
      list.push(streamStatus(entry));
      bySession.set(entry.session, list);
    }
    return {
      sessions: [...this.sessions.values()].map((s) => ({ ...s, openStreams: this.tables.get(s.id)?.streamCount ?? 0, streams: bySession.get(s.id) ?? [] })),
    };
  }
}

/** The stream's NBD view with its (route, export) labels, once it has negotiated an export. */
export function negotiated(entry: TrackedStream): { labels: [string, string]; stats: NbdStreamStats } | null {
  const stats = entry.observer?.snapshot();
  return stats?.exportName == null ? null : { labels: [entry.route, stats.exportName], stats };
}

export function directionBytes(entry: TrackedStream): [toDest: number, toSource: number] {
  const { stream } = entry;
  return entry.side === 'source' ? [stream.bytesSent, stream.bytesReceived] : [stream.bytesReceived, stream.bytesSent];
}

export function streamStatus(entry: TrackedStream): StreamStatus {
  const stats: NbdStreamStats | undefined = entry.observer?.snapshot();
  const [bytesToDest, bytesToSource] = directionBytes(entry);
  return {
    session: entry.session,
    stream: entry.stream.id,
    route: entry.route,
    export: stats?.exportName ?? null,
    size: stats?.exportSize ?? null,
    coveredRatio: stats?.coverage?.ratio ?? null,
    bytesToDest,
    bytesToSource,
    mbps: Math.round((stats?.writeBytesPerSecond ?? 0) / 1e5) / 10,
    inspection: stats?.inspection ?? 'off',
    durationMs: Date.now() - entry.startedAt,
  };
}
