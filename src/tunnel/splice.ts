// Joins two duplex streams both ways with half-close: each side's end ends the other's
// writable side; an error on either destroys both. pipe() carries the backpressure.
import { finished, type Duplex } from 'node:stream';

/**
 * Resolves when both streams are done, with the first error (null for a clean close).
 * `onEnd`, when `a` ends its side, may return an error to destroy both with instead of
 * passing the half-close on.
 */
export function splice(a: Duplex, b: Duplex, onEnd?: () => Error | null): Promise<Error | null> {
  return new Promise((resolve) => {
    let firstError: Error | null = null;
    let open = 2;
    const settle = (other: Duplex) => (error?: Error | null) => {
      if (error && !firstError) {
        firstError = error;
        other.destroy(error);
      }
      if (--open === 0) resolve(firstError);
    };
    finished(a, settle(b));
    finished(b, settle(a));
    a.pipe(b, { end: false });
    a.once('end', () => {
      const error = onEnd?.() ?? null;
      if (!error) {
        b.end();
        return;
      }
      // `a` may count as finished already (ended, and its writable side done): destroying it
      // would then reach nobody, so `b` is destroyed here and the error recorded directly.
      firstError ??= error;
      a.destroy(error);
      b.destroy(error);
    });
    b.pipe(a);
  });
}
