// Errors that carry a reason an operator can act on.

/** The peer broke the yamux protocol; the session is closed with GoAway(protocol error). */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

/** A stream ended abnormally: reset by the peer, refused, or its session went away. */
export class StreamError extends Error {
  override readonly name = 'StreamError';
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
  }
}

/** The tunnel could not be opened: `reason` says why in words, `code` is the socket's or TLS's. */
export class ConnectError extends Error {
  override readonly name = 'ConnectError';
  constructor(
    url: string,
    readonly reason: string,
    readonly code: string | undefined,
    options?: ErrorOptions,
  ) {
    super(`cannot connect to ${url}: ${reason}`, options);
  }
}

/** The destination answered the upgrade with an HTTP error instead of a WebSocket. */
export class TunnelRefusedError extends Error {
  override readonly name = 'TunnelRefusedError';
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}
