// The `route` verbs' side of the control socket: one request, one reply.
import { createConnection } from 'node:net';
import { MAX_LINE, type ControlReply, type ControlRequest } from './protocol.js';

const REPLY_TIMEOUT_MS = 15_000;

const CONNECT_HINTS: Readonly<Record<string, string>> = {
  ENOENT: 'does not exist; is the source running with this --control?',
  ECONNREFUSED: 'refused the connection; is the source running with this --control?',
  EACCES: 'is not accessible to this user (the control socket is owner-only by default)',
};

/** Sends `request`; rejects with a sentence naming the socket when the source cannot be reached. */
export function controlRequest(path: string, request: ControlRequest): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    socket.setEncoding('utf8');
    let text = '';
    const fail = (message: string): void => {
      socket.destroy();
      reject(new Error(`--control ${path}: ${message}`));
    };
    const timer = setTimeout(() => fail(`no reply within ${REPLY_TIMEOUT_MS / 1000} s`), REPLY_TIMEOUT_MS);
    socket.once('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const code = error.code ?? 'EIO';
      fail(`${CONNECT_HINTS[code] ?? 'failed'} (${code})`);
    });
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > MAX_LINE) fail('the reply is too long');
    });
    socket.on('end', () => {
      clearTimeout(timer);
      socket.destroy();
      try {
        resolve(JSON.parse(text.trim()) as ControlReply);
      } catch {
        reject(new Error(`--control ${path}: not an nbd-tunnel control socket (reply: ${JSON.stringify(text.slice(0, 80))})`));
      }
    });
  });
}
