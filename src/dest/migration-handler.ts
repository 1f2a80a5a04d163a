// A stream that opens with {"migrate": VM}: the typed migration channel into one of the QEMUs
// the destination may drive (--vm). Who may migrate into VM NAME follows --allow as if NAME
// were a route; one migration into a VM at a time.
import type { Logger } from '../log.js';
import { MigrationTarget, serveMigration } from '../migrate/index.js';
import { encodeMessage, type Stream } from '../tunnel/index.js';
import { isAllowed } from './authorization.js';
import type { StreamContext } from './stream-handler.js';

export async function handleMigrationStream(
  stream: Stream,
  vm: string,
  context: StreamContext,
  log: Logger,
  refuse: (code: string, message: string) => void,
): Promise<void> {
  const { peer, migrations } = context;
  const policy = context.policy();
  const qmpSocket = policy.vms.get(vm);
  if (qmpSocket === undefined) {
    refuse('unknown-vm', `VM '${vm.slice(0, 140)}' is not one the destination may migrate into (dest --vm NAME=QMP_SOCKET)`);
    return;
  }
  if (!isAllowed(policy.allow, vm, peer.identities)) {
    refuse('not-allowed', `client '${peer.identity}' is not allowed to migrate into VM '${vm}' (--allow ${vm}=…)`);
    return;
  }
  if (migrations.busy.has(vm)) {
    refuse('vm-busy', `a migration into VM '${vm}' is already under way`);
    return;
  }
  migrations.busy.add(vm);
  try {
    stream.write(encodeMessage({ ok: true }));
    log.info({ vm, qmp: qmpSocket }, 'migration channel opened');
    const host = {
      addRoutes(routes: ReadonlyMap<string, string>) {
        for (const [name, path] of routes) migrations.sessionRoutes.set(name, path);
        return () => {
          for (const name of routes.keys()) migrations.sessionRoutes.delete(name);
        };
      },
    };
    await serveMigration(stream, new MigrationTarget(vm, qmpSocket), host, log.child({ vm }));
  } finally {
    migrations.busy.delete(vm);
  }
}
