// Issue 9's soak, bounded: 2,000 NBD connections through one resumable session, a third killed
// mid-request, a third gone before reading the reply, a third clean, with 5 tunnel resets among
// them; then nothing may be left: no stream on either side, descriptors back to the baseline,
// memory flat after warm-up. `npm run soak -- --minutes N` runs the same for longer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeSoak, runSoak, soakProblems } from '../harness/soak.js';
import { suiteFolder } from '../harness/suite.js';

const suite = suiteFolder('nbd-tunnel-soak-');

test('soak: 2,000 connections ending every way, 5 tunnel resets: no stream, descriptor or memory left behind', { timeout: 300_000 }, async (t) => {
  const result = await runSoak({ dir: await suite.caseDir('soak'), pki: suite.pki, connections: 2_000, resetEvery: 333, maxResets: 5, warmup: 500 });
  for (const line of describeSoak(result)) t.diagnostic(line);
  assert.equal(result.resets, 5);
  assert.deepEqual(soakProblems(result), []);
});
