import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CatalogIndex, encodeCatalog, type CatalogEntry } from './catalog.ts';

const entry = (path: string, start: number, end: number): CatalogEntry => ({ path, type: 'file', size: 0, mtime: 1, mode: 0o644, start, end, mtimeNs: 5, uid: 0, gid: 0 });

test('a catalog index finds every entry by path, whatever characters the path holds, and knows where the last entry ends', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.oneof(fc.string({ minLength: 1 }), fc.constantFrom('a","type":"dir', 'back\\slash', 'quote"d', 'ünï/cödé', 'tab\there', 'nl\nhere')), { minLength: 1, maxLength: 30 }), (paths) => {
      const entries = paths.map((p, i) => entry(p, i * 1024, i * 1024 + 1024));
      const index = new CatalogIndex(encodeCatalog(entries));
      for (const e of entries) assert.deepEqual(index.get(e.path), e);
      assert.equal(index.get(`${paths[0]}-absent`), undefined);
      assert.equal(index.end, paths.length * 1024);
    }),
    { numRuns: 200 },
  );
});

test('a catalog index leaves out lines that do not parse or lack a byte range; an empty or damaged catalog ends at 0', () => {
  const good = encodeCatalog([entry('kept', 0, 1024)]);
  const text = `${good.toString()}\n{"path":"broken","type":\n{"path":"norange","type":"file"}\nnot json`;
  const index = new CatalogIndex(Buffer.from(text));
  assert.equal(index.get('kept')?.end, 1024);
  assert.equal(index.get('broken'), undefined);
  assert.equal(index.get('norange'), undefined);
  assert.equal(index.end, 0, 'the last line does not parse');
  assert.equal(new CatalogIndex(Buffer.alloc(0)).end, 0);
});
