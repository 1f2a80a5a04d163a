// What an operator sees of one NBD stream: a line when it negotiates (export, size), a progress
// line at most every PROGRESS_INTERVAL_MS, each NBD error at warn, and the summary for the
// stream's closing line. A stream that is not NBD (a RAM migration route) says so once at debug.
import type { Logger } from 'pino';
import { NbdInspector, type NbdStreamStats } from './inspector.js';

export const PROGRESS_INTERVAL_MS = 10_000;

export interface NbdObserver {
  toDest(chunk: Buffer): void;
  toSource(chunk: Buffer): void;
  /** The inspector's view so far (allocates: for scrapes and status, not per chunk). */
  snapshot(): NbdStreamStats;
  /** Fields for the stream's closing line; stops the progress timer. */
  finish(): Record<string, unknown>;
  /** The local socket ended first: on the destination, an NBD server that leaves a client mid-session has failed. */
  localEnded(): Error | null;
}

/** `localIsServer`: the local socket is the NBD server (the destination's side). */
export function observeNbd(log: Logger, localIsServer: boolean): NbdObserver {
  let negotiated = false;
  let disconnected = false;
  const inspector = new NbdInspector({
    listener: {
      disconnect() {
        disconnected = true;
      },
      negotiated(info) {
        negotiated = true;
        log.info({ export: info.exportName, size: info.exportSize, structuredReplies: info.structuredReplies }, 'nbd export opened');
      },
      error(e) {
        log.warn({ type: e.type, offset: e.offset, length: e.length, errno: e.errno, message: e.message }, 'nbd error reply');
      },
      optionError(e) {
        log.debug({ option: e.option, reply: e.reply, message: e.message }, 'nbd option refused');
      },
      stopped(reason, notNbd) {
        if (notNbd) log.debug({ reason }, 'not an NBD stream; carried without inspection');
        else log.info({ reason }, 'nbd inspection stopped; bytes still pass');
      },
    },
  });
  const timer = setInterval(() => {
    if (!negotiated || !inspector.inspecting) return;
    const s = inspector.snapshot();
    log.info(
      {
        export: s.exportName,
        coveredPct: s.coverage ? Math.round(s.coverage.ratio * 1000) / 10 : null,
        writeMBps: Math.round(s.writeBytesPerSecond / 1e5) / 10,
        bytesToDest: s.bytesToDest,
      },
      'nbd progress',
    );
  }, PROGRESS_INTERVAL_MS);
  timer.unref();
  return {
    toDest: (chunk) => inspector.toDest(chunk),
    toSource: (chunk) => inspector.toSource(chunk),
    snapshot: () => inspector.snapshot(),
    localEnded() {
      // proto.md "Terminating the transmission phase": a soft disconnect is the client's (NBD_CMD_DISC); a server that drops it mid-session is a hard disconnect.
      if (!localIsServer || !negotiated || disconnected || !inspector.inspecting) return null;
      return Object.assign(new Error('ECONNRESET: the NBD server closed the connection while the client was still using it (no NBD_CMD_DISC): it stopped or failed'), {
        code: 'ECONNRESET',
      });
    },
    finish() {
      clearInterval(timer);
      if (!negotiated) return {};
      const s = inspector.snapshot();
      const seen = Object.entries(s.requests).filter(([, r]) => r.count > 0);
      return {
        export: s.exportName,
        size: s.exportSize,
        requests: Object.fromEntries(seen.map(([type, r]) => [type, r.count])),
        requestBytes: Object.fromEntries(seen.filter(([, r]) => r.bytes > 0).map(([type, r]) => [type, r.bytes])),
        nbdErrors: s.errors.total,
        coveredPct: s.coverage ? Math.round(s.coverage.ratio * 1000) / 10 : null,
      };
    },
  };
}
