// Bytes per second over a sliding window, in fixed memory: a ring of time buckets.

export class RateWindow {
  private readonly bucketMs: number;
  private readonly buckets: Float64Array;
  private head = 0; // index (time / bucketMs) of the newest bucket
  private started = false;
  private readonly since: number;

  /**
   * @param windowMs how far back the rate looks
   * @param now the current time in ms (the window never reaches back before it)
   * @param bucketCount resolution: the window moves in steps of windowMs / bucketCount
   */
  constructor(
    readonly windowMs: number,
    now: number,
    bucketCount = 20,
  ) {
    this.bucketMs = windowMs / bucketCount;
    this.buckets = new Float64Array(bucketCount);
    this.since = now;
  }

  add(now: number, bytes: number): void {
    this.advance(now);
    this.buckets[slot(this.head, this.buckets.length)] += bytes;
  }

  /** Bytes per second over the last windowMs (or since creation, if that is shorter). */
  rate(now: number): number {
    this.advance(now);
    let sum = 0;
    for (let i = 0; i < this.buckets.length; i++) sum += this.buckets[i]!;
    if (sum === 0) return 0;
    // The buckets hold the current, partial one plus the (count - 1) before it.
    const span = Math.min((this.buckets.length - 1) * this.bucketMs + (now - this.head * this.bucketMs), now - this.since);
    return span > 0 ? (sum * 1000) / span : 0;
  }

  private advance(now: number): void {
    const index = Math.floor(now / this.bucketMs);
    if (!this.started) {
      this.started = true;
      this.head = index;
      return;
    }
    if (index <= this.head) return; // same bucket, or a clock that went back: keep adding to the newest
    const count = this.buckets.length;
    const clear = Math.min(index - this.head, count);
    for (let i = 1; i <= clear; i++) this.buckets[slot(this.head + i, count)] = 0;
    this.head = index;
  }
}

function slot(index: number, count: number): number {
  const r = index % count;
  return r < 0 ? r + count : r;
}
