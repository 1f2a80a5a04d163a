// What an operator installs: the npm package's contents, the systemd units against the docs, and
// the version everywhere an operator may look for it (--version, start lines, /status, /metrics).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI, makeTempDir, removeDir, run, startProxy, type LogLine } from '../harness/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UNITS = join(ROOT, 'contrib/systemd');
/** The default --drain-timeout (s) and what closing and flushing the logs may take after it. */
const DRAIN_TIMEOUT_S = 30;
const CLOSE_MARGIN_S = 2;

let dir: string;
let version: string;

before(async () => {
  dir = await makeTempDir('nbdt-pkg-');
  version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
});
after(async () => {
  await removeDir(dir);
});

/** The files `npm pack` would put in the tarball, without running prepack (the test's dist is already built). */
async function packedFiles(): Promise<string[]> {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
  const [pack] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>;
  return pack!.files.map((f) => f.path).sort();
}

test('npm pack ships LICENSE, README, docs, the systemd units and dist/*.js; no maps, src/ or test/', async () => {
  const files = await packedFiles();
  const units = (await readdir(UNITS)).map((f) => `contrib/systemd/${f}`);
  const docs = (await readdir(join(ROOT, 'docs'))).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`);
  assert.deepEqual(
    units.sort(),
    ['nbd-tunnel-dest.service', 'nbd-tunnel-dest@.service', 'nbd-tunnel-source.service', 'nbd-tunnel-source@.service'].map((f) => `contrib/systemd/${f}`),
  );
  for (const wanted of ['LICENSE', 'README.md', 'package.json', 'dist/cli.js', 'dist/version.js', ...docs, ...units]) {
    assert.ok(files.includes(wanted), `${wanted} is not in the package: ${files.join(' ')}`);
  }
  for (const file of files) {
    assert.doesNotMatch(file, /\.map$|^src\/|^test\/|^node_modules\//, `${file} should not be in the package`);
    assert.match(file, /^(LICENSE|README\.md|package\.json|docs\/[^/]+\.md|contrib\/systemd\/[^/]+|dist\/.+\.js)$/, `unexpected file ${file}`);
  }
  // No shipped file points at a source map (they would name ../src/*.ts, which is not shipped).
  for (const file of files.filter((f) => f.endsWith('.js'))) {
    assert.doesNotMatch(await readFile(join(ROOT, file), 'utf8'), /sourceMappingURL/, `${file} refers to a source map`);
  }
  const license = await readFile(join(ROOT, 'LICENSE'), 'utf8');
  assert.match(license, /^MIT License\n\nCopyright \(c\) 2026 nbd-tunnel developers\n/);
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { license: string; bin: Record<string, string> };
  assert.equal(pkg.license, 'MIT');
  assert.equal(pkg.bin['nbd-tunnel'], 'dist/cli.js');
});

test('the shipped Markdown links only to files the package ships (or to the web)', async () => {
  const files = await packedFiles();
  for (const doc of files.filter((f) => f.endsWith('.md'))) {
    const text = await readFile(join(ROOT, doc), 'utf8');
    assert.doesNotMatch(text, /\.\.\/shared\//, `${doc} names a file outside the repository`);
    for (const [, target] of text.matchAll(/\]\(([^)\s#]+)[^)]*\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      const resolved = join(doc, '..', target!);
      assert.ok(files.includes(resolved), `${doc} links to ${target}, which is not shipped`);
    }
  }
});

test('the systemd units: the docs quote them exactly; /usr/local/bin, Group=qemu and a stop timeout above the drain', async () => {
  const operations = await readFile(join(ROOT, 'docs/OPERATIONS.md'), 'utf8');
  const security = await readFile(join(ROOT, 'docs/SECURITY.md'), 'utf8');
  const units = await readdir(UNITS);
  for (const name of units) {
    const text = await readFile(join(UNITS, name), 'utf8');
    assert.ok(operations.includes('```ini\n' + text + '```\n'), `docs/OPERATIONS.md does not quote contrib/systemd/${name} exactly`);
    const settings = text.split('\n').filter((l) => !l.startsWith('#'));
    assert.match(settings.find((l) => l.startsWith('ExecStart='))!, /^ExecStart=\/usr\/local\/bin\/nbd-tunnel (dest|source) /, name);
    assert.deepEqual(settings.filter((l) => l.startsWith('Group=')), ['Group=qemu'], name);
    const stop = settings.find((l) => l.startsWith('TimeoutStopSec='));
    assert.ok(stop, `${name} sets no TimeoutStopSec`);
    assert.ok(Number(stop.split('=')[1]) > DRAIN_TIMEOUT_S + CLOSE_MARGIN_S, `${name}: ${stop} is not above --drain-timeout + ${CLOSE_MARGIN_S} s`);
    // SECURITY's sandboxing block lists settings every unit has.
    const sandbox = /```ini\n([\s\S]*?)```/.exec(security)?.[1] ?? '';
    for (const line of sandbox.split('\n').filter((l) => l !== '')) assert.ok(settings.includes(line), `${name} lacks SECURITY's ${line}`);
  }
  // One group in every unit-like line of the docs; no stale path or "default is shorter" claim.
  for (const [doc, text] of [['OPERATIONS', operations], ['SECURITY', security]] as const) {
    for (const line of text.match(/^Group=.*$/gm) ?? []) assert.equal(line, 'Group=qemu', doc);
    assert.doesNotMatch(text, /\/usr\/bin\/nbd-tunnel|or it\s+sends SIGKILL first|Group=nbd-tunnel/, doc);
  }
  assert.match(operations, /systemd's own default stop timeout is 90 s/);
});

