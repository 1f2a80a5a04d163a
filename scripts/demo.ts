// `npm run demo`: a live migration of a running guest through nbd-tunnel (demo/live.ts);
// `-- --storage-only`: a 1 GiB disk mirrored through the tunnel (demo/storage.ts); `--direct`
// adds the baseline without the tunnel. Ends with `verdict: PASS (…)` (exit 0) or
// `verdict: FAIL (…)` (exit 1). Everything it starts is stopped by PID, also on failure,
// Ctrl-C or SIGTERM, and its temp folder removed.
import { makeTempDir, removeDir } from '../test/harness/index.js';
import type { Demo, Outcome } from './demo/context.js';
import { liveDemo } from './demo/live.js';
import { storageDemo } from './demo/storage.js';
import { Stops } from './demo/stops.js';

const FLAGS = ['--storage-only', '--direct'];
const args = process.argv.slice(2);
const unknown = args.filter((a) => !FLAGS.includes(a));
if (unknown.length > 0) {
  process.stderr.write(`demo: unknown ${unknown.join(' ')}; usage: npm run demo [-- [--storage-only] [--direct]]\n`);
  process.exit(2);
}

const say = (text: string): void => void process.stdout.write(`${text}\n`);
const demo: Demo = { dir: await makeTempDir('nbdt-demo-'), stops: new Stops(), direct: args.includes('--direct'), say };

let interrupted = false;
const onSignal = (signal: NodeJS.Signals): void => {
  if (interrupted) return;
  interrupted = true;
  say(`\n${signal}: stopping what the demo started`);
  void demo.stops
    .run()
    .then(() => removeDir(demo.dir))
    .finally(() => {
      say(`verdict: FAIL (interrupted by ${signal})`);
      process.exit(130);
    });
};
process.on('SIGINT', onSignal).on('SIGTERM', onSignal);

let outcome: Outcome;
try {
  outcome = await (args.includes('--storage-only') ? storageDemo : liveDemo)(demo);
} catch (error) {
  const message = (error as Error).message;
  if (message.includes('\n') && !interrupted) say(message);
  outcome = { ok: false, verdict: message.split('\n')[0] };
} finally {
  await demo.stops.run();
  await removeDir(demo.dir);
}
if (interrupted) await new Promise(() => {}); // onSignal exits
say(`verdict: ${outcome.ok ? 'PASS' : 'FAIL'} (${outcome.verdict})`);
process.exit(outcome.ok ? 0 : 1);
