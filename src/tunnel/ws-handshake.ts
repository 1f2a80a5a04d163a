// The server's half of the WebSocket opening handshake (RFC 6455 §4.2): checks the request and
// answers 101 on the socket, which from then on carries frames (see ws-frame.ts).
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

/** §1.3: the GUID every server appends to the client's key to prove it read the request. */
const KEY_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** §4.1: the key is 16 random bytes, base64-encoded. */
const KEY = /^[+/0-9A-Za-z]{22}==$/;

/** What is wrong with an upgrade request, in words for the refusal; null if nothing. */
export function upgradeRequestProblem(request: IncomingMessage): string | null {
  if (request.method !== 'GET') return `WebSocket upgrade with method ${request.method}, not GET`;
  if ((request.headers.upgrade ?? '').toLowerCase() !== 'websocket') return `upgrade to '${request.headers.upgrade}', not to a WebSocket`;
  if (request.headers['sec-websocket-version'] !== '13') return `WebSocket version ${request.headers['sec-websocket-version'] ?? 'missing'}, this destination speaks 13`;
  if (!KEY.test(request.headers['sec-websocket-key'] ?? '')) return 'missing or malformed Sec-WebSocket-Key';
  return null;
}

/** Writes the 101 response for a request upgradeRequestProblem() accepted. `headers`: extra `name: value` lines. */
export function acceptUpgrade(request: IncomingMessage, socket: Socket, protocol: string, headers: readonly string[]): void {
  const accept = createHash('sha1').update(`${request.headers['sec-websocket-key']}${KEY_GUID}`).digest('base64');
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${accept}`,
    `Sec-WebSocket-Protocol: ${protocol}`,
    ...headers,
  ];
  socket.write(`${lines.join('\r\n')}\r\n\r\n`);
}
