// The terminal views as pure functions of their state and the terminal's width: the source's
// progress table, the migrate bars, the notices kept below them, and the in-place drawing.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type { SessionStatus, StreamStatus } from '../../src/metrics/index.js';
import { migrationLines, type MigrationState } from '../../src/migrate/progress.js';
import { drainingLine, progressLines } from '../../src/status/progress-view.js';
import { statusLines, type StatusDocument } from '../../src/status/render.js';
import { clip, clipMiddle, columns, wrap } from '../../src/terminal/fit.js';
import { noticeLines, Notices } from '../../src/terminal/notices.js';
import { terminalView, viewLines } from '../../src/terminal/view.js';

const MiB = 2 ** 20;

const stream = (fields: Partial<StreamStatus>): StreamStatus => ({
  session: 1,
  stream: 1,
  route: 'vm1-vda',
  export: 'vm1-vda',
  size: 256 * MiB,
  coveredRatio: 0.5,
  bytesToDest: 130 * MiB,
  bytesToSource: MiB,
  mbps: 88.4,
  inspection: 'nbd',
  durationMs: 1000,
  ...fields,
});

const session = (fields: Partial<SessionStatus>): SessionStatus => ({ id: 1, peer: 'wss://dst.hv.example.org:10809/', rttMs: 2, suspended: false, openStreams: 2, streams: [], ...fields });

const doc: StatusDocument = {
  role: 'source',
  pid: 4242,
  sessions: [
    session({
      streams: [stream({}), stream({ stream: 3, route: 'vm1-migration-disk-number-two', export: 'vm1-migration-disk-number-two', coveredRatio: 1, bytesToDest: 256 * MiB })],
    }),
  ],
};

const logLine = (level: number, second: number, fields: Record<string, unknown>): string =>
  `${JSON.stringify({ level, time: `2026-12-01T12:00:0${second}.123Z`, role: 'source', pid: 1, ...fields })}\n`;

test('clip, clipMiddle and wrap keep to the width', () => {
  assert.equal(clip('abcdefgh', 8), 'abcdefgh');
  assert.equal(clip('abcdefgh', 5), 'abcd…');
  assert.equal(clipMiddle('vm1-migration-disk-b', 9), 'vm1-…sk-b');
  assert.equal(clipMiddle('vm1-vda', 9), 'vm1-vda');
  assert.deepEqual(wrap('one two three four five six', 10, 2), ['one two', '  three f…']);
  assert.deepEqual(wrap('one two three', 20, 2), ['one two three']);
  assert.deepEqual(wrap('averyveryverylongword next', 10, 3), ['averyvery…', '  next']);
  assert.equal(columns('a…b'), 3);
});

test('the status table as wide as it takes: every column and a 20-cell bar', () => {
  assert.deepEqual(statusLines(doc, { bars: true }), [
    'nbd-tunnel source (pid 4242): 1 session(s)',
    'session 1: wss://dst.hv.example.org:10809/, rtt 2 ms',
    'SESSION  STREAM  ROUTE                          EXPORT                         SIZE       COVERED  MB/s  TO DEST    TO SOURCE',
    '1        1       vm1-vda                        vm1-vda                        256.0 MiB  50.0%    88.4  130.0 MiB  1.0 MiB    [##########..........]',
    '1        3       vm1-migration-disk-number-two  vm1-migration-disk-number-two  256.0 MiB  100.0%   88.4  256.0 MiB  1.0 MiB    [####################]',
  ]);
});

test('the status table on 100, 80 and 50 columns: names cut in the middle, bars shrunk, then byte columns and the bar go', () => {
  assert.deepEqual(statusLines(doc, { bars: true, width: 100 }).slice(2), [
    'SESSION  STREAM  ROUTE      EXPORT      SIZE       COVERED  MB/s  TO DEST    TO SOURCE',
    '1        1       vm1-vda    vm1-vda     256.0 MiB  50.0%    88.4  130.0 MiB  1.0 MiB    [#####.....]',
    '1        3       vm1-…-two  vm1-m…-two  256.0 MiB  100.0%   88.4  256.0 MiB  1.0 MiB    [##########]',
  ]);
  assert.deepEqual(statusLines(doc, { bars: true, width: 80 }).slice(2), [
    'SESSION  STREAM  ROUTE     EXPORT    SIZE       COVERED  MB/s',
    '1        1       vm1-vda   vm1-vda   256.0 MiB  50.0%    88.4  [########.......]',
    '1        3       vm1-…two  vm1-…two  256.0 MiB  100.0%   88.4  [###############]',
  ]);
  assert.deepEqual(statusLines(doc, { bars: true, width: 50 }), [
    'nbd-tunnel source (pid 4242): 1 session(s)',
    'session 1: wss://dst.hv.example.org:10809/, rtt 2…',
    'SESSION  STREAM  ROUTE     EXPORT    COVERED',
    '1        1       vm1-vda   vm1-vda   50.0%',
    '1        3       vm1-…two  vm1-…two  100.0%',
  ]);
  for (const width of [100, 80, 64, 50, 30, 12]) {
    for (const line of statusLines(doc, { bars: true, width })) assert.ok(columns(line) <= width, `${width}: ${line}`);
  }
});

