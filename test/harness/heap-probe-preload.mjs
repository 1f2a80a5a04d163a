// Loaded into a proxy under test through NODE_OPTIONS (see heap-probe.ts), never by the product:
// on SIGUSR2, collect garbage and write the memory figures to NBDT_TEST_HEAP_DIR/heap.PID.json.
// Plain JavaScript: the proxies run dist/ with node alone, without tsx.
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const file = join(process.env.NBDT_TEST_HEAP_DIR, `heap.${process.pid}.json`);
let seq = 0;
process.on('SIGUSR2', () => {
  // Several passes: objects freed by one pass's weak callbacks go in the next.
  for (let i = 0; i < 4; i++) gc();
  const { heapUsed, external, arrayBuffers, rss } = process.memoryUsage();
  seq++;
  writeFileSync(`${file}.tmp`, JSON.stringify({ seq, heapUsed, external, arrayBuffers, rss }));
  renameSync(`${file}.tmp`, file); // the reader never sees half a file
});
