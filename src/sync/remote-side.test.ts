import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { batchBySize } from './remote-side.ts';

const MiB = 1024 * 1024;

test('chunk reads are batched by size: each batch within the byte and count limits (one oversized chunk alone), order kept', () => {
  const sizes = new Map([['a', 3 * MiB], ['b', 2 * MiB], ['c', 1 * MiB], ['d', 5 * MiB], ['e', 100]]);
  assert.deepEqual(batchBySize(['a', 'b', 'c', 'd', 'e'], (d) => sizes.get(d), 4 * MiB, 64), [['a'], ['b', 'c'], ['d'], ['e']]);
  // Unknown sizes count as 8 MiB: one per batch.
  assert.deepEqual(batchBySize(['x', 'y'], undefined, 4 * MiB, 64), [['x'], ['y']]);
  // Small chunks: the count limit.
  assert.deepEqual(batchBySize(['1', '2', '3', '4', '5'], () => 10, 4 * MiB, 2), [['1', '2'], ['3', '4'], ['5']]);
  fc.assert(
    fc.property(fc.array(fc.nat({ max: 9 * MiB }), { maxLength: 200 }), fc.integer({ min: 1, max: 70 }), (list, maxCount) => {
      const digests = list.map((_, i) => String(i));
      const batches = batchBySize(digests, (d) => list[Number(d)], 4 * MiB, maxCount);
      assert.deepEqual(batches.flat(), digests);
      for (const b of batches) {
        assert.ok(b.length >= 1 && b.length <= maxCount);
        const bytes = b.reduce((n, d) => n + (list[Number(d)] as number), 0);
        assert.ok(b.length === 1 || bytes <= 4 * MiB, `batch of ${b.length} holds ${bytes} bytes`);
      }
    }),
  );
});
