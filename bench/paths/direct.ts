// The ceiling: the source QEMU's NBD client connects to the destination NBD server's socket.
import type { PathHandle, PathOptions } from './types.js';

export async function startDirect(options: PathOptions): Promise<PathHandle> {
  if (options.rttMs > 0) throw new Error('direct has no TCP leg to delay');
  return {
    clientSocket: () => options.destSocket,
    processes: () => [],
    notes: () => [],
    stop: async () => {},
  };
}
