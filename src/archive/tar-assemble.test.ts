import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { planRanges } from '../core/index.ts';
import { assembleTar, assembledSize, catalogEntries, catalogPayloadRanges, encodeCatalog, parseTar, type CatalogEntry, type PayloadChunk } from './index.ts';
import { headerLength, padding } from './tar-format.ts';

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const p of stream) pieces.push(Buffer.from(p));
  return Buffer.concat(pieces);
}

/** Payload chunks of `payload` cut at `ends`, in the order `planRanges` gives for the catalog's ranges. */
async function* planned(payload: Buffer, ends: number[], catalog: string, fetched: number[] = []): AsyncGenerator<PayloadChunk> {
  for (const index of planRanges(ends, catalogPayloadRanges(catalog)).order) {
    fetched.push(index);
    // A buffer of its own, as a decoded chunk is (it is freed after its last use).
    yield { index, data: Buffer.from(payload.subarray(index === 0 ? 0 : ends[index - 1], ends[index])) };
  }
}

/** The tar stream of a catalog's text and a payload cut at `ends`. */
function tarOf(catalog: string, payload: Buffer, ends: number[]): AsyncGenerator<Buffer> {
  return assembleTar(catalogEntries(catalog, ends, planned(payload, ends, catalog), 'test'));
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
      fc.integer({ min: 512, max: 30_000 }),
      async (paths, sizes, piece) => {
        const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7919) % 251));
        const files = paths.map((path, i) => {
          const size = sizes[i] as number;
          // Offsets anywhere in the payload, going back and overlapping.
          return size > 0 ? { path, type: 'file' as const, size, data: (i * 9973) % (payload.length - size) } : { path, type: 'file' as const };
        });
        const entries = layout([{ path: 'dir', type: 'dir' }, ...files, { path: 'sym', type: 'symlink', link: paths[0] as string }]);
        const ends: number[] = [];
        for (let at = piece; at < payload.length; at += piece) ends.push(at);
        ends.push(payload.length);
        const catalog = encodeCatalog(entries).toString();
        const tar = await collect(tarOf(catalog, payload, ends));
        assert.equal(tar.length, assembledSize(catalog));
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

test('a damaged catalog entry fails with CORRUPT, naming the entry, before a wrong byte of it is out', async () => {
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
    const catalog = encodeCatalog([bad]).toString();
    await assert.rejects(collect(assembleTar(catalogEntries(catalog, [100], planned(payload, [100], catalog), 'cat'))), { name: 'IbsError', code: 'CORRUPT', message }, what);
  }
});

test('catalog entries come with their contents sliced from chunks fetched once each, whatever order the contents lie in', async () => {
  const payload = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 31) % 256));
  const ends = [7000, 15000, 30000, 31000, 50000];
  // Contents going back and forth across chunks, some spanning several.
  const files = [
    { path: 'a', type: 'file' as const, size: 2000, data: 40_000 },
    { path: 'b', type: 'file' as const, size: 100, data: 100 },
    { path: 'c', type: 'file' as const, size: 20_000, data: 6_000 },
    { path: 'd', type: 'file' as const, size: 500, data: 41_000 },
    { path: 'e', type: 'file' as const, size: 0 },
    { path: 'f', type: 'file' as const, size: 300, data: 200 },
  ];
  const catalog = encodeCatalog(layout([{ path: 'dir', type: 'dir' }, ...files])).toString();
  const fetched: number[] = [];
  const seen: Array<[string, Buffer]> = [];
  for await (const { entry, data } of catalogEntries(catalog, ends, planned(payload, ends, catalog, fetched), 'test')) {
    const parts: Buffer[] = [];
    for await (const d of data) parts.push(Buffer.from(d));
    seen.push([entry.path, Buffer.concat(parts)]);
  }
  assert.deepEqual(seen, [['dir', Buffer.alloc(0)], ...files.map((f) => [f.path, f.data !== undefined ? payload.subarray(f.data, f.data + f.size) : Buffer.alloc(0)] as [string, Buffer])]);
  assert.deepEqual(fetched, [4, 0, 1, 2], 'each chunk once, in the order first needed (chunk 3 holds no file)');
});

test('catalog entries: a damaged line or a missing chunk fails with CORRUPT', async () => {
  const payload = Buffer.alloc(10_000, 1);
  const ends = [5000, 10_000];
  const good = layout([{ path: 'a', type: 'file', size: 100, data: 6000 }]);
  const drain = async (catalog: string, chunks: AsyncIterator<PayloadChunk>): Promise<void> => {
    for await (const { data } of catalogEntries(catalog, ends, chunks, 'cat')) for await (const _ of data);
  };
  await assert.rejects(drain('{"path":', planned(payload, ends, '')), { code: 'CORRUPT', message: /Catalog cat: line 1 is not JSON/ });
  await assert.rejects(drain('{"path":"a"}', planned(payload, ends, '')), { code: 'CORRUPT', message: /Catalog cat: line 1 is malformed/ });
  // The plan says where the contents lie; a line whose parsed offset differs (a repeated key, say) is refused.
  const twice = encodeCatalog(good).toString().replace('"data":6000', '"data":6000,"data":6001');
  await assert.rejects(drain(twice, planned(payload, ends, twice)), { code: 'CORRUPT', message: /line 1 \("a"\) is damaged/ });
  const none = (async function* (): AsyncGenerator<PayloadChunk> {})();
  await assert.rejects(drain(encodeCatalog(good).toString(), none), { code: 'CORRUPT', message: /Payload of cat: chunk 1 is missing/ });
});
