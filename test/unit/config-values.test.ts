// Flag values as operators write them: ":PORT" for every address, IPv6 in brackets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseListen } from '../../src/config.js';

test('--listen takes HOST:PORT, :PORT (every IPv4 address) and [ADDR]:PORT', () => {
  assert.deepEqual(parseListen(':10809'), { host: '0.0.0.0', port: 10809 });
  assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListen('[::1]:10809'), { host: '::1', port: 10809 });
  assert.throws(() => parseListen('10809'), (e: Error) => e instanceof ConfigError && /expected HOST:PORT, :PORT for every address/.test(e.message));
  assert.throws(() => parseListen(':70000'), /port must be 0-65535/);
});
