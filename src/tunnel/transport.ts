// The byte pipe a session runs over: a WebSocket in production, memory in unit tests.

export interface TransportHandlers {
  data(chunk: Buffer): void;
  /** The write buffer fell back below its high-water mark. */
  drain(): void;
  /** The transport is gone; `reason` says why. */
  close(reason: Error): void;
}

export interface Transport {
  /** Queues bytes in order. The buffer must not be modified afterwards. */
  send(chunk: Buffer): void;
  /** True while more than the high-water mark is queued: stop producing until drain. */
  readonly congested: boolean;
  attach(handlers: TransportHandlers): void;
  /** Closes; where the transport can tell, the promise settles once it is gone (bytes sent before included). */
  close(reason: Error): void | Promise<void>;
}
