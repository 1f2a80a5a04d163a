// What the process that owns the source's sockets runs: the route table (its listeners) and,
// with --control, the control socket that adds and removes routes while the source runs.
import { serveControl, type ControlServer } from '../control/index.js';
import type { SourceConfig } from '../config.js';
import type { Logger } from '../log.js';
import { SourceRoutes, type RouteDispatch } from './route-table.js';

export interface Listening {
  routes: SourceRoutes;
  readyFields(): Record<string, unknown>;
  /** Drain: route sockets and the control socket closed and removed, synchronously. */
  stopAccepting(): void;
  close(): Promise<void>;
  /** SIGHUP: new defaults for `route add`, and the fixed routes of the reloaded config. */
  apply(next: SourceConfig): void;
}

export async function listenRoutes(config: SourceConfig, log: Logger, dispatch: RouteDispatch): Promise<Listening> {
  const routes = new SourceRoutes(dispatch, { access: config.socketAccess, dir: config.routeDir });
  let control: ControlServer | undefined;
  const stopAccepting = (): void => {
    control?.stopAccepting();
    routes.stopAccepting();
  };
  const close = async (): Promise<void> => {
    await control?.close();
    await routes.close();
  };
  try {
    for (const [route, path] of config.routes) await routes.add(route, path, {}, 'fixed');
    if (config.control) {
      const handler = {
        add: (name: string, socket: string | undefined, access: { mode?: number; gid?: number }) => routes.add(name, socket, access, 'runtime'),
        remove: (name: string) => routes.remove(name),
        list: () => routes.list(),
      };
      control = await serveControl(config.control.path, config.control.mode, handler, log);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return {
    routes,
    readyFields: () => ({ url: config.url, routes: routes.sockets(), routeDir: config.routeDir, control: control?.path }),
    stopAccepting,
    close,
    apply(next) {
      routes.defaults = { access: next.socketAccess, dir: next.routeDir };
      void routes.reconcile(next.routes).then((problems) => {
        for (const reason of problems) log.error({ reason }, 'route from the reloaded configuration not set up');
        if (next.configFile) log.info({ config: next.configFile, routes: routes.sockets() }, 'configuration reloaded');
      });
    },
  };
}
