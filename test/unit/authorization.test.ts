// --allow matching: exact names, one-label wildcards, CN and SAN identities.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { certificateIdentities, isAllowed } from '../../src/dest/authorization.js';
import { identityPatternProblem as patternProblem, routePatternProblem } from '../../src/routes/index.js';

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

test('--allow route patterns: a trailing * covers every route with that prefix; exact and pattern rules both apply', () => {
  const allow = new Map([
    ['vm1-*', ['hv1.example.org']],
    ['vm1-vda', ['hv2.example.org']],
    ['*', ['admin.example.org']],
  ]);
  assert.equal(isAllowed(allow, 'vm1-vda', ['hv1.example.org']), true, 'the pattern rule');
  assert.equal(isAllowed(allow, 'vm1-vda', ['hv2.example.org']), true, 'the exact rule');
  assert.equal(isAllowed(allow, 'vm1-ram', ['hv2.example.org']), false, 'the exact rule is for vm1-vda only');
  assert.equal(isAllowed(allow, 'vm10-vda', ['hv1.example.org']), false, "'vm1-*' does not cover vm10-vda");
  assert.equal(isAllowed(allow, 'vm2-vda', ['admin.example.org']), true, "'*' covers every route");
  assert.equal(isAllowed(allow, 'vm2-vda', ['hv1.example.org']), false);
});

test('route patterns: * only as the last character, after the start of a route name', () => {
  assert.equal(routePatternProblem('vm1-*'), null);
  assert.equal(routePatternProblem('*'), null);
  assert.equal(routePatternProblem('vm1-vda'), null);
  assert.match(routePatternProblem('*-vda')!, /'\*' may only end the route name/);
  assert.match(routePatternProblem('vm*-vda')!, /'\*' may only end the route name/);
  assert.match(routePatternProblem('vm1-**')!, /'\*' may only end the route name/);
  assert.match(routePatternProblem('-vm*')!, /must start a route name/);
  assert.match(routePatternProblem('vm1/x')!, /route name must match/);
});
