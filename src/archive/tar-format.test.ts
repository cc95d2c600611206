import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeHeader, headerLength, type TarEntry } from './tar-format.ts';

test('headerLength is the length of the encoded header, pax header or not', () => {
  const name = fc.oneof(fc.string({ minLength: 1, maxLength: 30 }), fc.string({ minLength: 90, maxLength: 300 }), fc.constantFrom('ü/ñ', 'a'.repeat(99), 'a'.repeat(100), 'b'.repeat(101)));
  fc.assert(
    fc.property(
      fc.record({
        path: name,
        type: fc.constantFrom<TarEntry['type']>('file', 'dir', 'symlink', 'hardlink'),
        mode: fc.integer({ min: 0, max: 0o7777 }),
        uid: fc.oneof(fc.integer({ min: 0, max: 70000 }), fc.constant(0o7777777 + 1)),
        gid: fc.oneof(fc.integer({ min: 0, max: 70000 }), fc.constant(2 ** 31)),
        size: fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.constant(0o77777777777 + 1)),
        mtime: fc.oneof(fc.integer({ min: 0, max: 2 ** 33 }), fc.constant(-5)),
        mtimeNs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 999_999_999 })),
        linkname: fc.oneof(fc.constant(''), name),
      }),
      (entry) => {
        assert.equal(headerLength(entry), encodeHeader(entry).length);
      },
    ),
    { numRuns: 500 },
  );
});
