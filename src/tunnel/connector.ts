// Keeps one session to the destination: connects, and after a loss reconnects with backoff,
// resuming the session when it is resumable (its streams wait meanwhile), else making a new one.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { connectTunnel, resumeTunnel, sessionId, type ClientOptions } from './client.js';
import { TunnelRefusedError } from './errors.js';
import { ProxyRefusedError } from './http-proxy.js';
import type { Session } from './session.js';

const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 5_000;
const MISDIRECTED_RETRY_MS = 20;
/** How long shutting down waits for the destination to take the session's close. */
const CLOSE_WAIT_MS = 1_000;

/** A session as the Connector describes it to its tracker. */
export interface ConnectedSession {
  id: number;
  peer: string;
  rttMs: number | null;
  suspended: boolean;
}

/**
 * Failures worth waiting through: the destination (or the proxy) is down, restarting, busy or
 * unreachable for now. A refusal of this client, by the destination or the proxy, or a
 * certificate that does not check out, will still be there in 10 s.
 */
const PASSING_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE']);

function mayPass(error: unknown): boolean {
  if (error instanceof TunnelRefusedError || error instanceof ProxyRefusedError) {
    return error.status >= 500 || error.status === 408 || error.status === 421 || error.status === 429;
  }
  return PASSING_CODES.has((error as { code?: string }).code ?? '');
}

export class Connector {
  private session: Session | null = null;
  /** Every session not closed yet: the current one, and any going away with streams left. */
  private readonly live = new Set<Session>();
  private attempt: Promise<Session> | null = null;
  /** Why the last connect attempt failed, until one succeeds. */
  private lastFailure: string | null = null;
  /** Connections waiting for the tunnel (acquireWithin): told how each connect attempt ends. */
  private readonly attemptWaiters = new Set<(outcome: 'connected' | Error) => void>();
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private resumeTimer: NodeJS.Timeout | null = null;
  private resumeFailures = 0;
  private stopped = false;
  /** Counts sessions made, so each gets a number for logs and /status. */
  sessionNumber = 0;

  constructor(
    private options: ClientOptions,
    private readonly log: Logger,
    /** Called with each new session and its entry for logs and /status, kept current here (rtt, suspended). */
    private readonly track: (info: ConnectedSession, session: Session) => void = () => {},
  ) {}

  /** For /healthz: a session that takes streams now, or why there is none. */
  health(): { ok: true } | { ok: false; reason: string } {
    if (this.session?.suspended) return { ok: false, reason: 'the session is suspended: reconnecting to the destination' };
    if (this.session?.acceptsStreams) return { ok: true };
    return { ok: false, reason: `no tunnel to the destination${this.lastFailure ? `: ${this.lastFailure}` : ''}` };
  }

  /** Streams of every session, suspended ones included. */
  get openStreams(): number {
    return [...this.live].reduce((n, session) => n + session.streamCount, 0);
  }

  /** New certificates and CRL for the next connection (SIGHUP); the live session keeps its own. */
  setTls(tls: Pick<ClientOptions, 'ca' | 'cert' | 'key' | 'crl'>): void {
    this.options = { ...this.options, ...tls };
  }

  start(): void {
    void this.acquire().catch(() => {}); // failures are logged and retried
  }

  /**
   * The live session, waiting up to `waitMs` for one: a QEMU connection made while the
   * destination is unreachable waits through the retries instead of failing at once. Rejects
   * with the last connect failure when the time is up.
   */
  async acquireWithin(waitMs: number): Promise<Session> {
    const deadline = Date.now() + waitMs;
    let lastError: unknown;
    try {
      return await this.acquire();
    } catch (error) {
      lastError = error;
    }
    // The connector retries on its own, with backoff; this only waits for the outcome of each try.
    while (!this.stopped && Date.now() < deadline && mayPass(lastError)) {
      const outcome = await this.nextAttempt(deadline - Date.now());
      if (outcome === 'connected' && this.session?.acceptsStreams) return this.session;
      if (outcome instanceof Error) lastError = outcome;
    }
    throw lastError;
  }

