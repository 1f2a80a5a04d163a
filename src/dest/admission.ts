// Who may open a session: a client certificate signed by --ca, and the bearer token if one is set.
import { createHash, timingSafeEqual, X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { RevocationList } from '../revocation/index.js';
import { explainClientCertError, type Admission } from '../tunnel/index.js';
import { certificateIdentities } from './authorization.js';

const INSECURE_IDENTITY = 'insecure loopback client';

/** `crl`: the --crl in force (SIGHUP may change it), to name a revoked certificate's serial. */
export function createAdmission(token: string | undefined, crl: () => RevocationList | undefined = () => undefined) {
  // Digests have equal lengths, so the comparison's time says nothing about the token.
  const expected = token === undefined ? undefined : digest(token);
  const checkToken = (request: IncomingMessage, identity: string): Admission | null => {
    if (expected === undefined) return null;
    const header = request.headers.authorization ?? '';
    const presented = header.startsWith('Bearer ') ? header.slice('Bearer '.length) : '';
    if (timingSafeEqual(digest(presented), expected)) return null;
    return { ok: false, status: 403, reason: `client '${identity}' presented a wrong or missing token (--token-file)` };
  };
  return (request: IncomingMessage, socket: Socket): Admission => {
    if (!(socket instanceof TLSSocket)) {
      // --insecure on loopback: no certificate to name the client; the token still applies.
      return checkToken(request, INSECURE_IDENTITY) ?? { ok: true, identity: INSECURE_IDENTITY, identities: [], principal: principal('insecure', request) };
    }
    const certificate = socket.getPeerCertificate();
    if (!certificate || Object.keys(certificate).length === 0) {
      return { ok: false, status: 401, reason: 'no client certificate: the source must present --cert/--key signed by the destination\'s --ca' };
    }
    if (!socket.authorized) {
      const why = explainClientCertError(socket.authorizationError?.toString(), { crl: crl(), certificate: new X509Certificate(certificate.raw) });
      // Expiry problems are fixed by looking at the dates, so say them.
      const dates = /valid/.test(why) || /expired/.test(why) ? `; valid from ${certificate.valid_from} to ${certificate.valid_to}` : '';
      return { ok: false, status: 401, reason: `${why}${dates}` };
    }
    const cn = certificate.subject?.CN;
    const identity = (Array.isArray(cn) ? cn[0] : cn) ?? certificate.fingerprint256;
    const identities = certificateIdentities(certificate.subject?.CN, certificate.subjectaltname);
    return checkToken(request, identity) ?? { ok: true, identity, identities, principal: principal(`cert ${certificate.fingerprint256}`, request) };
  };
}

/** The exact credentials a session was made with; resuming it takes the same. */
function principal(credential: string, request: IncomingMessage): string {
  return `${credential} token ${digest(request.headers.authorization ?? '').toString('hex')}`;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
