// The shapes of names an operator writes: route names, --allow route patterns (`vm1-*`) and
// client identity patterns (`*.hv.example.org`). Shared by config and the destination, so that
// checking a flag never needs the destination's code.
import { ROUTE_NAME } from '../tunnel/index.js';

/** Why `name` is not a route name, or null. */
export function routeNameProblem(name: string): string | null {
  return ROUTE_NAME.test(name) ? null : `route name must match ${ROUTE_NAME.source}`;
}

/** A route pattern: a route name, or a prefix of one followed by `*` (`vm1-*`; `*` alone: every route). */
export function routePatternProblem(pattern: string): string | null {
  const star = pattern.indexOf('*');
  if (star < 0) return routeNameProblem(pattern);
  if (star !== pattern.length - 1) return `'${pattern}': '*' may only end the route name, as in vm1-*`;
  const prefix = pattern.slice(0, -1);
  if (prefix !== '' && !ROUTE_NAME.test(`${prefix}x`)) return `'${pattern}': the part before '*' must start a route name (${ROUTE_NAME.source})`;
  return null;
}

/** Whether the route pattern (checked by routePatternProblem) covers `route`. */
export function routeMatches(pattern: string, route: string): boolean {
  return pattern.endsWith('*') ? route.startsWith(pattern.slice(0, -1)) : pattern === route;
}

/** Checks an identity pattern's shape; returns why it is malformed, or null. */
export function identityPatternProblem(pattern: string): string | null {
  if (pattern === '') return 'an identity is empty';
  const labels = pattern.split('.');
  if (labels.slice(1).some((l) => l.includes('*')) || (labels[0].includes('*') && labels[0] !== '*')) {
    return `'${pattern}': '*' may only be the whole leftmost label, as in *.hv.example.org`;
  }
  if (labels[0] === '*' && labels.length < 3) return `'${pattern}': a wildcard needs at least two labels after it`;
  return null;
}

const UNIX_PATH_MAX = 107; // sun_path is 108 bytes with the terminating NUL

/** Why an absolute path cannot be a UNIX socket's, or null. */
export function socketPathProblem(path: string): string | null {
  return Buffer.byteLength(path) > UNIX_PATH_MAX ? `socket path is longer than ${UNIX_PATH_MAX} bytes` : null;
}
