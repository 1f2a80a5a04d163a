// --allow matching: exact names, one-label wildcards, CN and SAN identities.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certificateIdentities, isAllowed } from '../../src/dest/authorization.js';
import { identityPatternProblem as patternProblem } from '../../src/routes/index.js';

test('identities come from the subject CN and DNS/URI SANs, not IP SANs', () => {
  assert.deepEqual(
    certificateIdentities('hv1.example.org', 'DNS:hv1.example.org, URI:spiffe://prod/hv1, IP Address:10.0.0.1, DNS:alt.example.org'),
    ['hv1.example.org', 'spiffe://prod/hv1', 'alt.example.org'],
  );
  assert.deepEqual(certificateIdentities(undefined, undefined), []);
});

test('a wildcard covers exactly one leftmost label; names compare without case', () => {
  const allow = new Map([['vm1-vda', ['*.hv.example.org', 'spiffe://prod/hv9']]]);
  assert.equal(isAllowed(allow, 'vm1-vda', ['a.hv.example.org']), true);
  assert.equal(isAllowed(allow, 'vm1-vda', ['A.HV.Example.org']), true);
  assert.equal(isAllowed(allow, 'vm1-vda', ['a.b.hv.example.org']), false);
  assert.equal(isAllowed(allow, 'vm1-vda', ['hv.example.org']), false);
  assert.equal(isAllowed(allow, 'vm1-vda', ['evilhv.example.org']), false);
  assert.equal(isAllowed(allow, 'vm1-vda', ['x', 'spiffe://prod/hv9']), true);
  assert.equal(isAllowed(allow, 'vm2-vda', ['a.hv.example.org']), false, 'a route without --allow is closed once any --allow is given');
  assert.equal(isAllowed(undefined, 'vm2-vda', []), true, 'no --allow at all: open to every authenticated client');
});

test('malformed patterns are named', () => {
  assert.equal(patternProblem('*.hv.example.org'), null);
  assert.match(patternProblem('hv*.example.org')!, /whole leftmost label/);
  assert.match(patternProblem('a.*.org')!, /whole leftmost label/);
  assert.match(patternProblem('*.org')!, /at least two labels/);
  assert.match(patternProblem('')!, /empty/);
});
