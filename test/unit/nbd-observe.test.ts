// The observer's one judgement that changes what happens to a stream: an NBD server that ends
// a connection its client is still using has failed, and the stream is reset rather than
// half-closed (proto.md "Terminating the transmission phase").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { observeNbd, type NbdObserver } from '../../src/nbd/index.js';
import { qemuLikeHandshake, structuredSession } from './support/nbd-scripts.js';
import type { Script } from './support/nbd-wire.js';

const silent = pino({ level: 'silent' });

function observed(localIsServer: boolean, script: Script): NbdObserver {
  const observer = observeNbd(silent, localIsServer);
  for (const { dir, data } of script) observer[dir](data);
  observer.finish(); // stops its progress timer
  return observer;
}

test('destination: a server that leaves mid-session is an ECONNRESET; after NBD_CMD_DISC or before negotiation it is a close', () => {
  const midSession = observed(true, qemuLikeHandshake()).localEnded();
  assert.ok(midSession instanceof Error);
  assert.equal((midSession as NodeJS.ErrnoException).code, 'ECONNRESET');
  assert.match(midSession.message, /^ECONNRESET: the NBD server closed the connection while the client was still using it \(no NBD_CMD_DISC\)/);
  assert.equal(observed(true, structuredSession()).localEnded(), null, 'after NBD_CMD_DISC the server closes');
  assert.equal(observed(true, qemuLikeHandshake().slice(0, 1)).localEnded(), null, 'during the handshake a server may refuse');
});

test('source: QEMU closing its side is passed on as it is', () => {
  assert.equal(observed(false, qemuLikeHandshake()).localEnded(), null);
});
