// --allow ROUTE=IDENTITY[,IDENTITY...]: which client identities may use which route. An identity is
// the client certificate's subject CN or one of its DNS/URI subject alternative names; a pattern
// may use `*` as its whole leftmost label (`*.hv.example.org` matches exactly one label there).

/** Route name → identity patterns; undefined: no --allow given, every authenticated client may use every route. */
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

export function isAllowed(allow: Allowlist, route: string, identities: readonly string[]): boolean {
  if (!allow) return true;
  const patterns = allow.get(route) ?? [];
  return patterns.some((pattern) => identities.some((identity) => matches(pattern, identity)));
}

/** Checks a pattern's shape; returns why it is malformed, or null. */
export function patternProblem(pattern: string): string | null {
  if (pattern === '') return 'an identity is empty';
  const labels = pattern.split('.');
  if (labels.slice(1).some((l) => l.includes('*')) || (labels[0].includes('*') && labels[0] !== '*')) {
    return `'${pattern}': '*' may only be the whole leftmost label, as in *.hv.example.org`;
  }
  if (labels[0] === '*' && labels.length < 3) return `'${pattern}': a wildcard needs at least two labels after it`;
  return null;
}
