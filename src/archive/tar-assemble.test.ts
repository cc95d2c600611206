import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { assembleTar, assembledSize, parseTar, type CatalogEntry } from './index.ts';
import { headerLength, padding } from './tar-format.ts';

/** Reads ranges of an in-memory payload, in pieces of at most `piece` bytes. */
function reader(payload: Buffer, piece = 1 << 20) {
  return async function* (ranges: Array<{ start: number; end: number }>): AsyncGenerator<Uint8Array> {
    for (const r of ranges) for (let at = r.start; at < r.end; at += piece) yield payload.subarray(at, Math.min(r.end, at + piece));
  };
}

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const p of stream) pieces.push(Buffer.from(p));
  return Buffer.concat(pieces);
}

/** Catalog entries for the given files (path, contents at an offset of `payload`), laid out one after another. */
function layout(files: Array<{ path: string; type: CatalogEntry['type']; data?: number; size?: number; link?: string }>): CatalogEntry[] {
  let offset = 0;
  return files.map((f) => {
    const size = f.size ?? 0;
    const base = { path: f.path, type: f.type, size, mtime: 1_700_000_000, mtimeNs: 123, mode: f.type === 'dir' ? 0o755 : 0o644, uid: 1000, gid: 1000, ...(f.link !== undefined ? { link: f.link } : {}) };
    const length = headerLength({ ...base, linkname: f.link ?? '' }) + (f.type === 'file' ? size + padding(size) : 0);
    const e: CatalogEntry = { ...base, start: offset, end: offset + length, ...(f.data !== undefined ? { data: f.data } : {}) };
    offset += length;
    return e;
  });
}

test('the tar stream made of a catalog and a payload holds every entry with its contents, read from anywhere in the payload, and GNU tar lists it', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.uniqueArray(fc.stringMatching(/^[a-z0-9_]{1,12}(\/[a-zé0-9_]{1,120})?$/), { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat({ max: 5000 }), { minLength: 12, maxLength: 12 }),
      fc.integer({ min: 1, max: 4096 }),
      async (paths, sizes, piece) => {
        const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7919) % 251));
        const files = paths.map((path, i) => {
          const size = sizes[i] as number;
          // Offsets anywhere in the payload, going back and overlapping.
          return size > 0 ? { path, type: 'file' as const, size, data: (i * 9973) % (payload.length - size) } : { path, type: 'file' as const };
        });
        const entries = layout([{ path: 'dir', type: 'dir' }, ...files, { path: 'sym', type: 'symlink', link: paths[0] as string }]);
        const tar = await collect(assembleTar(entries, reader(payload, piece), 'test'));
        assert.equal(tar.length, assembledSize(entries));
        const seen: Array<[string, Buffer]> = [];
        for await (const { entry, data } of parseTar((async function* () {
          yield tar;
        })())) {
          const parts: Buffer[] = [];
          for await (const d of data) parts.push(d);
          seen.push([entry.path, Buffer.concat(parts)]);
        }
        assert.deepEqual(
          seen,
          entries.map((e) => [e.type === 'dir' ? `${e.path}` : e.path, e.data !== undefined ? payload.subarray(e.data, e.data + e.size) : Buffer.alloc(0)]),
        );
        const listed = spawnSync('tar', ['-tf', '-'], { input: tar, encoding: 'utf8' });
        assert.equal(listed.status, 0, listed.stderr);
        assert.deepEqual(listed.stdout.trim().split('\n'), entries.map((e) => (e.type === 'dir' ? `${e.path}/` : e.path)));
      },
    ),
    { numRuns: 60 },
  );
});

test('a damaged catalog or a short payload fails with CORRUPT, naming the entry, before a wrong byte of it is out', async () => {
  const payload = Buffer.alloc(100, 7);
  const good = layout([{ path: 'a', type: 'file', size: 10, data: 0 }]);
  const e = good[0] as CatalogEntry;
  const cases: Array<[string, CatalogEntry, RegExp]> = [
    ['no payload offset', { ...e, data: undefined } as CatalogEntry, /"a" has contents but no payload offset/],
    ['wrong length', { ...e, end: e.end + 512 }, /"a" spans 2560 bytes of the tar stream, its header and contents 2048/],
    ['unknown type', { ...e, type: 'fifo' as CatalogEntry['type'] }, /"a" has an unknown type "fifo"/],
    ['no mode', { ...e, mode: undefined as unknown as number }, /"a" has no valid mode/],
    ['directory with a size', { ...e, type: 'dir', data: undefined }, /"a" is a dir with a size/],
    ['symlink without target', { ...e, type: 'symlink', size: 0, data: undefined }, /"a" has no link target/],
  ];
  for (const [what, bad, message] of cases) {
    await assert.rejects(collect(assembleTar([bad], reader(payload), 'cat')), { name: 'IbsError', code: 'CORRUPT', message }, what);
  }
  const short = async function* (): AsyncGenerator<Uint8Array> {
    yield payload.subarray(0, 4);
  };
  await assert.rejects(collect(assembleTar(good, short, 'cat')), { code: 'CORRUPT', message: /Payload of cat ends before the contents of "a"/ });
});
