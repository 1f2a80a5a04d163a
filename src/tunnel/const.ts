// Wire format of the multiplexer: yamux, as in hashicorp/yamux spec.md.
// Every frame starts with a 12-byte big-endian header:
//   Version (8) | Type (8) | Flags (16) | StreamID (32) | Length (32)
// Only Data frames carry a payload (Length bytes of it); for the other types
// Length is a value: the window delta, the ping's opaque value, or the GoAway code.

export const PROTO_VERSION = 0; // spec: "always set to 0"
export const HEADER_LENGTH = 12;

// spec "Type Field"
export const TYPE_DATA = 0x0;
export const TYPE_WINDOW_UPDATE = 0x1;
export const TYPE_PING = 0x2;
export const TYPE_GO_AWAY = 0x3;

// spec "Flag Field"
export const FLAG_SYN = 0x1; // opens a stream; on Ping: a request
export const FLAG_ACK = 0x2; // acknowledges an open; on Ping: the response
export const FLAG_FIN = 0x4; // half-close: the sender will send no more data
export const FLAG_RST = 0x8; // resets the stream at once
// This implementation's extension, for receive-window tuning: a WindowUpdate with FLAG_GROW
// enlarges the window by its delta instead of returning credit (the sender's replay buffer must
// know the difference). It answers a WindowUpdate with delta 0 and no flags, by which a sender
// says it is waiting for credit: a no-op for any yamux, so only nbd-tunnel peers ever see GROW.
export const FLAG_GROW = 0x10;

// spec "Go Away": the error code travels in Length.
export const GO_AWAY_NORMAL = 0x0;
export const GO_AWAY_PROTO_ERR = 0x1;
export const GO_AWAY_INTERNAL_ERR = 0x2;

// spec "Flow Control": every stream starts with this much credit each way;
// larger windows are announced with a WindowUpdate sent with SYN or ACK.
export const INITIAL_STREAM_WINDOW = 256 * 1024;

// A RST is a WindowUpdate whose Length has no use in the spec; here it says why (0: no reason).
// Below RST_STREAM_LIMIT it is the errno of the socket error behind the reset; with that bit set
// the stream was refused because the session already had (Length & ~RST_STREAM_LIMIT) streams open.
export const RST_STREAM_LIMIT = 0x8000_0000;

export const SESSION_STREAM_ID = 0; // Ping and GoAway travel on stream 0
export const MAX_STREAM_ID = 0xffffffff;

export const TYPE_NAMES: Readonly<Record<number, string>> = {
  [TYPE_DATA]: 'Data',
  [TYPE_WINDOW_UPDATE]: 'WindowUpdate',
  [TYPE_PING]: 'Ping',
  [TYPE_GO_AWAY]: 'GoAway',
};

// Defaults of this implementation, not of the spec.
export const DEFAULT_STREAM_WINDOW = 16 * 1024 * 1024; // QEMU mirror: 16 x 1 MiB in flight per disk; the most a window grows to
/**
 * A stream's receive window starts here and doubles, up to --stream-window, when the sender
 * reports waiting for credit and a round trip carried half a window or more (Stream.onPeerWaiting):
 * a LAN copy holds about this much per stream, a WAN one grows to its bandwidth-delay product.
 */
export const DEFAULT_INITIAL_STREAM_WINDOW = 1024 * 1024;
export const DEFAULT_MAX_FRAME_PAYLOAD = 1024 * 1024; // larger writes are split
export const SMALL_FRAME_PAYLOAD = 16 * 1024; // up to this, header and payload travel as one message
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 5_000;
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_STREAMS = 256;
/**
 * Credit goes back in this many WindowUpdates per window (1 MiB each by default): few frames,
 * and the sender's replay buffer is released soon after the bytes are read (measured: a
 * quarter window cost resumable sessions about 8% of one-disk throughput).
 */
export const CREDIT_BATCHES = 16;

// The tunnel around the multiplexer (DESIGN.md "Wire protocol, version 1").
export const SUBPROTOCOL = 'nbd-tunnel.v1';
export const OPEN_MESSAGE_MAX = 4096; // open request / reply JSON, bytes
export const OPEN_TIMEOUT_MS = 10_000;
export const UPGRADE_TIMEOUT_MS = 10_000; // TLS handshake + WebSocket upgrade
export const TRANSPORT_HIGH_WATER_MARK = 2 * 1024 * 1024; // queued bytes before streams pause
/** Buffering of the local UNIX sockets and of streams: a whole 1 MiB NBD write fits, no pause per 64 KiB chunk. */
export const LOCAL_HIGH_WATER_MARK = 1024 * 1024;
/** A route name, the same on both sides; never used as a path. */
export const ROUTE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
