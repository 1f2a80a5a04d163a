// Which share of an export has been written at least once, in bounded memory.
//
// The export is cut into `units` of `granularity` bytes: a power of two, at least 4 KiB, and
// large enough that there are at most 2^20 units (so a bitmap of at most 128 KiB, whatever the
// export size: 4 KiB units up to 4 GiB, 1 MiB units for 1 TiB, 16 MiB for 16 TiB). A unit
// counts as covered once the writes that reached it covered all of it:
//   - the units a request spans completely are set at once;
//   - a request that covers only part of a unit (its head or tail) marks the 1/32nd slices of
//     that unit it covers completely in a small direct-mapped table of partial units (1024
//     slots, 8 KiB); the unit is set when its 32 slices are. A slot taken over by another unit
//     forgets the earlier unit's slices.
// The result is therefore a lower bound. It is exact when writes start and end on multiples of
// granularity/32 (128 bytes for exports up to 4 GiB; 32 KiB at 1 TiB, which QEMU's mirror,
// copying whole clusters of 64 KiB or more, satisfies) and fewer than 1024 units are partially
// written at a time. It never counts a byte that was not written.

export const COVERAGE_MAX_UNITS = 1 << 20;
export const COVERAGE_MIN_GRANULARITY = 4096;
const SLICES = 32; // slices per unit, one bit each in a partial slot's mask
const PARTIAL_SLOTS = 1024; // power of two

export class Coverage {
  readonly size: number;
  readonly granularity: number;
  readonly units: number;
  private readonly slice: number;
  private readonly bits: Int32Array;
  private readonly slotUnit: Int32Array;
  private readonly slotMask: Int32Array;
  private coveredUnits = 0;

  constructor(size: number) {
    this.size = size > 0 && Number.isFinite(size) ? size : 0;
    let granularity = COVERAGE_MIN_GRANULARITY;
    while (this.size / granularity > COVERAGE_MAX_UNITS) granularity *= 2;
    this.granularity = granularity;
    this.slice = granularity / SLICES;
    this.units = Math.ceil(this.size / granularity);
    this.bits = new Int32Array(Math.ceil(this.units / 32));
    this.slotUnit = new Int32Array(PARTIAL_SLOTS).fill(-1);
    this.slotMask = new Int32Array(PARTIAL_SLOTS);
  }

  /** Bytes known to have been written (a lower bound, see above). */
  get coveredBytes(): number {
    if (this.coveredUnits === 0) return 0;
    const bytes = this.coveredUnits * this.granularity;
    // The last unit may extend past the end of the export.
    const padding = this.units * this.granularity - this.size;
    return this.isSet(this.units - 1) ? bytes - padding : bytes;
  }

  get ratio(): number {
    return this.size === 0 ? 0 : this.coveredBytes / this.size;
  }

  /** Records that [offset, offset + length) was written. */
  add(offset: number, length: number): void {
    if (!(length > 0) || !(offset >= 0) || offset >= this.size) return;
    const g = this.granularity;
    let end = offset + length;
    // Reaching the end of the export also covers the padding of the last unit.
    if (end >= this.size) end = this.units * g;
    const firstFull = Math.ceil(offset / g);
    const lastFull = Math.floor(end / g); // units [firstFull, lastFull) are covered completely
    if (firstFull > lastFull) {
      // Starts and ends inside the same unit.
      this.addPartial(lastFull, offset - lastFull * g, end - lastFull * g);
      return;
    }
    if (firstFull < lastFull) this.setUnits(firstFull, lastFull);
    if (offset < firstFull * g) this.addPartial(firstFull - 1, offset - (firstFull - 1) * g, g);
    if (end > lastFull * g) this.addPartial(lastFull, 0, end - lastFull * g);
  }

  private isSet(unit: number): boolean {
    return (this.bits[unit >>> 5]! & (1 << (unit & 31))) !== 0;
  }

  /** [from, to) is a byte range inside `unit`. */
  private addPartial(unit: number, from: number, to: number): void {
    if (this.isSet(unit)) return;
    const s0 = Math.ceil(from / this.slice);
    const s1 = Math.floor(to / this.slice);
    if (s0 >= s1) return; // no whole slice: below what is tracked
    const width = s1 - s0;
    const mask = width >= 32 ? -1 : (-1 >>> (32 - width)) << s0;
    const slot = unit & (PARTIAL_SLOTS - 1);
    let current = 0;
    if (this.slotUnit[slot] === unit) current = this.slotMask[slot]!;
    else this.slotUnit[slot] = unit;
    const merged = current | mask;
    if (merged === -1) {
      this.slotUnit[slot] = -1;
      this.setUnits(unit, unit + 1);
    } else {
      this.slotMask[slot] = merged;
    }
  }

  /** Sets units [from, to), counting those not set before. */
  private setUnits(from: number, to: number): void {
    const bits = this.bits;
    let word = from >>> 5;
    const lastWord = (to - 1) >>> 5;
    let added = 0;
    for (; word <= lastWord; word++) {
      const lo = word === from >>> 5 ? from & 31 : 0;
      const hi = word === lastWord ? ((to - 1) & 31) + 1 : 32; // bits [lo, hi) of this word
      const mask = hi - lo === 32 ? -1 : (-1 >>> (32 - (hi - lo))) << lo;
      const old = bits[word]!;
      const fresh = mask & ~old;
      if (fresh !== 0) {
        added += popcount(fresh);
        bits[word] = old | mask;
      }
    }
    this.coveredUnits += added;
  }
}

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}
