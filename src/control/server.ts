// The source's control socket: `nbd-tunnel route add|remove|list` talk to it.
import type { Server, Socket } from 'node:net';
import type { Logger } from '../log.js';
import { clearStaleSocket, closeServer, listenUnix, removeSocketFile } from '../unix-socket.js';
import { MAX_LINE, parseRequest, type ControlHandler, type ControlReply, type ControlRequest } from './protocol.js';

const IDLE_MS = 10_000;

export interface ControlServer {
  readonly path: string;
  /** Synchronous: no more requests, the socket file removed (drain). */
  stopAccepting(): void;
  close(): Promise<void>;
}

export async function serveControl(path: string, mode: number, handler: ControlHandler, log: Logger): Promise<ControlServer> {
  const label = `--control ${path}`;
  await clearStaleSocket(label, path);
  const server: Server = await listenUnix(label, path, { mode, gid: undefined }, {}, (socket) => serveOne(socket, handler, log));
  let closed: Promise<void> | null = null;
  const stopAccepting = (): void => {
    if (closed) return;
    closed = closeServer(server);
    removeSocketFile(path);
  };
  return {
    path,
    stopAccepting,
    async close() {
      stopAccepting();
      await closed;
    },
  };
}

function serveOne(socket: Socket, handler: ControlHandler, log: Logger): void {
  socket.setEncoding('utf8');
  socket.setTimeout(IDLE_MS, () => socket.destroy());
  socket.on('error', () => {});
  let text = '';
  const onData = (chunk: string): void => {
    text += chunk;
    const newline = text.indexOf('\n');
    if (newline < 0 && text.length <= MAX_LINE) return;
    socket.off('data', onData);
    void answer(newline < 0 ? null : text.slice(0, newline), handler, log).then((reply) => socket.end(`${JSON.stringify(reply)}\n`));
  };
  socket.on('data', onData);
}

async function answer(line: string | null, handler: ControlHandler, log: Logger): Promise<ControlReply> {
  let request: ControlRequest;
  try {
    if (line === null) throw new Error(`a request is one line of at most ${MAX_LINE} bytes`);
    request = parseRequest(line);
  } catch (error) {
    return { ok: false, error: `bad control request: ${(error as Error).message}` };
  }
  try {
    switch (request.op) {
      case 'list':
        return { ok: true, routes: handler.list() };
      case 'add': {
        const route = await handler.add(request.name, request.socket, { mode: request.mode, gid: request.gid });
        log.info({ route: route.name, socket: route.socket }, 'route added');
        return { ok: true, routes: [route] };
      }
      case 'remove': {
        const route = handler.remove(request.name);
        log.info({ route: route.name, socket: route.socket, streams: route.streams }, 'route removed');
        return { ok: true, routes: [route] };
      }
    }
  } catch (error) {
    log.warn({ op: request.op, reason: (error as Error).message }, 'control request refused');
    return { ok: false, error: (error as Error).message };
  }
}
