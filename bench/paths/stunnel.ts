// TLS 1.3 with mutual certificate verification, one TLS connection per NBD connection: what
// an operator would otherwise set up by hand. Same PKI as the tunnel.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, tcpListening, unixListening, waitUntil } from '../listening.js';
import { buildPath } from './builder.js';
import type { PathHandle, PathOptions } from './types.js';

/** Global options for both ends: stay in the foreground (stopped by PID), log to stderr, no pid file. */
const GLOBAL = ['foreground = yes', 'pid =', 'debug = warning'];

/** Per-service TLS options for both ends: mutual verification against the test CA, TLS 1.3 only. */
function tls(cert: string, key: string, ca: string): string[] {
  return [`cert = ${cert}`, `key = ${key}`, `CAfile = ${ca}`, 'verifyChain = yes', 'sslVersionMin = TLSv1.3'];
}

export function startStunnel(options: PathOptions): Promise<PathHandle> {
  const { pki, dir } = options;
  return buildPath(options, async (b) => {
    const port = await freePort();
    const serverConfig = join(dir, 'stunnel-dest.conf');
    // verifyChain on the server implies requireCert: a client without a certificate is refused.
    await writeConfig(serverConfig, [...GLOBAL, '[nbd]', `accept = 127.0.0.1:${port}`, `connect = ${options.destSocket}`, ...tls(pki.serverCert, pki.serverKey, pki.caCert)]);
    const server = await b.spawn('stunnel dest', 'stunnel', [serverConfig]);
    await waitUntil('stunnel dest', () => tcpListening(port), server);

    const connectPort = await b.via(port);
    const sockets = new Map(options.routes.map((route) => [route, join(dir, `${route}.sock`)]));
    const clientConfig = join(dir, 'stunnel-source.conf');
    const services = [...sockets].flatMap(([route, socket]) => [
      `[${route}]`,
      'client = yes',
      `accept = ${socket}`,
      `connect = 127.0.0.1:${connectPort}`,
      // The server certificate names localhost (and 127.0.0.1): check the name as the tunnel does.
      'checkHost = localhost',
      ...tls(pki.clientCert, pki.clientKey, pki.caCert),
    ]);
    await writeConfig(clientConfig, [...GLOBAL, ...services]);
    const client = await b.spawn('stunnel source', 'stunnel', [clientConfig]);
    await waitUntil('stunnel source', () => [...sockets.values()].every(unixListening), client);
    return (route) => sockets.get(route)!;
  });
}

function writeConfig(path: string, lines: string[]): Promise<void> {
  return writeFile(path, `${lines.join('\n')}\n`);
}
