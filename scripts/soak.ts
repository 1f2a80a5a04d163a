// `npm run soak -- --minutes N`: what test/e2e/soak.test.ts does, for N minutes instead of 2,000
// connections: a tunnel reset every 500 connections, then the same checks. Exits 1 on a problem.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makePki } from '../test/harness/pki.js';
import { describeSoak, runSoak, soakProblems } from '../test/harness/soak.js';
import { makeTempDir, removeDir } from '../test/harness/tmpdir.js';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' } } });
const minutes = Number(values.minutes);
if (!(minutes > 0)) {
  process.stderr.write(`soak: --minutes ${values.minutes}: expected a positive number\n`);
  process.exit(2);
}
const dir = await makeTempDir('nbd-tunnel-soak-');
try {
  process.stdout.write(`soak: ${minutes} min of NBD connections (killed mid-request, gone before the reply, clean), a tunnel reset every 500\n`);
  const result = await runSoak({
    dir,
    pki: await makePki(join(dir, 'pki')),
    connections: Infinity,
    durationMs: minutes * 60_000,
    resetEvery: 500,
    maxResets: Infinity,
    warmup: 1_000,
    progress: (line) => process.stdout.write(`soak: ${line}\n`),
  });
  for (const line of describeSoak(result)) process.stdout.write(`soak: ${line}\n`);
  const problems = soakProblems(result);
  for (const problem of problems) process.stdout.write(`soak: PROBLEM: ${problem}\n`);
  process.stdout.write(problems.length === 0 ? 'soak: ok\n' : `soak: ${problems.length} problem(s)\n`);
  process.exitCode = problems.length === 0 ? 0 : 1;
} finally {
  await removeDir(dir);
}
