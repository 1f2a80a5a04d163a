// The source's routes while it runs: one listening UNIX socket each, from --route and the config
// file ("fixed") or from `nbd-tunnel route add` ("runtime"). Removing a route stops its listener
// and removes its file at once; connections already accepted go on to their natural end.
import type { Server, Socket } from 'node:net';
import { resolve } from 'node:path';
import { routeDirSocket, routeNameProblem, socketPathProblem } from '../routes/index.js';
import { LOCAL_HIGH_WATER_MARK } from '../tunnel/index.js';
import { clearStaleSocket, closeServer, listenUnix, removeSocketFile, type SocketAccess } from '../unix-socket.js';

export type Origin = 'fixed' | 'runtime';

export interface RouteInfo {
  name: string;
  socket: string;
  /** QEMU connections accepted on this route name and still open (also ones from before a remove). */
  streams: number;
  origin: Origin;
}

/** Where an accepted connection goes; `done` is called once it has closed (it may be in another process). */
export type RouteDispatch = (socket: Socket, route: string, done: () => void) => void;

interface Entry {
  socket: string;
  origin: Origin;
  server: Server;
}

/** A refusal the operator can fix: printed as it is. */
export class RouteError extends Error {
  override readonly name = 'RouteError';
}

export class SourceRoutes {
  private readonly entries = new Map<string, Entry>();
  /** Names being added (listening takes a moment): a second add of the name is refused meanwhile. */
  private readonly pending = new Set<string>();
  private readonly streams = new Map<string, number>();
  private readonly closing: Array<Promise<void>> = [];
  private accepting = true;

  constructor(
    private readonly dispatch: RouteDispatch,
    /** Defaults for new routes: --socket-mode/--socket-group and --route-dir (a reload changes them). */
    public defaults: { access: SocketAccess; dir: string | undefined },
  ) {}

  /** Listens on `socket` (default: DIR/NAME.sock) for route `name`; resolves once QEMU may connect. */
  async add(name: string, socket: string | undefined, access: Partial<SocketAccess>, origin: Origin): Promise<RouteInfo> {
    const badName = routeNameProblem(name);
    if (badName) throw new RouteError(`route name ${JSON.stringify(name.slice(0, 140))} is not valid: ${badName}`);
    if (!this.accepting) throw new RouteError('the source is shutting down; it takes no new routes');
    const existing = this.entries.get(name);
    if (existing || this.pending.has(name)) {
      throw new RouteError(`route '${name}' already exists${existing ? ` (socket ${existing.socket})` : ''}; remove it first or pick another name`);
    }
    const dir = this.defaults.dir;
    if (socket === undefined && dir === undefined) throw new RouteError(`route '${name}': give its socket path; this source has no --route-dir`);
    const path = resolve(socket ?? routeDirSocket(dir!, name));
    const label = origin === 'fixed' ? `--route ${name}=${path}` : `route '${name}' socket ${path}`;
    const badPath = socketPathProblem(path);
    if (badPath) throw new RouteError(`${label}: ${badPath}`);
    const user = [...this.entries].find(([, entry]) => entry.socket === path);
    if (user) throw new RouteError(`${label}: route '${user[0]}' already listens on this socket`);
    this.pending.add(name);
    try {
      await clearStaleSocket(label, path);
      const server = await listenUnix(label, path, { ...this.defaults.access, ...defined(access) }, { allowHalfOpen: true, pauseOnConnect: true, highWaterMark: LOCAL_HIGH_WATER_MARK }, (connection) =>
        this.accept(connection, name),
      );
      if (!this.accepting) {
        // A drain began while this route was being set up: it never serves.
        this.closing.push(closeServer(server));
        removeSocketFile(path);
        throw new RouteError('the source is shutting down; it takes no new routes');
      }
      this.entries.set(name, { socket: path, origin, server });
      return this.info(name, path, origin);
    } catch (error) {
      throw error instanceof RouteError ? error : new RouteError((error as Error).message);
    } finally {
      this.pending.delete(name);
    }
  }

  /** Stops listening and removes the socket file now; open connections on the route go on. */
  remove(name: string): RouteInfo {
    const entry = this.entries.get(name);
    if (!entry) throw new RouteError(`no route '${name}' on this source; 'nbd-tunnel route list' shows them`);
    this.entries.delete(name);
    this.closing.push(closeServer(entry.server));
    removeSocketFile(entry.socket);
    return this.info(name, entry.socket, entry.origin);
  }

  list(): RouteInfo[] {
    return [...this.entries].map(([name, entry]) => this.info(name, entry.socket, entry.origin)).sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Route name → socket, for the ready line. */
  sockets(): Record<string, string> {
    return Object.fromEntries([...this.entries].map(([name, entry]) => [name, entry.socket]));
  }

  /**
   * Makes the fixed routes those of `fixed` (a reloaded config file): listens on new ones, removes
   * gone or moved ones. Runtime routes stay. Returns a reason per route that could not be set up.
   */
  async reconcile(fixed: ReadonlyMap<string, string>): Promise<string[]> {
    const problems: string[] = [];
    for (const [name, entry] of [...this.entries]) {
      if (entry.origin === 'fixed' && fixed.get(name) !== entry.socket) this.remove(name);
    }
    for (const [name, path] of fixed) {
      const entry = this.entries.get(name);
      if (entry?.origin === 'fixed') continue;
      if (entry) {
        problems.push(`--route ${name}=${path}: route '${name}' was added at run time (socket ${entry.socket}); remove it first`);
        continue;
      }
      await this.add(name, path, {}, 'fixed').catch((error: Error) => problems.push(error.message));
    }
    return problems;
  }

  /** Drain: every listener closed and its file removed, synchronously; no route may be added after. */
  stopAccepting(): void {
    this.accepting = false;
    for (const name of [...this.entries.keys()]) this.remove(name);
  }

  async close(): Promise<void> {
    this.stopAccepting();
    await Promise.all(this.closing);
  }

  private accept(connection: Socket, route: string): void {
    this.streams.set(route, (this.streams.get(route) ?? 0) + 1);
    let done = false;
    this.dispatch(connection, route, () => {
      if (done) return;
      done = true;
      const n = (this.streams.get(route) ?? 1) - 1;
      if (n > 0) this.streams.set(route, n);
      else this.streams.delete(route);
    });
  }

  private info(name: string, socket: string, origin: Origin): RouteInfo {
    return { name, socket, streams: this.streams.get(name) ?? 0, origin };
  }
}

/** The fields that are set: an absent --socket-mode keeps the default, it does not erase it. */
function defined(access: Partial<SocketAccess>): Partial<SocketAccess> {
  return Object.fromEntries(Object.entries(access).filter(([, v]) => v !== undefined));
}
