// The destination's WebSocket frame reader and writer against RFC 6455 §5: client frames built
// here byte by byte from the RFC (masked with random and all-zero keys, fragmented, cut at any
// byte), and every frame the reader must refuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ProtocolError } from '../../src/tunnel/errors.js';
import {
  OPCODE_BINARY,
  OPCODE_CLOSE,
  OPCODE_CONTINUATION,
  OPCODE_PING,
  OPCODE_PONG,
  OPCODE_TEXT,
  WsFrameReader,
  encodeClosePayload,
  encodeFrameHeader,
} from '../../src/tunnel/ws-frame.js';

/** A client frame as §5.2 lays it out: masked unless `unmasked`. */
function clientFrame(opcode: number, payload: Buffer, options: { fin?: boolean; key?: Buffer; unmasked?: boolean; rsv?: number } = {}): Buffer {
  const fin = options.fin ?? true;
  const length = payload.length;
  const lengthBytes = length < 126 ? [length] : length < 0x10000 ? [126, length >> 8, length & 0xff] : [127, 0, 0, 0, 0, (length >>> 24) & 0xff, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff];
  const key = options.unmasked ? Buffer.alloc(0) : (options.key ?? Buffer.from([0x37, 0xfa, 0x21, 0x3d]));
  lengthBytes[0] |= options.unmasked ? 0 : 0x80;
  const masked = Buffer.from(payload);
  for (let i = 0; i < masked.length && key.length > 0; i++) masked[i] ^= key[i % 4];
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | (options.rsv ?? 0) | opcode, ...lengthBytes]), key, masked]);
}

function reader(maxFrame = 1 << 20): { read: WsFrameReader; binary: Buffer[]; controls: Array<[number, string]> } {
  const binary: Buffer[] = [];
  const controls: Array<[number, string]> = [];
  const read = new WsFrameReader({ onBinary: (chunk) => binary.push(Buffer.from(chunk)), onControl: (opcode, payload) => controls.push([opcode, payload.toString('hex')]) }, maxFrame);
  return { read, binary, controls };
}

test('RFC 6455 §5.7 example: a masked "Hello" (as binary) and a masked ping', () => {
  const { read, binary, controls } = reader();
  // §5.7's masked "Hello" frame with the opcode changed from text to binary.
  read.push(Buffer.from([0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]));
  assert.equal(Buffer.concat(binary).toString(), 'Hello');
  read.push(clientFrame(OPCODE_PING, Buffer.from('Hello')));
  assert.deepEqual(controls, [[OPCODE_PING, Buffer.from('Hello').toString('hex')]]);
});

test('any messages, fragmented, masked or zero-masked, cut at any byte: the binary bytes come out in order, controls whole', () => {
  const message = fc.record({
    fragments: fc.array(fc.uint8Array({ minLength: 0, maxLength: 70_000 }), { minLength: 1, maxLength: 3 }),
    zeroKey: fc.boolean(),
    ping: fc.option(fc.uint8Array({ maxLength: 125 })),
  });
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 4 }), fc.array(fc.integer({ min: 1, max: 40_000 }), { minLength: 1, maxLength: 20 }), (messages, cuts) => {
      const wire: Buffer[] = [];
      const expectedControls: Array<[number, string]> = [];
      for (const m of messages) {
        m.fragments.forEach((fragment, i) => {
          const key = m.zeroKey ? Buffer.alloc(4) : Buffer.from([i + 1, 0x55, 0xaa, 0x0f]);
          wire.push(clientFrame(i === 0 ? OPCODE_BINARY : OPCODE_CONTINUATION, Buffer.from(fragment), { fin: i === m.fragments.length - 1, key }));
          // §5.4: control frames may come between the fragments of a message.
          if (m.ping && i === 0) {
            wire.push(clientFrame(OPCODE_PING, Buffer.from(m.ping)));
            expectedControls.push([OPCODE_PING, Buffer.from(m.ping).toString('hex')]);
          }
        });
      }
      const bytes = Buffer.concat(wire);
      const { read, binary, controls } = reader();
      let offset = 0;
      for (let i = 0; offset < bytes.length; i++) {
        const n = cuts[i % cuts.length];
        read.push(bytes.subarray(offset, offset + n));
        offset += n;
      }
      const expected = Buffer.concat(messages.flatMap((m) => m.fragments.map((f) => Buffer.from(f))));
      assert.ok(Buffer.concat(binary).equals(expected), 'binary payload differs');
      assert.deepEqual(controls, expectedControls);
    }),
    { numRuns: 150 },
  );
});

