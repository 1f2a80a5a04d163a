// --config FILE: keys are the long flags in camelCase; unknown keys and wrong types are named;
// flags > NBD_TUNNEL_* env > the file > defaults; route and allow entries merge by name.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { ConfigError } from '../../src/config.js';
import { loadFlags } from '../../src/config-file.js';
import { makeTempDir, removeDir } from '../harness/tmpdir.js';

let dir: string;
before(async () => {
  dir = await makeTempDir('nbdt-config-');
});
after(async () => {
  await removeDir(dir);
});

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** A command shaped like `dest`, parsed from argv with `env` as the environment. */
function parse(argv: string[], env: Record<string, string>): { command: Command; flags: Record<string, unknown> & { config?: string } } {
  const command = new Command('dest')
    .exitOverride()
    .addOption(new Option('--route <NAME=SOCKET>').argParser(collect).default([]).env('NBD_TUNNEL_ROUTE'))
    .addOption(new Option('--allow <RULE>').argParser(collect).default([]).env('NBD_TUNNEL_ALLOW'))
    .addOption(new Option('--route-dir <DIR>').env('NBD_TUNNEL_ROUTE_DIR'))
    .addOption(new Option('--stream-window <SIZE>').default('16M').env('NBD_TUNNEL_STREAM_WINDOW'))
    .addOption(new Option('--max-streams <N>').default('256').env('NBD_TUNNEL_MAX_STREAMS'))
    .addOption(new Option('--keepalive-interval <S>').default('5').env('NBD_TUNNEL_KEEPALIVE_INTERVAL'))
    .addOption(new Option('--no-inspect').env('NBD_TUNNEL_NO_INSPECT'))
    .addOption(new Option('--insecure'))
    .addOption(new Option('--config <FILE>'));
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    command.parse(argv, { from: 'user' });
  } finally {
    for (const key of Object.keys(env)) if (saved[key] === undefined) delete process.env[key];
  }
  return { command, flags: command.opts() };
}

async function file(name: string, content: unknown): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

test('flags > env > file > defaults; route and allow merge, the flag entry replacing the file entry of the same name', async () => {
  const path = await file('all.json', {
    streamWindow: '64M',
    maxStreams: 100,
    keepaliveInterval: 7,
    routeDir: '/run/nbd-tunnel',
    noInspect: true,
    insecure: true,
    route: { 'vm1-vda': '/file/vda.sock', 'vm1-ram': '/file/ram.sock' },
    allow: { 'vm1-*': ['hv1.example.org', 'hv2.example.org'], 'vm2-vda': 'hv3.example.org' },
  });
  const { command, flags } = parse(['--config', path, '--stream-window', '32M', '--route', 'vm1-vda=/flag/vda.sock'], { NBD_TUNNEL_MAX_STREAMS: '50' });
  const loaded = loadFlags(command, flags).flags as Record<string, unknown>;
  assert.equal(loaded.streamWindow, '32M', 'a flag wins over the file');
  assert.equal(loaded.maxStreams, '50', 'the environment wins over the file');
  assert.equal(loaded.keepaliveInterval, '7', 'the file wins over a default; numbers become text');
  assert.equal(loaded.routeDir, '/run/nbd-tunnel');
  assert.equal(loaded.inspect, false, 'noInspect: true is --no-inspect');
  assert.equal(loaded.insecure, true);
  assert.deepEqual(loaded.route, ['vm1-ram=/file/ram.sock', 'vm1-vda=/flag/vda.sock']);
  assert.deepEqual(loaded.allow, ['vm1-*=hv1.example.org,hv2.example.org', 'vm2-vda=hv3.example.org']);
});

test('SIGHUP reads the file again; without --config the flags stay as they are', async () => {
  const path = await file('reread.json', { allow: { 'vm1-*': ['hv1.example.org'] } });
  const { command, flags } = parse(['--config', path], {});
  const loaded = loadFlags(command, flags);
  assert.deepEqual((loaded.flags as Record<string, unknown>).allow, ['vm1-*=hv1.example.org']);
  await file('reread.json', { allow: { 'vm1-*': ['hv1.example.org'], 'vm2-*': ['hv2.example.org'] } });
  assert.deepEqual((loaded.reread() as Record<string, unknown>).allow, ['vm1-*=hv1.example.org', 'vm2-*=hv2.example.org']);
  await file('reread.json', '{ broken');
  assert.throws(() => loaded.reread(), (error: Error) => error instanceof ConfigError && /reread\.json: not valid JSON/.test(error.message));
  const plain = parse(['--stream-window', '32M'], {});
  assert.equal(loadFlags(plain.command, plain.flags).flags, plain.flags);
});

test('unknown keys, wrong types and a file that is not an object are named with the file', async () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ listen: '0.0.0.0:1' }, /unknown\.json: unknown key 'listen'$/],
    [{ 'route-dir': '/x' }, /unknown key 'route-dir' \(keys are flag names in camelCase: 'routeDir'\)/],
    [{ config: '/other.json' }, /unknown key 'config'/],
    [{ streamWindow: true }, /'streamWindow': expected a string or a number/],
    [{ insecure: 'yes' }, /'insecure': expected true or false/],
    [{ route: ['vm1=/x.sock'] }, /'route': expected an object, as in \{"vm1-vda"/],
    [{ route: { vm1: 3 } }, /'route': 'vm1': expected a socket path/],
    [{ allow: { 'vm1-*': [1] } }, /'allow': 'vm1-\*': expected a list of identities/],
    [[1, 2], /expected a JSON object of settings/],
  ];
  for (const [content, expected] of cases) {
    const path = await file('unknown.json', content);
    const { command, flags } = parse(['--config', path], {});
    assert.throws(() => loadFlags(command, flags), (error: Error) => error instanceof ConfigError && expected.test(error.message), JSON.stringify(content));
  }
  const { command, flags } = parse(['--config', join(dir, 'missing.json')], {});
  assert.throws(() => loadFlags(command, flags), /--config .*missing\.json: cannot read: ENOENT/);
});