test('with workers: the title counts them, a troubled one has a line, sessions are named worker/id', () => {
  const workers: StatusDocument = {
    role: 'dest',
    pid: 10,
    workers: [
      { worker: 'w1', pid: 11, ok: true },
      { worker: 'w2', pid: 12, ok: false, reason: 'did not answer within 1 s' },
    ],
    sessions: [session({ worker: 'w1', client: 'src.hv.example.org', peer: '10.0.0.1', rttMs: null, streams: [stream({ worker: 'w1', coveredRatio: null, export: null, inspection: 'not-nbd', size: null })] })],
  };
  assert.deepEqual(statusLines(workers, { bars: false }), [
    'nbd-tunnel dest (pid 10, 2 workers): 1 session(s)',
    'worker w2 (pid 12): did not answer within 1 s',
    'session w1/1: src.hv.example.org 10.0.0.1',
    'SESSION  STREAM  ROUTE    EXPORT     SIZE  COVERED  MB/s  TO DEST    TO SOURCE',
    'w1/1     1       vm1-vda  (not NBD)  -     -        88.4  130.0 MiB  1.0 MiB',
  ]);
});

test('the progress view: the drain right below the title, singular and plural', () => {
  assert.equal(drainingLine({ streams: 1, timeoutMs: 30_000 }), 'draining (1 stream, up to 30 s)');
  assert.equal(drainingLine({ streams: 0, timeoutMs: 500 }), 'draining (0 streams, up to 0.5 s)');
  assert.deepEqual(progressLines(doc, { streams: 2, timeoutMs: 30_000 }, 64).slice(0, 3), [
    'nbd-tunnel source (pid 4242): 1 session(s)',
    'draining (2 streams, up to 30 s)',
    'session 1: wss://dst.hv.example.org:10809/, rtt 2 ms',
  ]);
  assert.deepEqual(progressLines(null, null, 64), []);
});

test('notices: warnings and errors only, a repeat counted, the last five kept, each on at most two lines', () => {
  const notices = new Notices(5);
  assert.equal(notices.add(logLine(30, 0, { msg: 'stream opened', route: 'a' })), false);
  assert.equal(notices.add('not JSON\n'), false);
  notices.add(logLine(50, 1, { msg: 'stream refused by the destination', route: 'ghost', code: 'unknown-route', reason: "route 'ghost' is not configured on the destination" }));
  notices.add(logLine(40, 2, { msg: 'session lost', reason: 'read ECONNRESET' }));
  notices.add(logLine(40, 3, { msg: 'session lost', reason: 'read ECONNRESET' }));
  assert.deepEqual(noticeLines(notices.list(), 64), [
    '12:00:01 ERROR stream refused by the destination (route ghost):',
    "  route 'ghost' is not configured on the destination",
    '12:00:03 WARN 2x session lost: read ECONNRESET',
  ]);
  for (let i = 4; i <= 9; i++) notices.add(logLine(40, i, { msg: `warning ${i}` }));
  assert.deepEqual(
    notices.list().map((n) => n.text),
    ['warning 5', 'warning 6', 'warning 7', 'warning 8', 'warning 9'],
  );
  assert.deepEqual(viewLines(['body'], notices.list().slice(0, 1), 20), ['body', '', '12:00:05 WARN', '  warning 5']);
  assert.deepEqual(viewLines(['a body line longer than twenty'], [], 20), ['a body line longer …']);
});

test('the migrate bars on 100, 60 and 40 columns', () => {
  const state: MigrationState = {
    disks: [
      { node: 'disk0', offset: 100 * MiB, len: 1024 * MiB, ready: false },
      { node: 'virtio-disk-with-long-name', offset: 1024 * MiB, len: 1024 * MiB, ready: true },
    ],
    ram: { transferred: 50 * MiB, total: 256 * MiB, remaining: 200 * MiB },
    phase: 'ram',
  };
  assert.deepEqual(migrationLines(state, 100), [
    'disk0                      [##..................] 100.0 MiB / 1.0 GiB',
    'virtio-disk-with-long-name [####################] 1.0 GiB / 1.0 GiB  READY',
    'RAM                        [####................] 50.0 MiB sent, 200.0 MiB left',
    'phase: ram',
  ]);
  assert.deepEqual(migrationLines(state, 60), [
    'disk0             [#.........] 100.0 MiB / 1.0 GiB',
    'virtio-d…ong-name [##########] 1.0 GiB / 1.0 GiB  READY',
    'RAM               [##........] 50.0 MiB sent, 200.0 MiB left',
    'phase: ram',
  ]);
  assert.deepEqual(migrationLines(state, 40), ['disk0    100.0 MiB / 1.0 GiB', 'virt…ame 1.0 GiB / 1.0 GiB  READY', 'RAM      50.0 MiB sent, 200.0 MiB left', 'phase: ram']);
});

/** Enough of a terminal for terminalView: a width, writes, 'resize'. */
class FakeTerminal extends EventEmitter {
  written = '';
  constructor(public columns: number) {
    super();
  }
  write(text: string): boolean {
    this.written += text;
    return true;
  }
}

test('drawn in place: up over the last drawing and clear below; a warning drawn at once; a resize re-reads the width and clears the screen', () => {
  const terminal = new FakeTerminal(30);
  let body = ['first line of the body, quite long'];
  const view = terminalView(terminal as unknown as NodeJS.WriteStream, () => body);
  view.draw();
  assert.equal(terminal.written, '\x1b[Jfirst line of the body, quite…\n');
  terminal.written = '';
  view.log(logLine(40, 1, { msg: 'session lost' }));
  assert.equal(terminal.written, '\x1b[1F\x1b[Jfirst line of the body, quite…\n\n12:00:01 WARN session lost\n');
  terminal.written = '';
  body = ['short'];
  terminal.columns = 12;
  terminal.emit('resize');
  assert.equal(terminal.written, '\x1b[H\x1b[2Jshort\n\n12:00:01\n  WARN sess…\n');
  terminal.written = '';
  view.stop();
  view.draw();
  view.log(logLine(50, 2, { msg: 'later' }));
  assert.equal(terminal.written, '12:00:02\n  ERROR lat…\n', 'after stop: nothing redrawn, a warning written below');
});
