// Where a stream's route leads, looked up when the stream opens: a fixed --route (flag or config
// file) first, then --route-dir DIR/NAME.sock when that socket exists. A name is checked before
// anything else, so it never becomes a path. Replaced as a whole when SIGHUP reloads the config.
import { lookUpRouteDir, routeNameProblem } from '../routes/index.js';

export type Resolution = { ok: true; path: string } | { ok: false; code: string; message: string };

export class RouteTable {
  constructor(
    readonly fixed: ReadonlyMap<string, string>,
    readonly dir: string | undefined,
  ) {}

  async resolve(route: string): Promise<Resolution> {
    if (routeNameProblem(route)) {
      return { ok: false, code: 'bad-route', message: `route name ${JSON.stringify(route.slice(0, 140))} is not valid` };
    }
    const path = this.fixed.get(route);
    if (path !== undefined) return { ok: true, path };
    if (this.dir === undefined) {
      return { ok: false, code: 'unknown-route', message: `route '${route}' is not configured on the destination` };
    }
    const found = await lookUpRouteDir(this.dir, route);
    if (found.ok) return found;
    if (found.missing) {
      return { ok: false, code: 'unknown-route', message: `route '${route}' is not configured on the destination (no --route, and ${found.message} in --route-dir)` };
    }
    return { ok: false, code: 'bad-route', message: `route '${route}': ${found.message}` };
  }
}
