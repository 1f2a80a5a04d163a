// Micro-benchmark (not a test): how fast the NBD inspector follows a synthetic 1 GiB stream of
// NBD_CMD_WRITE requests fed in 64 KiB chunks (cut wherever 64 KiB falls, so headers straddle
// chunks), with the server's simple replies fed in between, 16 requests in flight as QEMU does.
//
//   npx tsx test/unit/support/nbd-inspector-speed.ts [GiB] [chunkKiB]
import { NBD_CMD_WRITE, NBD_FLAG_HAS_FLAGS, NBD_OPT_GO } from '../../../src/nbd/constants.js';
import { NbdInspector } from '../../../src/nbd/index.js';
import { ack, c, clientFlags, feed, goData, greeting, infoExport, option, request, s, simpleReply } from './nbd-wire.js';

const GiB = 1024 ** 3;
const total = Number(process.argv[2] ?? 1) * GiB;
const chunkSize = Number(process.argv[3] ?? 64) * 1024;
const IN_FLIGHT = 16;

interface Result {
  seconds: number;
  writes: number;
}

function runOnce(requestSize: number, inspect: boolean): Result {
  const messageLength = 28 + requestSize;
  const blockLength = IN_FLIGHT * messageLength;
  // Two blocks of 16 writes with different cookies (1..16, 17..32: a block's replies are fed
  // once the block has passed, when the next block's first requests may already be in flight),
  // repeated with a chunk's worth of slack, so that any 64 KiB window of the endless stream is
  // a view of this one buffer.
  const block = (set: number) =>
    Buffer.concat(
      Array.from({ length: IN_FLIGHT }, (_, i) =>
        request(NBD_CMD_WRITE, set * IN_FLIGHT + i + 1, i * requestSize, requestSize, { payload: Buffer.alloc(requestSize, 0x5a) }),
      ),
    );
  const periodLength = 2 * blockLength;
  const period = Buffer.concat([block(0), block(1)]);
  const ring = Buffer.concat(Array.from({ length: Math.ceil((periodLength + chunkSize) / periodLength) + 1 }, () => period));
  const replies = [0, 1].map((set) => Buffer.concat(Array.from({ length: IN_FLIGHT }, (_, i) => simpleReply(set * IN_FLIGHT + i + 1))));

  const inspector = new NbdInspector();
  feed(inspector, [
    s(greeting()),
    c(clientFlags(3), option(NBD_OPT_GO, goData('bench'))),
    s(infoExport(NBD_OPT_GO, 16 * requestSize, NBD_FLAG_HAS_FLAGS), ack(NBD_OPT_GO)),
  ]);
  let sink = 0;
  const start = process.hrtime.bigint();
  let pos = 0;
  let nextReplies = blockLength;
  let set = 0;
  while (pos < total) {
    const at = pos % periodLength;
    const chunk = ring.subarray(at, at + chunkSize);
    if (inspect) inspector.toDest(chunk);
    else sink += chunk.length;
    pos += chunkSize;
    while (pos >= nextReplies) {
      if (inspect) inspector.toSource(replies[set]!);
      else sink += replies[set]!.length;
      set ^= 1;
      nextReplies += blockLength;
    }
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const stats = inspector.snapshot();
  if (inspect && stats.inspection !== 'active') throw new Error(`inspection stopped: ${stats.stopReason}`);
  if (sink < 0) console.log(sink);
  return { seconds, writes: stats.requests.WRITE.count };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

console.log(`inspecting ${total / GiB} GiB of NBD_CMD_WRITE traffic in ${chunkSize / 1024} KiB chunks (node ${process.version})`);
console.log('request size   inspected MB/s (median of 5)   best      harness alone   writes seen');
for (const requestSize of [4096, 65536, 1024 * 1024]) {
  runOnce(requestSize, true); // warm-up
  const runs = Array.from({ length: 5 }, () => runOnce(requestSize, true));
  const bare = median(Array.from({ length: 3 }, () => runOnce(requestSize, false).seconds));
  const rates = runs.map((r) => total / r.seconds / 1e6);
  const label = requestSize >= 1024 * 1024 ? `${requestSize / 1024 / 1024} MiB` : `${requestSize / 1024} KiB`;
  console.log(
    `${label.padEnd(15)}${median(rates).toFixed(0).padStart(10)}${' '.repeat(22)}${Math.max(...rates).toFixed(0).padStart(7)}` +
      `${(total / bare / 1e6).toFixed(0).padStart(14)}      ${runs[0]!.writes}`,
  );
}
