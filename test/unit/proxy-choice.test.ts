// Which proxy the source uses, as curl decides it: --proxy, else https_proxy/HTTPS_PROXY (the
// lower-case one first); none for a host no_proxy/NO_PROXY names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseProxy } from '../../src/tunnel/index.js';

const to = (host: string) => new URL(`wss://${host}:10809`);

test('--proxy wins over the environment; the environment\'s lower-case variable over the upper-case one; --proxy \'\' means none', () => {
  const env = { https_proxy: 'http://lower:1', HTTPS_PROXY: 'http://upper:2' };
  assert.equal(chooseProxy('http://flag:3', to('dst'), env).summary, 'http://flag:3 (--proxy)');
  assert.equal(chooseProxy(undefined, to('dst'), env).summary, 'http://lower:1 (https_proxy)');
  assert.equal(chooseProxy(undefined, to('dst'), { https_proxy: ' ', HTTPS_PROXY: 'http://upper:2' }).summary, 'http://upper:2 (HTTPS_PROXY)');
  assert.deepEqual(chooseProxy('', to('dst'), env), { proxy: undefined, summary: undefined });
  assert.deepEqual(chooseProxy(undefined, to('dst'), {}), { proxy: undefined, summary: undefined });
});

test('proxy URLs: HOST:PORT alone is http://, the port defaults to 1080 as in curl, an explicit :80 stays, credentials are decoded and never in the label', () => {
  assert.deepEqual(chooseProxy('proxy.example.org:3128', to('dst'), {}).proxy, { host: 'proxy.example.org', port: 3128, credentials: undefined, label: '--proxy http://proxy.example.org:3128' });
  assert.equal(chooseProxy('http://proxy', to('dst'), {}).proxy?.port, 1080);
  assert.equal(chooseProxy('http://proxy:80/', to('dst'), {}).proxy?.port, 80);
  assert.deepEqual(chooseProxy('http://mig:p%40ss@[::1]:3128', to('dst'), {}).proxy, { host: '::1', port: 3128, credentials: 'mig:p@ss', label: '--proxy http://[::1]:3128' });
  assert.throws(() => chooseProxy(undefined, to('dst'), { HTTPS_PROXY: 'https://u:pw@proxy:1' }), { message: "HTTPS_PROXY 'https://u:***@proxy:1': only http:// proxies are supported (CONNECT in plain HTTP), not https://" });
});

test('NO_PROXY: `*`, the host itself, or a domain it is in (with or without a leading dot), any case; never a mere suffix of a label', () => {
  const proxied = (host: string, noProxy: string) => chooseProxy('http://proxy:3128', to(host), { NO_PROXY: noProxy }).proxy !== undefined;
  assert.equal(proxied('dst.hv.example.org', '*'), false);
  assert.equal(proxied('dst.hv.example.org', 'other.org, DST.hv.example.org'), false);
  assert.equal(proxied('dst.hv.example.org', 'example.org'), false);
  assert.equal(proxied('dst.hv.example.org', '.hv.example.org'), false);
  assert.equal(proxied('dst.hv.example.org', 'v.example.org'), true);
  assert.equal(proxied('dst.hv.example.org', 'dst.hv'), true);
  assert.equal(proxied('[::1]', '::1'), false);
  assert.equal(proxied('10.1.2.3', '10.1.2.3'), false);
  assert.equal(chooseProxy('http://proxy:3128', to('dst.example.org'), { no_proxy: 'example.org', NO_PROXY: 'nothing' }).summary, "none: no_proxy names 'example.org'");
});