test('a zero-masked frame is passed on as views of the input: no copy', () => {
  const input = clientFrame(OPCODE_BINARY, Buffer.alloc(1000, 7), { key: Buffer.alloc(4) });
  const seen: Buffer[] = [];
  new WsFrameReader({ onBinary: (chunk) => seen.push(chunk), onControl: () => {} }, 1 << 20).push(input);
  assert.equal(seen.length, 1);
  assert.equal(seen[0].buffer, input.buffer, 'the payload is a view of the bytes read');
  assert.equal(seen[0].byteOffset, input.byteOffset + 2 + 2 + 4);
});

test('frames the reader refuses, each with its reason', () => {
  const cases: Array<[string, Buffer[], RegExp]> = [
    ['text', [clientFrame(OPCODE_TEXT, Buffer.from('hi'))], /^peer sent a text WebSocket message; only binary is allowed$/],
    ['unmasked', [clientFrame(OPCODE_BINARY, Buffer.from('hi'), { unmasked: true })], /^unmasked WebSocket frame from the client \(RFC 6455 §5\.1\)$/],
    ['rsv1 (compression not agreed)', [clientFrame(OPCODE_BINARY, Buffer.from('hi'), { rsv: 0x40 })], /RSV bits set/],
    ['fragmented ping', [clientFrame(OPCODE_PING, Buffer.from('hi'), { fin: false })], /fragmented or oversized WebSocket control frame/],
    ['oversized close', [clientFrame(OPCODE_CLOSE, Buffer.alloc(126))], /fragmented or oversized WebSocket control frame/],
    ['continuation first', [clientFrame(OPCODE_CONTINUATION, Buffer.from('hi'))], /^WebSocket continuation frame without a message$/],
    ['binary inside a message', [clientFrame(OPCODE_BINARY, Buffer.from('a'), { fin: false }), clientFrame(OPCODE_BINARY, Buffer.from('b'))], /^new WebSocket message before the last one ended$/],
    ['reserved opcode', [clientFrame(0x3, Buffer.from('hi'))], /^unknown WebSocket opcode 3$/],
    ['too large', [clientFrame(OPCODE_BINARY, Buffer.alloc(1025))], /^WebSocket frame of 1025 bytes exceeds the limit of 1024$/],
  ];
  for (const [name, frames, message] of cases) {
    const { read } = reader(1024);
    assert.throws(
      () => frames.forEach((f) => read.push(f)),
      (error: Error) => error instanceof ProtocolError && message.test(error.message),
      name,
    );
  }
});

test('server frames: unmasked, with the 7-bit, 16-bit and 64-bit length forms (§5.2)', () => {
  assert.deepEqual([...encodeFrameHeader(OPCODE_BINARY, 0)], [0x82, 0]);
  assert.deepEqual([...encodeFrameHeader(OPCODE_BINARY, 125)], [0x82, 125]);
  assert.deepEqual([...encodeFrameHeader(OPCODE_BINARY, 126)], [0x82, 126, 0, 126]);
  assert.deepEqual([...encodeFrameHeader(OPCODE_PONG, 65535)], [0x8a, 126, 0xff, 0xff]);
  assert.deepEqual([...encodeFrameHeader(OPCODE_BINARY, 65536)], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
  assert.deepEqual([...encodeFrameHeader(OPCODE_BINARY, 0x1_0000_0001)], [0x82, 127, 0, 0, 0, 1, 0, 0, 0, 1]);
  const close = encodeClosePayload(1002, 'x'.repeat(200));
  assert.equal(close.readUInt16BE(0), 1002);
  assert.equal(close.length, 125, 'a close reason is cut to 123 bytes');
});
