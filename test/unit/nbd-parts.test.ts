// The inspector's parts: the coverage map, the in-flight table, the throughput window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Coverage, COVERAGE_MAX_UNITS } from '../../src/nbd/coverage.js';
import { InFlight } from '../../src/nbd/in-flight.js';
import { RateWindow } from '../../src/nbd/rate.js';
import { mulberry32 } from '../harness/prng.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

test('coverage granularity: 4 KiB up to 4 GiB, then doubling so that there are at most 2^20 units', () => {
  assert.equal(new Coverage(64 * MiB).granularity, 4 * KiB);
  assert.equal(new Coverage(4 * GiB).granularity, 4 * KiB);
  assert.equal(new Coverage(4 * GiB + 1).granularity, 8 * KiB);
  assert.equal(new Coverage(1 * TiB).granularity, 1 * MiB);
  assert.equal(new Coverage(16 * TiB).granularity, 16 * MiB);
  for (const size of [1, 4095, 10 * GiB + 7, 3 * TiB, 2 ** 53]) {
    const cov = new Coverage(size);
    assert.ok(cov.units <= COVERAGE_MAX_UNITS, `${size}: ${cov.units} units`);
    assert.equal(cov.units, Math.ceil(size / cov.granularity));
  }
  assert.equal(new Coverage(0).ratio, 0);
});

test('coverage is exact for aligned writes, including the short last unit and overlaps', () => {
  const cov = new Coverage(10 * MiB + 512);
  cov.add(0, 1 * MiB);
  cov.add(512 * KiB, 1 * MiB); // overlaps the first
  assert.equal(cov.coveredBytes, 1.5 * MiB);
  cov.add(10 * MiB, 512); // the last, short unit
  assert.equal(cov.coveredBytes, 1.5 * MiB + 512);
  cov.add(9 * MiB, 2 * MiB); // runs past the end
  assert.equal(cov.coveredBytes, 2.5 * MiB + 512);
  cov.add(0, 100 * MiB);
  assert.equal(cov.coveredBytes, 10 * MiB + 512);
  assert.equal(cov.ratio, 1);
  cov.add(20 * MiB, 4096); // beyond the export: ignored
  cov.add(-4096, 4096);
  cov.add(0, 0);
  assert.equal(cov.ratio, 1);
});

test('coverage: partial units add up from slices; smaller pieces are a lower bound, never an overcount', () => {
  const cov = new Coverage(1 * TiB); // 1 MiB units, 32 KiB slices
  for (let off = 0; off < 1 * MiB; off += 64 * KiB) cov.add(5 * MiB + off, 64 * KiB); // a mirror's 64 KiB writes
  assert.equal(cov.coveredBytes, 1 * MiB);
  cov.add(7 * MiB, 1 * MiB - 4 * KiB); // almost a unit
  assert.equal(cov.coveredBytes, 1 * MiB);
  cov.add(8 * MiB - 4 * KiB, 4 * KiB); // less than a slice: not tracked
  assert.equal(cov.coveredBytes, 1 * MiB);
  cov.add(8 * MiB - 32 * KiB, 32 * KiB); // the last slice: now complete
  assert.equal(cov.coveredBytes, 2 * MiB);
  cov.add(10 * MiB + 100, 3 * MiB); // unaligned: the whole units inside count, and the slices at both ends
  assert.equal(cov.coveredBytes, 4 * MiB);
  cov.add(10 * MiB, 32 * KiB); // the head's missing first slice
  assert.equal(cov.coveredBytes, 5 * MiB); // unit 10 complete: its slices 1..31 were already covered
});

test('coverage against a byte-exact model: a lower bound, exact for slice-aligned writes', () => {
  const rand = mulberry32(99);
  const size = 3 * MiB + 4096 * 3;
  const aligned = new Coverage(size);
  const unaligned = new Coverage(size);
  const exactAligned = new Uint8Array(size);
  const exactUnaligned = new Uint8Array(size);
  for (let i = 0; i < 3000; i++) {
    const off = Math.floor(rand() * size);
    const len = Math.floor(rand() * 64 * KiB);
    const aOff = off - (off % 128);
    const aLen = len - (len % 128);
    aligned.add(aOff, aLen);
    exactAligned.fill(1, aOff, Math.min(size, aOff + aLen));
    unaligned.add(off, len);
    exactUnaligned.fill(1, off, Math.min(size, off + len));
    if (i % 100 === 0) {
      assert.equal(aligned.coveredBytes, countUnits(exactAligned, aligned.granularity), `aligned, step ${i}`);
      assert.ok(unaligned.coveredBytes <= exactUnaligned.reduce((n, b) => n + b, 0), `unaligned, step ${i}`);
    }
  }
});

