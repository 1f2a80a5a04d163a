// `nbd-tunnel check`: the steps in order, each printed as it ends; the first failure ends the check.
import { X509Certificate } from 'node:crypto';
import type { SourceConfig } from '../config.js';
import { commonName } from './certificate.js';
import { connectAndReport } from './connect.js';
import { probeRoute } from './probe.js';
import type { Step } from './step.js';

/** True when every step passed. */
export async function runCheck(config: SourceConfig, print: (step: Step) => void): Promise<boolean> {
  const connection = await connectAndReport(config);
  for (const step of connection.steps) print(step);
  if (!connection.ok) return false;
  const { session } = connection;
  try {
    const routes = [...config.routes.keys()];
    if (routes.length === 0) {
      print({ verdict: 'skip', text: 'routes: none to probe (no --route, none in --config); routes added later with `route add` are not known here' });
      return true;
    }
    const client = config.tls ? commonName(new X509Certificate(config.tls.cert)) : undefined;
    for (const route of routes) {
      const step = await probeRoute(session, route, client);
      print(step);
      if (step.verdict === 'FAIL') return false;
    }
    return true;
  } finally {
    await session.close(new Error('check over'));
  }
}
