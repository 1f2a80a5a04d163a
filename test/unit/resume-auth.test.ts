// Who may resume a session, over real TLS WebSockets: only the client that made it, with its
// certificate (not merely the same name) and the secret the destination handed out at the upgrade.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { createAdmission } from '../../src/dest/admission.js';
import { SUBPROTOCOL, TunnelServer, type Session } from '../../src/tunnel/index.js';
import { encodeSessionState, SessionStateReader } from '../../src/tunnel/resume-state.js';
import { makePki, makeTempDir, removeDir } from '../harness/index.js';

let dir: string;
let server: TunnelServer;
let port: number;
let ca: Buffer;
let client: { cert: Buffer; key: Buffer };
let twin: { cert: Buffer; key: Buffer };

before(async () => {
  dir = await makeTempDir('nbdt-resume-auth-');
  const pki = await makePki(join(dir, 'pki'));
  const files = await Promise.all(
    [pki.caCert, pki.serverCert, pki.serverKey, pki.clientCert, pki.clientKey, pki.twinClientCert, pki.twinClientKey].map((p) => readFile(p)),
  );
  ca = files[0]!;
  client = { cert: files[3]!, key: files[4]! };
  twin = { cert: files[5]!, key: files[6]! };
  server = new TunnelServer({
    host: '127.0.0.1',
    port: 0,
    tls: { ca, cert: files[1]!, key: files[2]! },
    admit: createAdmission(undefined),
    session: { resumeTimeoutMs: 10_000, keepaliveIntervalMs: 0 },
  });
  port = (await server.listen()).port;
});
after(async () => {
  await server.close();
  await removeDir(dir);
});

/** 101 with the open WebSocket and the response headers, or the refusal's status and body. */
interface Outcome {
  status: number;
  ws: WebSocket | null;
  headers: IncomingMessage['headers'];
  body: string;
}

/** One upgrade attempt as the source makes it, with these credentials and resume headers. */
function attempt(credentials: { cert: Buffer; key: Buffer }, headers: Record<string, string>): Promise<Outcome> {
  const ws = new WebSocket(`wss://localhost:${port}`, [SUBPROTOCOL], { ca, ...credentials, headers, perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    ws.once('upgrade', (response) => ws.once('open', () => resolve({ status: 101, ws, headers: response.headers, body: '' })));
    ws.once('unexpected-response', (_request, response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, ws: null, headers: response.headers, body }));
    });
    ws.once('error', reject);
  });
}

test('a resumable session is resumed by its own client with its secret; a twin certificate, a wrong secret, an unknown id are refused', async () => {
  const sessionArrived = once(server, 'session');
  const made = await attempt(client, { 'x-nbd-tunnel-resume': 'new' });
  assert.equal(made.status, 101);
  const id = String(made.headers['x-nbd-tunnel-session']);
  const secret = String(made.headers['x-nbd-tunnel-resume-secret']);
  assert.match(id, /^p\.[A-Za-z0-9_-]{12}$/);
  assert.match(secret, /^[A-Za-z0-9_-]{43}$/, '32 random bytes');
  const [session] = (await sessionArrived) as [Session];
  assert.equal(session.resumable, true);
  const suspended = once(session, 'suspend');
  made.ws!.terminate();
  await suspended;

  const refusals = await Promise.all([
    attempt(twin, { 'x-nbd-tunnel-resume': id, 'x-nbd-tunnel-resume-secret': secret }),
    attempt(client, { 'x-nbd-tunnel-resume': id, 'x-nbd-tunnel-resume-secret': `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}` }),
    attempt(client, { 'x-nbd-tunnel-resume': id }),
    attempt(client, { 'x-nbd-tunnel-resume': 'p.unknown', 'x-nbd-tunnel-resume-secret': secret }),
    attempt(client, { 'x-nbd-tunnel-resume': 'w7.elsewhere', 'x-nbd-tunnel-resume-secret': secret }),
  ]);
  assert.deepEqual(
    refusals.map((r) => r.status),
    [403, 403, 403, 410, 421],
  );
  for (const r of refusals.slice(0, 3)) assert.match(r.body, /belongs to another client/);
  assert.match(refusals[3]!.body, /destination lost the session p\.unknown/);
  for (const r of refusals) assert.ok(!r.body.includes(secret), 'the secret is never echoed');
  assert.equal(session.suspended, true, 'refused attempts leave the session suspended');

  const resumedEvent = once(session, 'resume');
  const again = await attempt(client, { 'x-nbd-tunnel-resume': id, 'x-nbd-tunnel-resume-secret': secret });
  assert.equal(again.status, 101);
  const ws = again.ws!;
  const answer = new SessionStateReader();
  const answered = new Promise<unknown>((resolve) => ws.on('message', (data: Buffer) => answer.push(data) && resolve(true)));
  ws.send(encodeSessionState({ highestPeerStreamId: 0, streams: [] }));
  await Promise.all([resumedEvent, answered]);
  assert.equal(session.suspended, false);
  ws.terminate();
  session.close();
});

test('a session is resumable only when the source asks for it', async () => {
  const sessionArrived = once(server, 'session');
  const made = await attempt(client, {});
  assert.equal(made.status, 101);
  assert.equal(made.headers['x-nbd-tunnel-session'], undefined);
  const [session] = (await sessionArrived) as [Session];
  assert.equal(session.resumable, false);
  const closed = once(session, 'close');
  made.ws!.terminate();
  await closed;
});
