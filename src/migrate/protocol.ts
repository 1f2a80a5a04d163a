// The migration channel (DESIGN.md "The migration channel is typed, never raw QMP"): after an
// open request {"migrate": VM} is accepted, the source sends one request a line and the
// destination answers each with one line, in order. What a request does is the destination's
// code; the source only names disks and sizes.
import { StreamError } from '../tunnel/index.js';

/** A disk to migrate: its block node name (the same on both sides) and virtual size in bytes. */
export interface DiskSpec {
  node: string;
  size: number;
}

export type ControlRequest =
  /** Check the disks (and, with ram, that the VM waits for an incoming migration), export the disks over NBD. */
  | { op: 'prepare'; disks: DiskSpec[]; ram: boolean }
  /** The disks are READY: listen for the RAM stream (not undone by abort once it has begun). */
  | { op: 'ram' }
  /** The copy is complete: stop the NBD server and, after a RAM migration, resume the VM. */
  | { op: 'finish' }
  /** Undo what prepare did. */
  | { op: 'abort' };

export type ControlReply = { ok: true; route?: string; status?: string } | { ok: false; error: string };

/** Session-scoped routes a prepared migration's data streams open (never configured routes). */
export const MIGRATION_ROUTES = { nbd: 'migrate.nbd', ram: 'migrate.ram' } as const;

/** Node names as QEMU allows them (letters, digits, '-', '.', '_', starting with a letter), bounded. */
const NODE_NAME = /^[A-Za-z][A-Za-z0-9._-]{0,127}$/;
const MAX_DISKS = 64;

function malformed(why: string): StreamError {
  return new StreamError(`migration request: ${why}`, 'EMIGRATEMALFORMED');
}

/** Checks a request from the peer field by field: anything else is refused, never passed to QEMU. */
export function parseControlRequest(value: unknown): ControlRequest {
  const request = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  switch (request.op) {
    case 'ram':
    case 'finish':
    case 'abort':
      return { op: request.op };
    case 'prepare': {
      if (typeof request.ram !== 'boolean') throw malformed('"ram" must be true or false');
      if (!Array.isArray(request.disks) || request.disks.length > MAX_DISKS) throw malformed(`"disks" must be a list of at most ${MAX_DISKS}`);
      const disks = request.disks.map((disk: unknown) => {
        const { node, size } = (typeof disk === 'object' && disk !== null ? disk : {}) as Record<string, unknown>;
        if (typeof node !== 'string' || !NODE_NAME.test(node)) throw malformed(`disk node name ${JSON.stringify(node)} is not valid`);
        if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw malformed(`disk ${node}: size must be a whole number of bytes`);
        return { node, size };
      });
      if (new Set(disks.map((d) => d.node)).size !== disks.length) throw malformed('a disk is named twice');
      if (disks.length === 0 && !request.ram) throw malformed('nothing to migrate: no disks and no RAM');
      return { op: 'prepare', disks, ram: request.ram };
    }
    default:
      throw malformed(`unknown op ${JSON.stringify(request.op)}`);
  }
}

export function parseControlReply(value: unknown): ControlReply {
  const reply = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if (reply.ok === false) return { ok: false, error: typeof reply.error === 'string' ? reply.error : 'refused' };
  if (reply.ok !== true) throw malformed('reply without "ok"');
  return {
    ok: true,
    ...(typeof reply.route === 'string' ? { route: reply.route } : {}),
    ...(typeof reply.status === 'string' ? { status: reply.status } : {}),
  };
}
