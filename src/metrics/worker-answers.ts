// In a worker with --metrics: no port of its own; it answers the primary's questions instead.
import type { Answer, Ask, Topic, WorkerStatus } from './ipc.js';
import type { ProcessFigures } from './process-view.js';

/** Answers until the returned function is called. */
export function answerPrimary({ prom, registry, health }: ProcessFigures): () => void {
  const body = async (topic: Topic): Promise<unknown> => {
    if (topic === 'metrics') return prom.getMetricsAsJSON();
    if (topic === 'health') return health();
    const status: WorkerStatus = { health: health(), ...registry.status() };
    return status;
  };
  const onMessage = (message: Ask): void => {
    if (message?.type !== 'nbd-tunnel-metrics-ask') return;
    const reply = (fields: Pick<Answer, 'body' | 'error'>): void => {
      const answer: Answer = { type: 'nbd-tunnel-metrics-answer', id: message.id, ...fields };
      if (process.connected) process.send?.(answer);
    };
    body(message.topic).then(
      (value) => reply({ body: value }),
      (error: Error) => reply({ error: error.message }),
    );
  };
  process.on('message', onMessage);
  return () => process.off('message', onMessage);
}
