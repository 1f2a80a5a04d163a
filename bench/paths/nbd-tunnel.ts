// The project's own CLI (dist/cli.js), started by the test harness as the e2e tests do.
import { join } from 'node:path';
import { startTunnel } from '../../test/harness/index.js';
import { buildPath } from './builder.js';
import type { PathHandle, PathOptions } from './types.js';

export function startNbdTunnel(options: PathOptions): Promise<PathHandle> {
  return buildPath(options, async (b) => {
    const sockets = new Map(options.routes.map((route) => [route, join(options.dir, `${route}.sock`)]));
    const tunnel = await startTunnel({
      pki: options.pki,
      destRoutes: Object.fromEntries(options.routes.map((route) => [route, options.destSocket])),
      sourceRoutes: Object.fromEntries(sockets),
      connectVia: (port) => b.via(port),
      nodeArgs: options.profileDir ? { source: cpuProfile(options.profileDir, 'source'), dest: cpuProfile(options.profileDir, 'dest') } : undefined,
    });
    b.onStop(() => tunnel.stop());
    b.watch('nbd-tunnel source', tunnel.source.child.pid);
    b.watch('nbd-tunnel dest', tunnel.dest.child.pid);
    return (route) => sockets.get(route)!;
  });
}

function cpuProfile(dir: string, side: string): string[] {
  return ['--cpu-prof', `--cpu-prof-dir=${join(dir, side)}`];
}
