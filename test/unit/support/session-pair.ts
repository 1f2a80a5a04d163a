// Two sessions joined by an in-memory transport pair; closes both after the test.
import { Session, type SessionOptions } from '../../../src/tunnel/index.js';
import { memoryPair, type LinkOptions, type MemoryTransport } from './memory-transport.js';

export interface Pair {
  client: Session;
  server: Session;
  clientTransport: MemoryTransport;
  serverTransport: MemoryTransport;
  close(): void;
}

export function sessionPair(
  options: Omit<SessionOptions, 'client'> = {},
  transport: LinkOptions = {},
): Pair {
  const [clientTransport, serverTransport] = memoryPair(transport);
  const base = { keepaliveIntervalMs: 0, ...options };
  const client = new Session(clientTransport, { ...base, client: true });
  const server = new Session(serverTransport, { ...base, client: false });
  return {
    client,
    server,
    clientTransport,
    serverTransport,
    close() {
      client.close();
      server.close();
    },
  };
}
