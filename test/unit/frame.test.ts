// Conformance of the frame layout with hashicorp/yamux spec.md, byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FLAG_ACK,
  FLAG_FIN,
  FLAG_RST,
  FLAG_SYN,
  TYPE_DATA,
  TYPE_GO_AWAY,
  TYPE_PING,
  TYPE_WINDOW_UPDATE,
} from '../../src/tunnel/const.js';
import { FrameDecoder, encodeHeader, type FrameSink } from '../../src/tunnel/frame.js';
import { ProtocolError } from '../../src/tunnel/errors.js';

test('header layout: version, type, flags (16 bit), stream id and length (32 bit), big-endian', () => {
  assert.deepEqual(
    [...encodeHeader(TYPE_WINDOW_UPDATE, FLAG_SYN | FLAG_FIN, 0x01020304, 0xa0b0c0d0)],
    [0x00, 0x01, 0x00, 0x05, 0x01, 0x02, 0x03, 0x04, 0xa0, 0xb0, 0xc0, 0xd0],
  );
  assert.deepEqual([...encodeHeader(TYPE_PING, FLAG_ACK, 0, 7)], [0, 2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7]);
  assert.deepEqual([...encodeHeader(TYPE_GO_AWAY, 0, 0, 1)], [0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual([...encodeHeader(TYPE_DATA, FLAG_RST, 0xffffffff, 0)], [0, 0, 0, 8, 255, 255, 255, 255, 0, 0, 0, 0]);
  assert.equal(FLAG_SYN, 1);
  assert.equal(FLAG_ACK, 2);
  assert.equal(FLAG_FIN, 4);
  assert.equal(FLAG_RST, 8);
});

type Frame = { type: number; flags: number; streamId: number; length: number; payload: Buffer };

function collector(): { sink: FrameSink; frames: Frame[] } {
  const frames: Frame[] = [];
  let current: Frame | null = null;
  let parts: Buffer[] = [];
  const sink: FrameSink = {
    onFrame(type, flags, streamId, length) {
      const frame = { type, flags, streamId, length, payload: Buffer.alloc(0) };
      if (type === TYPE_DATA) current = frame;
      else frames.push(frame);
    },
    onPayload(chunk) {
      parts.push(Buffer.from(chunk));
    },
    onDataEnd() {
      current!.payload = Buffer.concat(parts);
      frames.push(current!);
      current = null;
      parts = [];
    },
  };
  return { sink, frames };
}

const frameArb = fc.oneof(
  fc.record({
    type: fc.constant(TYPE_DATA),
    flags: fc.integer({ min: 0, max: 15 }),
    streamId: fc.integer({ min: 1, max: 0xffffffff }),
    payload: fc.uint8Array({ maxLength: 300 }),
  }),
  fc.record({
    type: fc.constantFrom(TYPE_WINDOW_UPDATE, TYPE_PING, TYPE_GO_AWAY),
    flags: fc.integer({ min: 0, max: 15 }),
    streamId: fc.integer({ min: 0, max: 0xffffffff }),
    value: fc.integer({ min: 0, max: 0xffffffff }),
  }),
);

test('decoder: any sequence of frames, cut at any points, decodes to the same frames', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 30 }), fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 200 }), (specs, cuts) => {
      const expected: Frame[] = specs.map((s) =>
        'payload' in s
          ? { type: s.type, flags: s.flags, streamId: s.streamId, length: s.payload.length, payload: Buffer.from(s.payload) }
          : { type: s.type, flags: s.flags, streamId: s.streamId, length: s.value, payload: Buffer.alloc(0) },
      );
      const wire = Buffer.concat(
        expected.flatMap((f) => [encodeHeader(f.type, f.flags, f.streamId, f.length), f.payload]),
      );
      const { sink, frames } = collector();
      const decoder = new FrameDecoder(sink);
      let offset = 0;
      for (const cut of cuts) {
        if (offset >= wire.length) break;
        decoder.push(wire.subarray(offset, offset + cut));
        offset += cut;
      }
      if (offset < wire.length) decoder.push(wire.subarray(offset));
      assert.deepEqual(frames, expected);
    }),
    { numRuns: 500 },
  );
});

test('decoder: a wrong version or an unknown type is a protocol error', () => {
  const { sink } = collector();
  assert.throws(() => new FrameDecoder(sink).push(Buffer.from([1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])), ProtocolError);
  assert.throws(() => new FrameDecoder(sink).push(Buffer.from([0, 4, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])), /unknown yamux frame type 4/);
});
