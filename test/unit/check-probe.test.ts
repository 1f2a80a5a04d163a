// `nbd-tunnel check`'s probe of one route, against destinations played here: what goes on the wire
// (never a "route" key, which an older destination would open), and each answer's line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { probeRoute } from '../../src/check/probe.js';
import { encodeMessage, readMessage, type OpenReply, type Stream } from '../../src/tunnel/index.js';
import { sessionPair } from './support/session-pair.js';

/** A destination that reads each open request into `seen` and answers `reply` (or resets the stream). */
function destination(pair: ReturnType<typeof sessionPair>, reply: OpenReply | 'reset', seen: unknown[]): void {
  pair.server.on('stream', (stream: Stream) => {
    stream.on('error', () => {});
    void readMessage(stream).then((request) => {
      seen.push(request);
      if (reply === 'reset') stream.destroy(new Error('reset'));
      else stream.end(encodeMessage(reply));
      stream.resume();
    });
  });
}

test('the request is {"probe": ROUTE} alone; a yes is one ok line with what the destination found', async () => {
  const pair = sessionPair();
  try {
    const seen: unknown[] = [];
    destination(pair, { ok: true, socket: '/run/qemu/vm1-nbd.sock', identity: 'hv1.example.org' }, seen);
    const step = await probeRoute(pair.client, 'vm1-vda', 'hv1.example.org');
    assert.deepEqual(seen, [{ probe: 'vm1-vda' }]);
    assert.deepEqual(step, { verdict: 'ok', text: 'route vm1-vda: known, allowed for hv1.example.org, socket /run/qemu/vm1-nbd.sock listening' });
  } finally {
    pair.close();
  }
});

test('a destination from before probes (it reads one as a malformed request): said so, with its words', async () => {
  const pair = sessionPair();
  try {
    const old = 'open request must be a JSON object with a string "route" (or "migrate")';
    destination(pair, { ok: false, code: 'bad-open-request', message: old }, []);
    const step = await probeRoute(pair.client, 'vm1-vda', 'hv1.example.org');
    assert.deepEqual(step, {
      verdict: 'FAIL',
      text: `route vm1-vda: the destination is older and cannot be probed (it answered: ${old}); upgrade nbd-tunnel there to check routes`,
    });
  } finally {
    pair.close();
  }
});

test('a stream reset instead of an answer: FAIL, no answer from the destination', async () => {
  const pair = sessionPair();
  try {
    destination(pair, 'reset', []);
    const step = await probeRoute(pair.client, 'vm1-vda', undefined);
    assert.equal(step.verdict, 'FAIL');
    assert.match(step.text, /^route vm1-vda: no answer from the destination: /);
  } finally {
    pair.close();
  }
});
