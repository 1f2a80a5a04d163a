// Requests awaiting their reply, keyed by the 64-bit cookie (two 32-bit halves, no BigInt):
// an open-addressing hash table in typed arrays, so inserting and removing allocate nothing.
// It starts small (QEMU keeps at most 16 requests in flight) and doubles up to `limit`.

const INITIAL_CAPACITY = 64; // power of two; kept at most half full

export class InFlight {
  /** Request fields by slot; valid while `used[slot]` is 1. */
  type!: Uint16Array;
  offset!: Float64Array;
  length!: Float64Array;
  /** 1 once an error was reported for the request (a structured reply may go on after it). */
  errored!: Uint8Array;
  private used!: Uint8Array;
  private hi!: Uint32Array;
  private lo!: Uint32Array;
  private mask = 0;
  private shift = 0;
  size = 0;

  constructor(readonly limit: number) {
    this.allocate(INITIAL_CAPACITY);
  }

  /** The slot holding `cookie`, or -1. */
  find(hi: number, lo: number): number {
    const mask = this.mask;
    for (let i = this.home(hi, lo); ; i = (i + 1) & mask) {
      if (this.used[i] === 0) return -1;
      if (this.lo[i] === lo && this.hi[i] === hi) return i;
    }
  }

  /**
   * Adds a request; a cookie already in flight is replaced (clients must not reuse one, and
   * the newer request is the one its reply will answer). Returns false when `limit` requests
   * are already in flight.
   */
  insert(hi: number, lo: number, type: number, offset: number, length: number): boolean {
    let slot = this.find(hi, lo);
    if (slot < 0) {
      if (this.size >= this.limit) return false;
      if ((this.size + 1) * 2 > this.mask + 1) this.grow();
      slot = this.home(hi, lo);
      while (this.used[slot] !== 0) slot = (slot + 1) & this.mask;
      this.used[slot] = 1;
      this.hi[slot] = hi;
      this.lo[slot] = lo;
      this.size++;
    }
    this.type[slot] = type;
    this.offset[slot] = offset;
    this.length[slot] = length;
    this.errored[slot] = 0;
    return true;
  }

  /** Removes the request in `slot` (backward-shift deletion: no tombstones, probes stay short). */
  remove(slot: number): void {
    const mask = this.mask;
    let hole = slot;
    for (let i = (slot + 1) & mask; this.used[i] !== 0; i = (i + 1) & mask) {
      const home = this.home(this.hi[i]!, this.lo[i]!);
      // Entry i may fill the hole unless its home lies cyclically in (hole, i].
      const stays = hole <= i ? hole < home && home <= i : hole < home || home <= i;
      if (stays) continue;
      this.move(i, hole);
      hole = i;
    }
    this.used[hole] = 0;
    this.size--;
  }

  private home(hi: number, lo: number): number {
    return Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
  }

  private move(from: number, to: number): void {
    this.hi[to] = this.hi[from]!;
    this.lo[to] = this.lo[from]!;
    this.type[to] = this.type[from]!;
    this.offset[to] = this.offset[from]!;
    this.length[to] = this.length[from]!;
    this.errored[to] = this.errored[from]!;
  }

  private allocate(capacity: number): void {
    this.used = new Uint8Array(capacity);
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.type = new Uint16Array(capacity);
    this.offset = new Float64Array(capacity);
    this.length = new Float64Array(capacity);
    this.errored = new Uint8Array(capacity);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
  }

  private grow(): void {
    const { used, hi, lo, type, offset, length, errored } = this;
    this.allocate(used.length * 2);
    this.size = 0;
    for (let i = 0; i < used.length; i++) {
      if (used[i] === 0) continue;
      this.insert(hi[i]!, lo[i]!, type[i]!, offset[i]!, length[i]!);
      if (errored[i] !== 0) this.errored[this.find(hi[i]!, lo[i]!)] = 1;
    }
  }
}
