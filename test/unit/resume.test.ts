// Resumable sessions over in-memory transports: transports cut at random moments (what was
// queued on them is lost), new ones attached, and every stream's bytes still arrive exactly once.
import { createHash } from 'node:crypto';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Session, type Stream } from '../../src/tunnel/index.js';
import { replayMemory } from '../../src/tunnel/replay-buffer.js';
import { memoryPair, type LinkOptions, type MemoryTransport } from './support/memory-transport.js';
import { sessionPair } from './support/session-pair.js';
import { drain, feed } from './support/streams.js';

const WINDOW = 256 * 1024;

const LINK = { highWaterMark: 64 * 1024, rechunk: (bytes: Buffer) => cutAnywhere(bytes) };

function resumablePair(resumeTimeoutMs = 5_000, windows: { streamWindow: number; initialStreamWindow?: number } = { streamWindow: WINDOW }, link: LinkOptions = LINK) {
  // Pings give the round trip that window growth needs.
  const { client, server, clientTransport } = sessionPair({ ...windows, resumeTimeoutMs, keepaliveIntervalMs: 60_000 }, link);
  let current: MemoryTransport = clientTransport;
  return {
    client,
    server,
    /** Drops the link for good. */
    drop: () => current.close(new Error('link reset')),
    /** Drops the link (and whatever it held), then joins the sessions over a new one. */
    async cut(outageMs: number): Promise<void> {
      current.close(new Error('link reset'));
      await sleep(outageMs);
      const [a, b] = memoryPair(link);
      current = a;
      server.resume(b);
      client.resume(a);
    },
  };
}

