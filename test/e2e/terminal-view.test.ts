// The source's progress view on a real pseudo-terminal 64 columns wide: a warning stays below
// the table across redraws, the first SIGINT shows the drain at once, and no line is wider than
// the terminal.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { CLI, screenFrames, spawnInTerminal, startCountingServer, startProxy, until } from '../harness/index.js';
import { suiteFolder } from '../harness/suite.js';

const suite = suiteFolder('nbdt-terminal-');

const WIDTH = 64;

test('source on a terminal: a refused stream stays on screen across redraws, SIGINT shows the drain at once, nothing wider than 64 columns', { timeout: 60_000 }, async () => {
  const dir = await suite.caseDir('view');
  const { pki } = suite;
  const target = await startCountingServer(join(dir, 'target.sock'));
  const dest = await startProxy(['dest', '--listen', '127.0.0.1:0', '--route', `a=${join(dir, 'target.sock')}`, '--cert', pki.serverCert, '--key', pki.serverKey, '--ca', pki.caCert], 'listening');
  const port = Number(dest.logs.find((l) => l.msg === 'listening')?.port);
  const source = [process.execPath, CLI, 'source', '--connect', `wss://localhost:${port}`, '--route', `a=${join(dir, 'a.sock')}`, '--route', `ghost=${join(dir, 'ghost.sock')}`];
  const terminal = await spawnInTerminal([...source, '--cert', pki.clientCert, '--key', pki.clientKey, '--ca', pki.caCert, '--drain-timeout', '3'], { columns: WIDTH, rows: 40 });
  const screen = (): string => terminal.stdout;
  const frames = (): string[][] => screenFrames(terminal.stdout);
  const clients: Socket[] = [];
  let pid: number | null = null;
  try {
    const title = await until('the view with a session', () => /^nbd-tunnel source \(pid (\d+)\): 1 session\(s\)$/.exec(frames().at(-1)?.[0] ?? ''), 10_000, screen);
    pid = Number(title[1]);
    // A stream for a route the destination does not have: refused, an error line on screen.
    const ghost = connect(join(dir, 'ghost.sock'));
    ghost.on('error', () => {});
    clients.push(ghost);
    const isWarning = (line: string): boolean => /^\d\d:\d\d:\d\d ERROR stream refused by the destination \(route ghost\):$/.test(line);
    const shown = await until(
      'the refusal on screen',
      () => {
        const index = frames().findIndex((f) => f.some(isWarning));
        return index === -1 ? null : index;
      },
      10_000,
      screen,
    );
    // The next redraw (every second) keeps it, with its reason on the line below.
    await until('a redraw after the refusal', () => (frames().length > shown + 1 ? true : null), 10_000, screen);
    for (const frame of frames().slice(shown)) {
      const at = frame.findIndex(isWarning);
      assert.ok(at !== -1, `a redraw lost the warning:\n${frame.join('\n')}`);
      assert.equal(frame[at + 1], "  route 'ghost' is not configured on the destination");
    }

    // A stream held open, so that the drain has one to wait for.
    const held = connect(join(dir, 'a.sock'));
    held.on('error', () => {});
    clients.push(held);
    held.write(Buffer.alloc(1000, 0x61));
    await until('the held stream in the table', () => (frames().at(-1)?.some((l) => /^1 +\d+ +a +/.test(l)) ? true : null), 10_000, screen);
    const signalledAt = Date.now();
    process.kill(pid, 'SIGINT');
    await until('the drain on screen', () => (frames().some((f) => f[1] === 'draining (1 stream, up to 3 s)') ? true : null), 10_000, screen);
    const shownAfterMs = Date.now() - signalledAt;
    assert.ok(shownAfterMs < 900, `the drain was drawn ${shownAfterMs} ms after SIGINT, not at once`);

    const { code } = await terminal.exited;
    assert.equal(code, 0, screen());
    pid = null;
    const last = frames().at(-1)!;
    assert.ok(last.some(isWarning), `the last drawing keeps the refusal:\n${last.join('\n')}`);
    assert.ok(
      last.some((l) => /^\d\d:\d\d:\d\d WARN drain timeout: closing the streams still open$/.test(l)),
      `the drain timeout below the table:\n${last.join('\n')}`,
    );
    const wide = frames()
      .flat()
      .filter((l) => [...l].length > WIDTH);
    assert.deepEqual(wide, [], `lines wider than ${WIDTH} columns`);
  } finally {
    if (pid !== null) process.kill(pid, 'SIGKILL');
    for (const client of clients) client.destroy();
    await terminal.stop();
    await dest.stop();
    await target.close();
  }
});
