import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IbsError } from '../core/index.ts';
import { FRAME_HEADER, encodeChunkFrames, parseChunkFrames } from './frames.ts';

const frame = fc.record({ digest: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex')), blob: fc.uint8Array({ maxLength: 300 }) });

/** `body` cut at the given points (as a server receives it, in pieces). */
function cut(body: Buffer, points: number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (body.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let last = 0;
  for (const p of [...at, body.length]) {
    pieces.push(body.subarray(last, p));
    last = p;
  }
  return pieces;
}

test('chunk frames parse the same from a whole body or from any pieces of it; a blob over several pieces is a buffer of its own', () => {
  fc.assert(
    fc.property(fc.array(frame, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (frames, points) => {
      const body = encodeChunkFrames(frames);
      const expected = frames.map((f) => ({ digest: f.digest, blob: Buffer.from(f.blob) }));
      assert.deepEqual(parseChunkFrames(body, 'batch'), expected);
      const parsed = parseChunkFrames(cut(body, points), 'batch');
      assert.deepEqual(parsed.map((f) => ({ digest: f.digest, blob: Buffer.from(f.blob) })), expected);
      for (const f of parsed) if (f.blob.buffer !== body.buffer) assert.equal(f.blob.byteLength, f.blob.buffer.byteLength, 'a gathered blob owns its whole buffer');
    }),
  );
});

test('a truncated chunk batch is refused, whole or in pieces, naming where', () => {
  fc.assert(
    fc.property(fc.array(frame, { minLength: 1, maxLength: 4 }), fc.nat(), fc.array(fc.nat(), { maxLength: 6 }), (frames, drop, points) => {
      const body = encodeChunkFrames(frames);
      const short = body.subarray(0, body.length - 1 - (drop % body.length));
      const refused = (e: unknown): boolean => e instanceof IbsError && e.code === 'INVALID_ARGUMENT' && /truncated frame header at byte|claims \d+ bytes beyond the body/.test(e.message);
      // A cut exactly at a frame boundary is a shorter valid batch.
      const boundaries = new Set<number>([0]);
      let pos = 0;
      for (const f of frames) boundaries.add((pos += FRAME_HEADER + f.blob.length));
      if (boundaries.has(short.length)) return;
      assert.throws(() => parseChunkFrames(short, 'batch'), refused);
      assert.throws(() => parseChunkFrames(cut(short, points), 'batch'), refused);
    }),
  );
});
