export { PATH_KINDS, isPathKind, type NamedProcess, type PathHandle, type PathKind, type PathOptions } from './types.js';
import { startDirect } from './direct.js';
import { startNbdTunnel } from './nbd-tunnel.js';
import { startSocat } from './socat.js';
import { startSsh } from './ssh.js';
import { startStunnel } from './stunnel.js';
import type { PathHandle, PathKind, PathOptions } from './types.js';

const STARTERS: Record<PathKind, (options: PathOptions) => Promise<PathHandle>> = {
  direct: startDirect,
  socat: startSocat,
  stunnel: startStunnel,
  ssh: startSsh,
  'nbd-tunnel': startNbdTunnel,
};

export function startPath(kind: PathKind, options: PathOptions): Promise<PathHandle> {
  return STARTERS[kind](options);
}