test('systemd-analyze verify accepts the units (skipped without systemd-analyze)', async (t) => {
  if (spawnSync('systemd-analyze', ['--version']).status !== 0) return t.skip('no systemd-analyze');
  const units = await readdir(UNITS);
  // Templates are checked through an instance (mig); the one complaint expected is that the
  // command is not installed here.
  const copies = await makeTempDir('nbdt-units-');
  try {
    const paths = units.map((u) => join(copies, u.replace('@.service', '@mig.service')));
    for (const [i, u] of units.entries()) await copyFile(join(UNITS, u), paths[i]!);
    const result = spawnSync('systemd-analyze', ['verify', '--man=no', ...paths], { encoding: 'utf8' });
    const complaints = result.stderr.split('\n').filter((l) => l.trim() !== '' && !/Command \/usr\/local\/bin\/nbd-tunnel is not executable/.test(l));
    assert.deepEqual(complaints, []);
  } finally {
    await removeDir(copies);
  }
});

/** The command paths `--help` lists, recursively (`route add`…), without commander's `help`. */
async function commandPaths(prefix: string[] = []): Promise<string[][]> {
  const { stdout } = await run(process.execPath, [CLI, ...prefix, '--help']);
  const section = stdout.split(/^Commands:\n/m)[1] ?? '';
  const names = [...section.matchAll(/^ {2}(\S+)/gm)].map((m) => m[1]!).filter((n) => n !== 'help');
  const paths: string[][] = [prefix];
  for (const name of names) paths.push(...(await commandPaths([...prefix, name])));
  return paths;
}

test('--version and -V print the package version on the program and every command', async () => {
  const paths = await commandPaths();
  const names = paths.map((p) => p.join(' '));
  for (const wanted of ['', 'dest', 'source', 'check', 'migrate', 'route', 'route add', 'route remove', 'route list', 'status']) assert.ok(names.includes(wanted), `no command '${wanted}' in --help`);
  for (const path of paths) {
    for (const flag of ['--version', '-V']) {
      const { stdout, stderr } = await run(process.execPath, [CLI, ...path, flag]);
      assert.equal(stdout, `${version}\n`, `nbd-tunnel ${path.join(' ')} ${flag}`);
      assert.equal(stderr, '');
    }
  }
});

test('the version is in the listening and ready lines, /status and nbd_tunnel_build_info', async () => {
  const dest = await startProxy(['dest', '--insecure', '--listen', '127.0.0.1:0', '--route', `a=${join(dir, 'a-dest.sock')}`, '--metrics', '127.0.0.1:0'], 'listening');
  try {
    const listening = await dest.waitForLog((l) => l.msg === 'listening');
    assert.equal(listening.version, version);
    const metrics = `http://${listening.metrics as string}`;
    const status = (await (await fetch(`${metrics}/status`)).json()) as { role: string; version: string };
    assert.equal(status.role, 'dest');
    assert.equal(status.version, version);
    const text = await (await fetch(`${metrics}/metrics`)).text();
    assert.ok(text.includes(`nbd_tunnel_build_info{version="${version}",node="${process.version}"} 1\n`), text);

    const source = await startProxy(
      ['source', '--insecure', '--connect', `ws://127.0.0.1:${listening.port as number}`, '--route', `a=${join(dir, 'a-source.sock')}`, '--metrics', '127.0.0.1:0', '--log-format', 'json'],
      'ready',
    );
    try {
      const ready: LogLine = await source.waitForLog((l) => l.msg === 'ready');
      assert.equal(ready.version, version);
      const sourceStatus = (await (await fetch(`http://${ready.metrics as string}/status`)).json()) as { version: string };
      assert.equal(sourceStatus.version, version);
    } finally {
      await source.stop();
    }
  } finally {
    await dest.stop();
  }
});

test("migrate's first line carries the version, before anything can fail", async () => {
  const { stdout, code } = await run(
    process.execPath,
    [CLI, 'migrate', '--insecure', '--qmp', join(dir, 'no-qmp.sock'), '--connect', 'ws://127.0.0.1:9', '--vm', 'vm1', '--log-format', 'json'],
    { okCodes: [1] },
  );
  assert.equal(code, 1);
  const first = JSON.parse(stdout.split('\n')[0]!) as LogLine;
  assert.equal(first.msg, 'migration starting');
  assert.equal(first.version, version);
});
