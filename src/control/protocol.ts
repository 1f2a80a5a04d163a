// The local control socket's protocol: one request per connection, one JSON object a line each
// way. Only the source's own host reaches it (a UNIX socket, owner-only by default).

export interface ControlRoute {
  name: string;
  socket: string;
  /** Connections on the route name still open. */
  streams: number;
  /** 'fixed': --route or the config file; 'runtime': `route add`. */
  origin: 'fixed' | 'runtime';
}

export type ControlRequest =
  | { op: 'add'; name: string; socket?: string; mode?: number; gid?: number }
  | { op: 'remove'; name: string }
  | { op: 'list' };

export type ControlReply = { ok: true; routes: ControlRoute[] } | { ok: false; error: string };

/** What the control socket drives; the source passes its route table in. */
export interface ControlHandler {
  add(name: string, socket: string | undefined, access: { mode?: number; gid?: number }): Promise<ControlRoute>;
  remove(name: string): ControlRoute;
  list(): ControlRoute[];
}

export const MAX_LINE = 64 * 1024;

/** Checks a request's shape; throws with what is wrong. */
export function parseRequest(line: string): ControlRequest {
  const value: unknown = JSON.parse(line);
  if (typeof value !== 'object' || value === null) throw new Error('a request is a JSON object');
  const request = value as Record<string, unknown>;
  const optional = (key: string, type: 'string' | 'number'): void => {
    if (request[key] !== undefined && typeof request[key] !== type) throw new Error(`'${key}' must be a ${type}`);
  };
  switch (request.op) {
    case 'list':
      return { op: 'list' };
    case 'remove':
    case 'add':
      if (typeof request.name !== 'string') throw new Error(`'name' must be a string`);
      if (request.op === 'remove') return { op: 'remove', name: request.name };
      optional('socket', 'string');
      optional('mode', 'number');
      optional('gid', 'number');
      return request as ControlRequest;
    default:
      throw new Error(`unknown op ${JSON.stringify(request.op)}: expected add, remove or list`);
  }
}
