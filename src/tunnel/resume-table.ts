// The destination's resumable sessions, by id. A session can be resumed only with its secret
// and by the client that made it (same certificate, same token): the `principal`.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Session } from './session.js';

// Upgrade headers. The request names `RESUME_HEADER: new` (a resumable session wanted) or the
// session's id with its secret; the response to a new one carries the id and secret.
export const RESUME_HEADER = 'x-nbd-tunnel-resume';
export const SECRET_HEADER = 'x-nbd-tunnel-resume-secret';
export const SESSION_HEADER = 'x-nbd-tunnel-session';
export const RESUME_NEW = 'new';

export interface Ticket {
  id: string;
  /** Never logged: whoever holds it (and the client's credentials) may take the session over. */
  secret: string;
}

export type Lookup = { ok: true; session: Session } | { ok: false; status: number; reason: string };

interface Entry {
  session: Session;
  principal: string;
  secretDigest: Buffer;
}

/** True when an upgrade request asks to resume an existing session (not subject to --max-sessions). */
export function isResumeRequest(request: IncomingMessage): boolean {
  const value = request.headers[RESUME_HEADER];
  return typeof value === 'string' && value !== RESUME_NEW;
}

export class ResumeTable {
  private readonly entries = new Map<string, Entry>();

  /**
   * `instance` names this process among the destination's workers. Their port is shared, so a
   * reconnect may reach another worker: it answers 421 and the source simply tries again.
   */
  constructor(private readonly instance = 'p') {}

  newTicket(): Ticket {
    return { id: `${this.instance}.${randomBytes(9).toString('base64url')}`, secret: randomBytes(32).toString('base64url') };
  }

  /** Registers a new session under its ticket; it leaves the table when it closes. */
  add(ticket: Ticket, session: Session, principal: string): void {
    this.entries.set(ticket.id, { session, principal, secretDigest: digest(ticket.secret) });
    session.once('close', () => this.entries.delete(ticket.id));
  }

  find(request: IncomingMessage, principal: string): Lookup {
    const id = String(request.headers[RESUME_HEADER]);
    const entry = this.entries.get(id);
    if (!entry && !id.startsWith(`${this.instance}.`)) {
      return { ok: false, status: 421, reason: `session ${id} is held by another worker process of the destination (--workers); try again` };
    }
    if (!entry) {
      return { ok: false, status: 410, reason: `destination lost the session ${id}: it restarted, or the session expired (--resume-timeout)` };
    }
    const secret = request.headers[SECRET_HEADER];
    if (typeof secret !== 'string' || !timingSafeEqual(digest(secret), entry.secretDigest) || principal !== entry.principal) {
      return { ok: false, status: 403, reason: `session ${id} belongs to another client (certificate, token or session secret differ)` };
    }
    return { ok: true, session: entry.session };
  }
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
