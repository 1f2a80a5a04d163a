// The fault harness's tunnel (behind a TCP relay that can reset it) as a migration pair's path.
import { join } from 'node:path';
import { faultLink, type FaultLinkOptions, type FaultTunnel } from '../fault-tunnel.js';
import type { PairLinkFactory } from './pair.js';

/** faultLink for a pair: the first route is its disk route, the others (RAM) its extra routes. */
export function faultPairLink(options: Omit<FaultLinkOptions, 'extraDestRoutes' | 'extraSourceRoutes'>): { connect: PairLinkFactory; tunnel(): FaultTunnel } {
  let inner: ReturnType<typeof faultLink> | null = null;
  const tunnel = (): FaultTunnel => {
    if (!inner) throw new Error('the fault pair link has not been started');
    return inner.tunnel();
  };
  return {
    async connect({ dir, pki, routes }) {
      const [disk, ...others] = Object.keys(routes);
      inner = faultLink({
        ...options,
        extraDestRoutes: Object.fromEntries(others.map((r) => [r, routes[r]])),
        extraSourceRoutes: Object.fromEntries(others.map((r) => [r, join(dir, `${r}.sock`)])),
      });
      const link = await inner.connect({ dir, pki, destSocket: routes[disk], routes: [disk] });
      return { ...link, tunnel: inner.tunnel() };
    },
    tunnel,
  };
}
