import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { chunksInRange, decodeIndex, encodeDynamicIndex, encodeFixedIndex, indexChunks, indexSize } from './index-file.ts';
import { IbsError } from './errors.ts';

const digest = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'));
const dynamic = fc.array(fc.tuple(fc.integer({ min: 1, max: 1 << 20 }), digest), { maxLength: 60 }).map((parts) => {
  let end = 0;
  return parts.map(([size, d]) => ({ end: (end += size), digest: d }));
});

test('dynamic index round-trips and its spans tile the stream', () => {
  fc.assert(
    fc.property(dynamic, fc.nat(), (entries, ctime) => {
      const decoded = decodeIndex(encodeDynamicIndex({ ctime, entries }), 't');
      assert.equal(decoded.kind, 'dynamic');
      assert.deepEqual(decoded.kind === 'dynamic' && decoded.entries, entries);
      const spans = indexChunks(decoded);
      let pos = 0;
      for (const s of spans) {
        assert.equal(s.start, pos);
        pos = s.end;
      }
      assert.equal(pos, indexSize(decoded));
    }),
  );
});

test('fixed index round-trips for any size and chunk size', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 50_000_000 }), fc.integer({ min: 1 << 16, max: 1 << 23 }), fc.nat(), (size, chunkSize, ctime) => {
      const count = size === 0 ? 0 : Math.ceil(size / chunkSize);
      const digests = Array.from({ length: count }, (_, i) => i.toString(16).padStart(64, '0'));
      const decoded = decodeIndex(encodeFixedIndex({ ctime, size, chunkSize, digests }), 't');
      assert.deepEqual(decoded, { kind: 'fixed', ctime, size, chunkSize, digests });
      assert.equal(indexSize(decoded), size);
    }),
    { numRuns: 200 },
  );
});

test('chunksInRange returns exactly the chunks overlapping a range', () => {
  fc.assert(
    fc.property(dynamic.filter((e) => e.length > 0), fc.nat(), fc.nat(), (entries, a, b) => {
      const index = decodeIndex(encodeDynamicIndex({ ctime: 0, entries }), 't');
      const size = indexSize(index);
      const start = a % size;
      const end = start + (b % (size - start + 1));
      const expected = indexChunks(index).filter((s) => s.end > start && s.start < end);
      assert.deepEqual(chunksInRange(index, start, end), expected);
    }),
  );
});

test('a damaged index (any flipped byte) is refused as CORRUPT', () => {
  fc.assert(
    fc.property(dynamic.filter((e) => e.length > 0), fc.nat(), (entries, pos) => {
      const data = encodeDynamicIndex({ ctime: 5, entries });
      const i = 16 + (pos % (data.length - 16)); // ctime may change freely; everything after is checked
      data[i] = (data[i] as number) ^ 0x40;
      assert.throws(() => decodeIndex(data, 't'), (e) => e instanceof IbsError && e.code === 'CORRUPT');
    }),
  );
});
