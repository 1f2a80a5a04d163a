// The common shape of every path the benchmark compares, from the source QEMU's NBD client
// to the destination NBD server.
import type { Link, LinkContext } from '../../test/harness/index.js';

export const PATH_KINDS = ['direct', 'socat', 'stunnel', 'ssh', 'nbd-tunnel'] as const;
export type PathKind = (typeof PATH_KINDS)[number];

export interface PathOptions extends LinkContext {
  /** Round-trip time added between the path's two TCP ends by a delay relay; 0 for none. */
  rttMs: number;
  /** Run the path's node processes under --cpu-prof, writing DIR/<side>/*.cpuprofile (nbd-tunnel only). */
  profileDir?: string;
}

export interface NamedProcess {
  /** Role in the path, e.g. `stunnel client`, `sshd session`. */
  name: string;
  pid: number;
}

export interface PathHandle extends Link {
  /** The path's processes now, forked per-connection children included. */
  processes(): NamedProcess[];
  /** Facts learnt while the path ran, e.g. the cipher ssh negotiated. */
  notes(): string[];
}

export function isPathKind(name: string): name is PathKind {
  return (PATH_KINDS as readonly string[]).includes(name);
}
