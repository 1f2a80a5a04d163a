// Everything a transport sends in one tick leaves in one writev: one TLS write and one system
// call, not one per frame.
import type { Writable } from 'node:stream';

/** Returns what to call before each write: corks the socket once per tick, uncorked at its end. */
export function corkPerTick(socket: Writable): () => void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  return () => {
    if (corked) return;
    corked = true;
    socket.cork();
    process.nextTick(uncork);
  };
}