function cutAnywhere(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; ) {
    const n = 1 + Math.floor(Math.random() * 20_000);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

test('six cuts while 8 streams carry 6 MiB each way: every byte arrives once, in order; tables end empty', (t) => sixCuts(t, WINDOW));

// Windows that grow (FLAG_GROW) while cuts happen: the replay buffers must follow the grown
// windows exactly, or a resume finds bytes missing.
test('the same with windows growing from 256 KiB to 2 MiB across the cuts (a 4 ms round trip)', (t) => sixCuts(t, 2 * 1024 * 1024, { ...LINK, delayMs: 2 }));

async function sixCuts(t: TestContext, streamWindow: number, link: LinkOptions = LINK): Promise<void> {
  const pair = resumablePair(5_000, { streamWindow, initialStreamWindow: WINDOW }, link);
  let suspends = 0;
  let resumed = 0;
  pair.client.on('suspend', () => suspends++);
  pair.client.on('resume', () => resumed++);
  pair.server.on('stream', (stream) => stream.pipe(stream)); // echo
  const peakBefore = replayMemory.peak;
  const transfers = Array.from({ length: 8 }, async (_, k) => {
    const stream = pair.client.open();
    const [sent, received] = await Promise.all([feed(stream, 6 * 1024 * 1024 + k * 4099, 40_000 + k * 977), drain(stream)]);
    assert.equal(received.sha256, sent, `stream ${stream.id}: echoed bytes differ`);
  });
  const done = Promise.all(transfers);
  let finished = false;
  void done.finally(() => (finished = true));
  for (let i = 0; i < 6 && !finished; i++) {
    await sleep(20 + Math.random() * 60);
    await pair.cut(Math.random() * 30);
  }
  await done;
  await sleep(50); // fin-acks
  assert.ok(suspends >= 1 && resumed === suspends, `suspends ${suspends}, resumes ${resumed}`);
  assert.equal(pair.client.streamCount, 0, 'client still holds streams');
  assert.equal(pair.server.streamCount, 0, 'server still holds streams');
  assert.ok(replayMemory.peak <= Math.max(peakBefore, 8 * 2 * streamWindow), `replay peak ${replayMemory.peak}`);
  t.diagnostic(`${suspends} cuts; replay peak ${(replayMemory.peak / 1024).toFixed(0)} KiB for 8 streams x 2 directions of windows up to ${streamWindow / 1024} KiB`);
  pair.client.close();
  pair.server.close();
}

test('streams opened while suspended, and closed or reset while suspended, come out right', async () => {
  const pair = resumablePair();
  const accepted: Stream[] = [];
  pair.server.on('stream', (stream) => {
    accepted.push(stream);
    stream.on('error', () => {});
    stream.pipe(stream);
  });
  const early = pair.client.open();
  early.write(Buffer.from('before'));
  await sleep(10);
  // While the link is down, the client opens a stream and ends another.
  const suspended = once(pair.client, 'suspend');
  const cutting = pair.cut(50);
  await suspended;
  const late = pair.client.open();
  late.end(Buffer.from('opened while suspended'));
  early.end(Buffer.from(' and after'));
  await cutting;
  const [lateEcho, earlyEcho] = await Promise.all([drain(late), drain(early)]);
  assert.equal(lateEcho.bytes, 'opened while suspended'.length);
  assert.equal(earlyEcho.bytes, 'before and after'.length);
  // A reset made while suspended reaches the other side after the resume.
  const victim = pair.client.open();
  victim.write(Buffer.from('x'));
  await sleep(10);
  const serverSide = accepted.at(-1)!;
  const reset = once(serverSide, 'error');
  const down = pair.cut(30);
  await once(pair.client, 'suspend');
  victim.destroy();
  await down;
  const [error] = (await reset) as [Error];
  assert.match(error.message, /stream \d+ was reset by the peer while the session was suspended/);
  await sleep(30);
  assert.equal(pair.client.streamCount, 0);
  assert.equal(pair.server.streamCount, 0);
  pair.client.close();
  pair.server.close();
});

test('a session not resumed in time closes its streams on both sides with the reason', async () => {
  const pair = resumablePair(200);
  pair.server.on('stream', (stream) => stream.on('error', () => {}).resume());
  const stream = pair.client.open();
  stream.write(Buffer.from('x'));
  await sleep(10);
  const errored = once(stream, 'error');
  const closed = once(pair.server, 'close');
  const started = Date.now();
  pair.drop();
  const [error] = (await errored) as [Error];
  const [reason] = (await closed) as [Error];
  assert.match(error.message, /session not resumed within 0\.2 s \(--resume-timeout\) after: link reset/);
  assert.match(reason.message, /not resumed within 0\.2 s/);
  assert.ok(Date.now() - started >= 190);
});

test('300 short streams opened and closed while the link is cut every few milliseconds: all complete, tables end empty', async () => {
  const pair = resumablePair();
  pair.server.on('stream', (stream) => stream.pipe(stream));
  let cutting = true;
  const cuts = (async () => {
    let n = 0;
    while (cutting) {
      await sleep(Math.random() * 8);
      await pair.cut(Math.random() * 5);
      n++;
    }
    return n;
  })();
  for (let batch = 0; batch < 30; batch++) {
    await Promise.all(
      Array.from({ length: 10 }, async (_, k) => {
        const stream = pair.client.open();
        const payload = Buffer.alloc(1 + ((batch * 10 + k) % 7) * 3001, batch * 10 + k);
        stream.end(payload);
        const echoed = await drain(stream);
        assert.equal(echoed.sha256, createHash('sha256').update(payload).digest('hex'), `stream ${stream.id}`);
      }),
    );
  }
  cutting = false;
  const n = await cuts;
  await sleep(50);
  assert.ok(n > 5, `only ${n} cuts`);
  assert.equal(pair.client.streamCount, 0, 'client still holds streams');
  assert.equal(pair.server.streamCount, 0, 'server still holds streams');
  pair.client.close();
  pair.server.close();
});

test('a new connection that never brings the peer\'s state is given up after the keepalive timeout, and the session stays suspended', async () => {
  const [a, b] = memoryPair();
  const client = new Session(a, { client: true, keepaliveIntervalMs: 20, keepaliveTimeoutMs: 100, resumeTimeoutMs: 5_000 });
  const server = new Session(b, { client: false, keepaliveIntervalMs: 0, resumeTimeoutMs: 5_000 });
  const suspends: string[] = [];
  client.on('suspend', (reason) => suspends.push(reason.message));
  a.close(new Error('link reset'));
  await once(client, 'suspend');
  const [silent] = memoryPair(); // its other end is never attached to the server
  client.resume(silent);
  await once(client, 'suspend');
  assert.deepEqual(suspends, ['link reset', 'no resume state from the peer within 100 ms']);
  assert.equal(client.suspended, true);
  assert.equal(client.closed, false);
  client.close();
  server.close();
});