/** Bytes in fully written units of `g` bytes (the last unit may be short). */
function countUnits(bytes: Uint8Array, g: number): number {
  let n = 0;
  for (let u = 0; u < bytes.length; u += g) {
    const end = Math.min(bytes.length, u + g);
    if (bytes.subarray(u, end).every((b) => b === 1)) n += end - u;
  }
  return n;
}

test('coverage of a huge export costs at most 128 KiB of bitmap and whole-disk writes stay fast', () => {
  const cov = new Coverage(64 * TiB);
  const start = performance.now();
  cov.add(0, 64 * TiB);
  assert.equal(cov.ratio, 1);
  assert.ok(performance.now() - start < 100);
  assert.ok(cov.units <= COVERAGE_MAX_UNITS);
});

test('in-flight table: random inserts and removes agree with a Map, and it refuses past its limit', () => {
  const rand = mulberry32(1234);
  const table = new InFlight(1024);
  const model = new Map<string, [number, number]>();
  const keys: Array<[number, number]> = [];
  for (let i = 0; i < 200_000; i++) {
    if (model.size < 1000 && (rand() < 0.55 || model.size === 0)) {
      // Cookies that share halves, to exercise collisions.
      const hi = rand() < 0.5 ? 0x5599 : Math.floor(rand() * 2 ** 32);
      const lo = Math.floor(rand() * (rand() < 0.5 ? 64 : 2 ** 32));
      assert.ok(table.insert(hi, lo, i & 7, i * 512, i));
      if (!model.has(`${hi}:${lo}`)) keys.push([hi, lo]);
      model.set(`${hi}:${lo}`, [i * 512, i]);
    } else {
      const k = Math.floor(rand() * keys.length);
      const [hi, lo] = keys[k]!;
      keys[k] = keys[keys.length - 1]!;
      keys.pop();
      const slot = table.find(hi, lo);
      assert.ok(slot >= 0);
      assert.deepEqual([table.offset[slot], table.length[slot]], model.get(`${hi}:${lo}`));
      table.remove(slot);
      model.delete(`${hi}:${lo}`);
      assert.equal(table.find(hi, lo), -1);
    }
    assert.equal(table.size, model.size);
  }
  for (const [key, [offset, length]] of model) {
    const [hi, lo] = key.split(':').map(Number) as [number, number];
    const slot = table.find(hi, lo);
    assert.deepEqual([table.offset[slot], table.length[slot]], [offset, length]);
  }
  const small = new InFlight(3);
  assert.ok(small.insert(0, 1, 0, 0, 0) && small.insert(0, 2, 0, 0, 0) && small.insert(0, 3, 0, 0, 0));
  assert.equal(small.insert(0, 4, 0, 0, 0), false);
  assert.ok(small.insert(0, 3, 1, 7, 7)); // a cookie already in flight is replaced, not added
  assert.equal(small.length[small.find(0, 3)], 7);
});

test('rate window: bytes per second since creation, then over the window, forgetting old buckets', () => {
  const rate = new RateWindow(1000, 0, 10);
  assert.equal(rate.rate(0), 0);
  rate.add(0, 1000);
  rate.add(50, 1000);
  assert.equal(rate.rate(100), 20_000); // 2000 bytes in the 100 ms since creation
  assert.equal(rate.rate(900), (2000 * 1000) / 900); // the window: the current bucket and the 9 before it
  assert.equal(rate.rate(1150), 0); // both samples have left the window
  rate.add(5000, 500);
  rate.add(4000, 500); // a clock that went back counts in the newest bucket
  assert.equal(rate.rate(5500), (1000 * 1000) / 900);
});
