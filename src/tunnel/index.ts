export { connectTunnel, resumeTunnel, sessionId, type ClientOptions } from './client.js';
export { Connector, type ConnectedSession } from './connector.js';
export { LOCAL_HIGH_WATER_MARK, OPEN_TIMEOUT_MS, DEFAULT_KEEPALIVE_INTERVAL_MS, DEFAULT_KEEPALIVE_TIMEOUT_MS, DEFAULT_MAX_STREAMS, DEFAULT_STREAM_WINDOW, INITIAL_STREAM_WINDOW, ROUTE_NAME, SUBPROTOCOL } from './const.js';
export { ConnectError, ProtocolError, StreamError, TunnelRefusedError } from './errors.js';
export { ProxyRefusedError, type HttpProxy } from './http-proxy.js';
export { chooseProxy, type ProxyChoice } from './proxy-choice.js';
export { replayMemory } from './replay-buffer.js';
export { isResumeRequest } from './resume-table.js';
export {
  encodeMessage,
  OpenRefusedError,
  openDeadlineMs,
  parseOpenReply,
  parseOpenRequest,
  readMessage,
  requestOpen,
  type OpenAccepted,
  type OpenReply,
  type OpenRequest,
  type ProbeFindings,
} from './open-request.js';
export { TunnelServer, type Admission, type PeerInfo, type ServerOptions, type ServerTls } from './server.js';
export { Session, type SessionOptions } from './session.js';
export { relay, type Tap } from './relay.js';
export { Stream } from './stream.js';
export { explainClientCertError, explainConnectError } from './tls-errors.js';
export type { Transport, TransportHandlers } from './transport.js';
