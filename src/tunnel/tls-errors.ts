// Turns Node's TLS and socket error codes into sentences that say what to fix.
import type { X509Certificate } from 'node:crypto';
import type { RevocationList } from '../revocation/index.js';

const HINTS: Readonly<Record<string, string>> = {
  ERR_TLS_CERT_ALTNAME_INVALID: 'the destination certificate does not name this host; check --connect or set --servername',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the destination certificate is not signed by --ca',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the destination certificate is not signed by --ca',
  SELF_SIGNED_CERT_IN_CHAIN: 'the destination certificate chain is not trusted by --ca',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the destination certificate is self-signed and not in --ca',
  CERT_HAS_EXPIRED: 'the destination certificate has expired',
  CERT_NOT_YET_VALID: 'the destination certificate is not yet valid',
  ECONNREFUSED: 'nothing listens at the destination address',
  ETIMEDOUT: 'the destination did not answer in time',
  ENOTFOUND: 'the destination host name does not resolve',
  ECONNRESET: 'the connection was reset',
};

/** What Node attaches to a failed host name check. */
interface AltNameError extends Error {
  code?: string;
  host?: string;
  cert?: { subjectaltname?: string; subject?: { CN?: string | string[] } };
}

/** The --crl in force and the destination's certificate, when the handshake kept it: for revocation codes. */
export interface RevocationContext {
  crl: RevocationList | undefined;
  certificate: X509Certificate | undefined;
}

export function explainConnectError(error: AltNameError, revocation?: RevocationContext): string {
  const revoked = revocation?.crl?.explain(error.code, revocation.certificate);
  if (revoked) return `destination certificate refused: ${revoked}`;
  if (error.code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const names = error.cert?.subjectaltname || (error.cert?.subject?.CN ? `CN ${String(error.cert.subject.CN)}` : 'no names');
    return `the destination certificate names ${names}, not '${error.host ?? '?'}': connect by one of those names (--connect) or set --servername (ERR_TLS_CERT_ALTNAME_INVALID)`;
  }
  // OpenSSL reads a plain-text answer as a TLS record with an impossible version.
  if (error.code === 'EPROTO' && /wrong version number|packet length too long|http request/i.test(error.message)) {
    return 'the destination port does not speak TLS: check that --connect names the nbd-tunnel dest port (plain ws:// only with --insecure on both sides) (EPROTO)';
  }
  const hint = error.code ? HINTS[error.code] : undefined;
  return hint ? `${hint} (${error.code}: ${error.message})` : error.message;
}

/** Why the destination refuses a client certificate, from tls.TLSSocket#authorizationError. */
export function explainClientCertError(code: string | undefined, revocation?: RevocationContext): string {
  const revoked = revocation?.crl?.explain(code, revocation.certificate);
  if (revoked) return `client certificate refused: ${revoked}`;
  switch (code) {
    case undefined:
      return 'client certificate not verified';
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      return `client certificate is not signed by the destination's --ca (${code})`;
    case 'CERT_HAS_EXPIRED':
      return `client certificate has expired (${code})`;
    case 'CERT_NOT_YET_VALID':
      return `client certificate is not yet valid (${code})`;
    case 'INVALID_PURPOSE':
      return `client certificate lacks the clientAuth extended key usage (a server certificate?): use a certificate made for clients (${code})`;
    default:
      return `client certificate rejected (${code})`;
  }
}
