// Listening UNIX sockets that this process owns: the source's route sockets and its control
// socket. A stale socket file (nothing answers on it) is replaced; a live one, or a path that is
// not a socket, is refused. `label` starts every message (`--route a=/run/a.sock`, `--control …`).
import { chmodSync, chownSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { createConnection, createServer, type Server, type ServerOpts, type Socket } from 'node:net';

/** Who may connect: the socket's mode and, optionally, its group. */
export interface SocketAccess {
  mode: number;
  gid: number | undefined;
}

/** Listens on a path that clearStaleSocket has freed, created owner-only and then opened up to `access`. */
export async function listenUnix(
  label: string,
  path: string,
  access: SocketAccess,
  options: ServerOpts,
  onConnection: (socket: Socket) => void,
): Promise<Server> {
  const server = createServer(options, onConnection);
  // Created owner-only, then opened up to the mode asked for: no moment where others may connect.
  const umask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => reject(new Error(`${label}: cannot listen: ${listenProblem(path, error)}`)));
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(umask);
  }
  try {
    if (access.gid !== undefined) chownSync(path, -1, access.gid);
    chmodSync(path, access.mode);
  } catch (error) {
    server.close();
    removeSocketFile(path);
    throw new Error(`${label}: cannot set the socket's group or mode: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return server;
}

/** What stopped a listen, in words that say what to fix: most often the folder. */
function listenProblem(path: string, error: NodeJS.ErrnoException): string {
  const dir = dirname(path);
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    return `the folder ${dir} does not exist; create it first (${error.code ?? error.message})`;
  }
  if (!isDir) return `${dir} is not a folder (${error.code ?? error.message})`;
  if (error.code === 'EACCES') return `this process may not create files in ${dir} (EACCES); give its user write access to the folder`;
  return error.code ?? error.message;
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Removes a socket file this process made (shutdown, route removed); gone already is fine. */
export function removeSocketFile(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Makes the path free for listening: removes a stale socket, refuses a live one or a non-socket. */
export async function clearStaleSocket(label: string, path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new Error(`${label}: the path exists and is not a socket`);
  if (await answers(path)) throw new Error(`${label}: another process is listening on this socket`);
  unlinkSync(path);
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
