// `nbd-tunnel route add|remove|list --control SOCKET`: what each prints. A refusal by the source
// rejects with ControlRefusal (exit 1); the caller has checked the arguments (exit 2).
import { controlRequest } from './client.js';
import type { ControlRequest, ControlRoute } from './protocol.js';

export class ControlRefusal extends Error {
  override readonly name = 'ControlRefusal';
}

async function ask(control: string, request: ControlRequest): Promise<ControlRoute[]> {
  const reply = await controlRequest(control, request).catch((error: Error) => {
    throw new ControlRefusal(error.message);
  });
  if (!reply.ok) throw new ControlRefusal(reply.error);
  return reply.routes;
}

/** Prints the socket the source now listens on. */
export async function routeAdd(control: string, name: string, socket: string | undefined, access: { mode?: number; gid?: number }): Promise<string> {
  const [route] = await ask(control, { op: 'add', name, socket, ...access });
  return `${route.socket}\n`;
}

/** Prints nothing: the route's socket is gone, its open streams go on. */
export async function routeRemove(control: string, name: string): Promise<string> {
  await ask(control, { op: 'remove', name });
  return '';
}

/** One line a route: NAME, SOCKET and open STREAMS, separated by tabs, sorted by name. */
export async function routeList(control: string): Promise<string> {
  const routes = await ask(control, { op: 'list' });
  return routes.map((r) => `${r.name}\t${r.socket}\t${r.streams}\n`).join('');
}
