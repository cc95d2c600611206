import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CatalogIndex, encodeCatalog, type CatalogEntry } from './catalog.ts';

const entry = (path: string, start: number, end: number): CatalogEntry => ({ path, type: 'file', size: 0, mtime: 1, mode: 0o644, start, end, mtimeNs: 5, uid: 0, gid: 0 });

test('a catalog index finds every entry by path, whatever characters the path holds, and lists the payload ranges its files use', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.oneof(fc.string({ minLength: 1 }), fc.constantFrom('a","type":"dir', 'back\\slash', 'quote"d', 'x"size":9,"data":7', 'ünï/cödé', 'tab\there', 'nl\nhere')), { minLength: 1, maxLength: 30 }), (paths) => {
      const entries = paths.map((p, i) => ({ ...entry(p, i * 1024, i * 1024 + 1024), ...(i % 3 > 0 ? { size: i * 10, data: i * 1000 } : {}) }));
      const index = new CatalogIndex(encodeCatalog(entries));
      for (const e of entries) assert.deepEqual(index.get(e.path), e);
      assert.equal(index.get(`${paths[0]}-absent`), undefined);
      const ranges = [...index.payloadRanges()];
      const expected = entries.filter((e) => e.data !== undefined && e.size > 0).flatMap((e) => [e.data as number, (e.data as number) + e.size]);
      assert.deepEqual(ranges.sort((a, b) => a - b), expected.sort((a, b) => a - b));
    }),
    { numRuns: 200 },
  );
});

test('a catalog index leaves out lines that do not parse or lack a byte range', () => {
  const good = encodeCatalog([entry('kept', 0, 1024)]);
  const text = `${good.toString()}\n{"path":"broken","type":\n{"path":"norange","type":"file"}\nnot json\n{"path":"baddata","type":"file","size":1,"mtime":1,"mode":420,"start":0,"end":1024,"data":-5}`;
  const index = new CatalogIndex(Buffer.from(text));
  assert.equal(index.get('kept')?.end, 1024);
  assert.equal(index.get('broken'), undefined);
  assert.equal(index.get('norange'), undefined);
  assert.equal(index.get('baddata'), undefined);
  assert.deepEqual([...new CatalogIndex(Buffer.alloc(0)).payloadRanges()], []);
});
