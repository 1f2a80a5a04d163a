// --allow ROUTE=IDENTITY[,IDENTITY...]: which client identities may use which route. ROUTE is a
// route name or a prefix ending in `*` (`vm1-*`). An identity is the client certificate's subject
// CN or one of its DNS/URI subject alternative names; a pattern may use `*` as its whole leftmost
// label (`*.hv.example.org` matches exactly one label there).
import { routeMatches } from '../routes/index.js';

/** Route pattern → identity patterns; undefined: no --allow given, every authenticated client may use every route. */
export type Allowlist = ReadonlyMap<string, readonly string[]> | undefined;

/** The names a client certificate carries, from tls.PeerCertificate fields. */
export function certificateIdentities(subjectCn: string | string[] | undefined, subjectAltName: string | undefined): string[] {
  const names = new Set<string>();
  for (const cn of Array.isArray(subjectCn) ? subjectCn : subjectCn ? [subjectCn] : []) names.add(cn);
  for (const entry of (subjectAltName ?? '').split(', ')) {
    const match = /^(DNS|URI):(.+)$/.exec(entry.trim());
    if (match) names.add(match[2]);
  }
  return [...names];
}

function matches(pattern: string, identity: string): boolean {
  if (!pattern.startsWith('*.')) return pattern.toLowerCase() === identity.toLowerCase();
  const rest = pattern.slice(1).toLowerCase(); // ".hv.example.org"
  const lower = identity.toLowerCase();
  return lower.endsWith(rest) && lower.length > rest.length && !lower.slice(0, -rest.length).includes('.');
}

/** Allowed when any rule whose route pattern covers `route` names one of the identities. */
export function isAllowed(allow: Allowlist, route: string, identities: readonly string[]): boolean {
  if (!allow) return true;
  for (const [routePattern, patterns] of allow) {
    if (!routeMatches(routePattern, route)) continue;
    if (patterns.some((pattern) => identities.some((identity) => matches(pattern, identity)))) return true;
  }
  return false;
}
