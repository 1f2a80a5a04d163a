// Resumption, the part decided stream by stream: from the peer's state, which of its streams we
// never heard of, which of ours it no longer knows, and what each of ours sends again. The
// session keeps the phases, timers and the order of messages around it (session.ts).
import type { SessionState } from './resume-state.js';
import type { Stream } from './stream.js';

export interface ReconcileSide {
  /** Our streams by id. */
  readonly streams: ReadonlyMap<number, Stream>;
  /** The highest stream id the peer had opened when we last heard from it. */
  readonly highestPeerStreamId: number;
  isPeerStreamId(id: number): boolean;
  /** Creates a stream the peer opened while we could not hear it (its state announces it, no SYN/ACK). */
  acceptMissed(id: number): void;
}

/** Makes our stream table agree with the peer's: its streams we missed are created, ours it forgot are closed. */
export function reconcileStreams(side: ReconcileSide, peer: SessionState): void {
  const known = new Set(peer.streams.map((s) => s.id));
  const missed = peer.streams.filter((s) => side.isPeerStreamId(s.id) && !side.streams.has(s.id) && s.id > side.highestPeerStreamId);
  for (const { id } of missed.sort((a, b) => a.id - b.id)) side.acceptMissed(id);
  for (const stream of [...side.streams.values()]) {
    // Ours, opened after the peer's last news of us: it learns of the stream from our state or SYN.
    const unseenByPeer = !side.isPeerStreamId(stream.id) && stream.id > peer.highestPeerStreamId;
    if (!known.has(stream.id) && !unseenByPeer) stream.onPeerForgot();
  }
}

/** Each stream the peer knows continues from where the peer says it stands; returns the bytes sent again. */
export function resendToPeer(streams: ReadonlyMap<number, Stream>, peer: SessionState): number {
  let resent = 0;
  for (const state of peer.streams) resent += streams.get(state.id)?.applyPeerState(state) ?? 0;
  return resent;
}
