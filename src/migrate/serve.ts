// The destination's end of a migration channel: reads the source's typed requests and runs
// them on the VM's MigrationTarget, one at a time. A channel that ends before "finish" (the
// source failed, was interrupted, or lost its session) undoes what "prepare" did.
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.js';
import { LineChannel } from './line-channel.js';
import { MIGRATION_ROUTES, parseControlRequest, type ControlReply, type ControlRequest } from './protocol.js';
import type { MigrationTarget } from './target.js';

/** What the channel needs of the destination: routes that only this session's streams can open. */
export interface MigrationHost {
  /** Adds routes for the session; returns their removal. */
  addRoutes(routes: ReadonlyMap<string, string>): () => void;
}

export async function serveMigration(stream: Duplex, target: MigrationTarget, host: MigrationHost, log: Logger): Promise<void> {
  const channel = new LineChannel(stream);
  // Set by run(): the prepared routes' removal, and whether finish or abort has settled things.
  const state: { removeRoutes: (() => void) | null; settled: boolean } = { removeRoutes: null, settled: false };
  try {
    for (;;) {
      const message = await channel.next();
      if (message === null) break;
      let request: ControlRequest;
      try {
        request = parseControlRequest(message);
      } catch (error) {
        channel.send({ ok: false, error: (error as Error).message } satisfies ControlReply);
        continue;
      }
      const reply = await run(request);
      channel.send(reply);
      if ((request.op === 'finish' || request.op === 'abort') && reply.ok) break;
    }
  } finally {
    state.removeRoutes?.();
    if (!state.settled) {
      await target.abort();
      if (state.removeRoutes) log.warn({ reason: channel.error?.message ?? 'the migration channel closed before finish' }, 'migration undone');
    }
    await target.close();
    channel.close();
  }

  async function run(request: ControlRequest): Promise<ControlReply> {
    try {
      switch (request.op) {
        case 'prepare': {
          if (state.removeRoutes) return { ok: false, error: `a migration into VM '${target.vm}' is already prepared on this session` };
          const socket = await target.prepare(request.disks, request.ram);
          state.removeRoutes = host.addRoutes(new Map([[MIGRATION_ROUTES.nbd, socket]]));
          log.info({ disks: request.disks, ram: request.ram, socket }, 'migration prepared');
          return { ok: true, route: MIGRATION_ROUTES.nbd };
        }
        case 'ram': {
          if (!state.removeRoutes) return { ok: false, error: 'no migration prepared on this session' };
          const socket = await target.receiveRam();
          const removeRam = host.addRoutes(new Map([[MIGRATION_ROUTES.ram, socket]]));
          const removeDisks = state.removeRoutes;
          state.removeRoutes = () => (removeDisks(), removeRam());
          log.info({ socket }, 'migration receiving RAM');
          return { ok: true, route: MIGRATION_ROUTES.ram };
        }
        case 'finish': {
          const status = await target.finish();
          state.settled = true;
          log.info({ status }, 'migration finished');
          return { ok: true, status };
        }
        case 'abort':
          await target.abort();
          state.settled = true;
          log.warn({ reason: 'the source aborted' }, 'migration undone');
          return { ok: true };
      }
    } catch (error) {
      const message = (error as Error).message;
      log.warn({ op: request.op, reason: message }, 'migration request failed');
      if (request.op === 'prepare') await target.abort(); // a half-done prepare leaves nothing behind
      return { ok: false, error: message };
    }
  }
}