  /** Resolves when the next connect attempt ends ('connected' or its error), or 'timeout'. */
  private nextAttempt(timeoutMs: number): Promise<'connected' | 'timeout' | Error> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.attemptWaiters.delete(settle);
        resolve('timeout');
      }, timeoutMs);
      const settle = (outcome: 'connected' | Error): void => {
        clearTimeout(timer);
        resolve(outcome);
      };
      this.attemptWaiters.add(settle);
    });
  }

  /** The live session, or the outcome of the attempt under way (or started now). */
  acquire(): Promise<Session> {
    if (this.stopped) return Promise.reject(new Error('source is shutting down'));
    // A session going away keeps its streams, but new ones go to a new session.
    if (this.session?.acceptsStreams) return Promise.resolve(this.session);
    this.attempt ??= this.connect();
    return this.attempt;
  }

  /**
   * Closes every session with GoAway and a normal WebSocket close, so the destination ends
   * them at once rather than waiting for a resume; settles when they are gone, or after
   * CLOSE_WAIT_MS for a destination that does not answer.
   */
  async stop(reason = 'source shutting down'): Promise<void> {
    this.stopped = true;
    this.tellWaiters(new Error(reason));
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.resumeTimer) clearTimeout(this.resumeTimer);
    const closing = Promise.all([...this.live].map((session) => session.close(new Error(reason))));
    await Promise.race([closing, sleep(CLOSE_WAIT_MS, undefined, { ref: false })]);
  }

  private async connect(): Promise<Session> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    try {
      const session = await connectTunnel(this.options);
      this.failures = 0;
      this.session = session;
      this.live.add(session);
      const info = { id: ++this.sessionNumber, peer: this.options.url, rttMs: null as number | null, suspended: false };
      this.track(info, session);
      const log = this.log.child({ session: info.id });
      log.info({ url: this.options.url, resumable: session.resumable, sessionId: sessionId(session) }, 'connected');
      session.on('rtt', (ms) => (info.rttMs = ms));
      session.on('suspend', (reason) => {
        log.warn({ reason: reason.message, streams: session.streamCount }, 'session suspended');
        this.scheduleResume(session, log);
      });
      session.on('resume', (resumed) => {
        this.resumeFailures = 0;
        log.info(resumed, 'session resumed');
      });
      session.on('close', (reason) => {
        this.live.delete(session);
        this.onSessionClosed(session, reason);
      });
      this.lastFailure = null;
      this.tellWaiters('connected');
      return session;
    } catch (error) {
      this.failures++;
      const delay = this.backoff(this.failures);
      this.log.error({ url: this.options.url, reason: (error as Error).message, retryInMs: delay }, 'connect failed');
      this.scheduleRetry(delay);
      this.lastFailure = (error as Error).message;
      this.tellWaiters(error as Error);
      throw error;
    } finally {
      this.attempt = null;
    }
  }

  private tellWaiters(outcome: 'connected' | Error): void {
    const waiters = [...this.attemptWaiters];
    this.attemptWaiters.clear();
    for (const settle of waiters) settle(outcome);
  }

  private onSessionClosed(session: Session, reason: Error): void {
    if (this.session !== session) return;
    this.session = null;
    if (this.stopped) return;
    this.log.warn({ reason: reason.message }, 'session lost');
    this.scheduleRetry(this.backoff(this.failures + 1));
  }

  /** Reconnects a suspended session, until it resumes, closes, or the destination disowns it. */
  private scheduleResume(session: Session, log: Logger, delay = this.backoff(this.resumeFailures + 1)): void {
    if (this.stopped || this.resumeTimer) return;
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = null;
      if (this.stopped || !session.suspended) return;
      resumeTunnel(this.options, session).catch((error: Error) => {
        if (error instanceof TunnelRefusedError && error.status === 421) {
          this.scheduleResume(session, log, MISDIRECTED_RETRY_MS); // another worker took the connection
          return;
        }
        if (error instanceof TunnelRefusedError && (error.status === 410 || error.status === 403)) {
          const why = error.status === 410 ? 'destination lost the session (it restarted, or the session expired: --resume-timeout)' : error.message;
          session.close(new Error(why));
          return;
        }
        this.resumeFailures++;
        log.warn({ reason: error.message, attempt: this.resumeFailures }, 'resume failed');
        this.scheduleResume(session, log);
      });
    }, delay);
  }

  private scheduleRetry(delay: number): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.start();
    }, delay);
  }

  /** Exponential with jitter: the first retry within 250 ms, never more than 5 s apart. */
  private backoff(attempt: number): number {
    const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, attempt - 1));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }
}
