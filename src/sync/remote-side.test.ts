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

test('listings carry snapshots that do not read only to a caller that asks; a server that does not know the question is asked again without it', async () => {
  const { encodeListing, decodeListing, RemoteSide } = await import('./remote-side.ts');
  const { IbsError } = await import('../core/index.ts');
  const ref = { ns: ['dmg'], type: 'host' as const, id: 'd1', time: Date.parse('2026-11-20T03:00:00Z') / 1000 };
  const listing = { namespaces: [['dmg']], snapshots: [], owners: new Map([['dmg\0host/d1', 'root@pam']]), damaged: [{ ref, reason: 'Manifest of dmg:host/d1/2026-11-20T03:00:00Z: not valid JSON' }] };
  assert.throws(() => encodeListing(listing), (e: unknown) => e instanceof IbsError && e.code === 'CORRUPT' && /not valid JSON/.test(e.message));
  const json = encodeListing(listing, { withDamaged: true });
  assert.deepEqual(json.damaged, [{ ns: 'dmg', snapshot: 'host/d1/2026-11-20T03:00:00Z', reason: 'Manifest of dmg:host/d1/2026-11-20T03:00:00Z: not valid JSON' }]);
  const back = decodeListing(JSON.parse(JSON.stringify(json)), 'remote r');
  assert.deepEqual(back.damaged, [{ ref, reason: 'remote r: Manifest of dmg:host/d1/2026-11-20T03:00:00Z: not valid JSON' }]);
  for (const bad of [{ damaged: 'x' }, { damaged: [{ ns: 'dmg', snapshot: 'host/d1/yesterday', reason: 'r' }] }, { damaged: [{ ns: 'dmg', snapshot: 'host/d1/2026-11-20T03:00:00Z' }] }]) {
    assert.throws(() => decodeListing({ ...json, ...bad }, 'remote r'), (e: unknown) => e instanceof IbsError && e.code === 'CORRUPT');
  }
  // A server from before: refuses the parameter, then answers without it.
  const asked: Array<Record<string, unknown>> = [];
  const client = {
    request: async (_method: string, _path: string, params: Record<string, unknown>) => {
      asked.push(params);
      if (params['with-damaged']) throw new IbsError('INVALID_ARGUMENT', 'with-damaged: unknown parameter; expected one of store, ns, max-depth');
      return { namespaces: [''], snapshots: [], owners: [] };
    },
  };
  const side = new RemoteSide(client as unknown as ConstructorParameters<typeof RemoteSide>[0], 'store', 'remote old');
  assert.deepEqual((await side.list([], undefined)).namespaces, [[]]);
  assert.deepEqual(asked.map((p) => p['with-damaged'] === true), [true, false]);
});
