import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Chunker } from '../datastore/index.ts';
import { planRanges } from '../core/index.ts';
import { assembleTar, CatalogIndex, catalogEntries, catalogPayloadRanges, createArchiveStream, createArchiveStreamInWorker, decodeCatalog, parseTar, type CatalogEntry, type PayloadChunk, type PayloadPiece } from './index.ts';

/** Runs `fn` in a new temporary directory, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ibs-tar-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A payload as a writer stores it: its bytes, its chunk ends, and how many of its bytes were new. */
interface Stored {
  payload: Buffer;
  ends: number[];
  catalog: Buffer;
  newBytes: number;
  reusePieces: number;
}

/**
 * Stores a payload stream as the snapshot writer does: new bytes are cut by a (small) content-defined chunker,
 * cut short where previous chunks are taken over, which must be whole chunks of `previous`.
 */
async function store(stream: AsyncIterable<PayloadPiece> | Iterable<PayloadPiece>, catalog: () => Buffer[], previous?: Stored): Promise<Stored> {
  const chunker = new Chunker({ min: 256, avg: 1024, max: 4096 });
  const parts: Buffer[] = [];
  const ends: number[] = [];
  let size = 0;
  let newBytes = 0;
  let reusePieces = 0;
  const add = (chunk: Buffer): void => {
    parts.push(Buffer.from(chunk));
    size += chunk.length;
    ends.push(size);
  };
  for await (const piece of stream) {
    if (Buffer.isBuffer(piece)) {
      newBytes += piece.length;
      for (const chunk of chunker.push(piece)) add(chunk);
      continue;
    }
    assert.ok(previous, 'chunks taken over only with a previous payload');
    reusePieces++;
    const cut = chunker.finish();
    if (cut) add(cut);
    const { start, end } = piece.reuse;
    assert.ok(start === 0 || previous.ends.includes(start), `reuse starts at a chunk boundary: ${start}`);
    assert.ok(previous.ends.includes(end), `reuse ends at a chunk boundary: ${end}`);
    for (let at = start; at < end; ) {
      const next = previous.ends.find((e) => e > at) as number;
      add(previous.payload.subarray(at, next));
      at = next;
    }
  }
  const last = chunker.finish();
  if (last) add(last);
  return { payload: Buffer.concat(parts), ends, catalog: Buffer.concat(catalog()), newBytes, reusePieces };
}

/** Backs up `dir` (on a thread of its own, as a backup does) against `previous`, stored as a writer would. */
async function backupOf(dir: string, previous?: Stored, warnings: string[] = []): Promise<Stored & { entries: CatalogEntry[] }> {
  const { stream, result } = createArchiveStreamInWorker(dir, { onWarning: (w) => warnings.push(w), previous: previous ? { catalog: previous.catalog, payloadChunkEnds: previous.ends } : undefined });
  const stored = await store(stream, () => result.catalog.pieces(), previous);
  return { ...stored, entries: decodeCatalog(stored.catalog, 'test') };
}

/** The tar stream of a stored archive, as a restore makes it. */
async function tarOf(stored: Stored): Promise<Buffer> {
  const catalog = stored.catalog.toString();
  const order = planRanges(stored.ends, catalogPayloadRanges(catalog)).order;
  const chunks = (async function* (): AsyncGenerator<PayloadChunk> {
    for (const index of order) yield { index, data: Buffer.from(stored.payload.subarray(index === 0 ? 0 : stored.ends[index - 1], stored.ends[index])) };
  })();
  const pieces: Buffer[] = [];
  for await (const piece of assembleTar(catalogEntries(catalog, stored.ends, chunks, 'test'))) pieces.push(piece);
  return Buffer.concat(pieces);
}

/** Checks that each regular file's contents lie in the payload at the offset its catalog entry gives. */
function assertPayloadHolds(dir: string, stored: Stored & { entries: CatalogEntry[] }): void {
  for (const e of stored.entries) {
    if (e.type !== 'file') continue;
    const want = readFileSync(join(dir, e.path));
    assert.equal(e.size, want.length, e.path);
    if (e.size === 0) assert.equal(e.data, undefined);
    else assert.deepEqual(stored.payload.subarray(e.data as number, (e.data as number) + e.size), want, `contents of ${e.path} at ${e.data}`);
  }
}

/**
 * Archives `dir` (on a thread of its own, as a backup does) and returns the warnings and, per file, the archived
 * bytes of the tar stream a restore makes (GNU tar reads the same stream).
 */
async function archive(dir: string): Promise<{ warnings: string[]; files: Map<string, Buffer>; tar: Buffer }> {
  const warnings: string[] = [];
  const tar = await tarOf(await backupOf(dir, undefined, warnings));
  const files = new Map<string, Buffer>();
  for await (const { entry, data } of parseTar((async function* () {
    yield tar;
  })())) {
    const parts: Buffer[] = [];
    for await (const d of data) parts.push(d);
    if (entry.type === 'file') files.set(entry.path, Buffer.concat(parts));
  }
  return { warnings, files, tar };
}

// Kernel files whose stat-ed size is not what a read gives: the archive keeps each header's size consistent.
const sysfs = '/sys/kernel/mm/transparent_hugepage';
test('files that give fewer bytes than their stat-ed size are padded with zeros, with a warning', { skip: !existsSync(join(sysfs, 'enabled')) && 'no sysfs here' }, async () => {
  const { warnings, files, tar } = await archive(sysfs);
  const name = 'enabled';
  const stated = statSync(join(sysfs, name)).size;
  const content = readFileSync(join(sysfs, name));
  assert.ok(content.length < stated, `${name}: ${content.length} bytes read of ${stated} stat-ed`);
  const archived = files.get(name) as Buffer;
  assert.equal(archived.length, stated);
  assert.deepEqual(archived.subarray(0, content.length), content);
  assert.ok(archived.subarray(content.length).every((b) => b === 0), 'the rest is zeros');
  assert.ok(warnings.some((w) => w.startsWith(`${name}: file shrank while being read; padded with zeros to ${stated} bytes`)), warnings.join('\n'));
  const listed = spawnSync('tar', ['-tvf', '-'], { input: tar, encoding: 'utf8' });
  assert.equal(listed.status, 0, listed.stderr);
  assert.match(listed.stdout, new RegExp(`${stated} .* ${name}\\n`));
});

const procfs = '/proc/sys/kernel';
test('files that give more bytes than their stat-ed size are cut at that size, with a warning', { skip: !existsSync(join(procfs, 'ostype')) && 'no procfs here' }, async () => {
  // Only a few entries: a copy of the directory would take its many unreadable files too.
  const { warnings, files } = await archive(join(procfs, 'random'));
  const name = readdirSync(join(procfs, 'random')).find((n) => statSync(join(procfs, 'random', n)).size === 0 && readFileSync(join(procfs, 'random', n)).length > 0);
  assert.ok(name, 'a procfs file stat-ed empty that has content');
  assert.equal(files.get(name)?.length, 0);
  assert.ok(warnings.some((w) => w === `${name}: file grew while being read; archived its first 0 bytes`), warnings.join('\n'));
});

test('records are padded with zeros to whole blocks, so that the same tree always gives the same stream', async () => {
  await inTempDir(async (dir) => {
    writeFileSync(join(dir, 'a'), 'x');
    // And one with a whole-second mtime: its header is a plain 512-byte ustar block (no pax record), a buffer of
    // its own that is copied into the file's record and freed.
    writeFileSync(join(dir, 'b'), 'y');
    utimesSync(join(dir, 'b'), 1_700_000_000, 1_700_000_000);
    // Leave non-zero bytes in the buffer pool that small reads are carved from.
    for (let i = 0; i < 64; i++) Buffer.allocUnsafe(2048).fill(0xff);
    const first = await archive(dir);
    assert.deepEqual([...first.files.keys()], ['a', 'b']);
    assert.equal(first.files.get('b')?.toString(), 'y');
    const x = first.tar.lastIndexOf('y');
    assert.ok(x > 0 && first.tar.subarray(x + 1).every((b) => b === 0), 'padding and end of archive are zeros');
    assert.equal(first.tar.length % 512, 0);
    for (let i = 0; i < 64; i++) Buffer.allocUnsafe(2048).fill(0xee);
    assert.deepEqual((await archive(dir)).tar, first.tar);
  });
});

test('on its own thread, the payload, catalog, counts and warnings are those of the same stream made here, with and without a previous snapshot', async () => {
  await inTempDir(async (dir) => {
    for (let i = 0; i < 300; i++) writeFileSync(join(dir, `small-${i}`), randomBytes(i * 37));
    mkdirSync(join(dir, 'sub', 'empty'), { recursive: true });
    // Larger than a batch (2 MiB) and than a read block (1 MiB), not a multiple of either.
    writeFileSync(join(dir, 'sub', 'large'), randomBytes(9 * 1024 * 1024 + 123));
    linkSync(join(dir, 'sub', 'large'), join(dir, 'sub', 'hard'));
    symlinkSync('sub/large', join(dir, 'link'));
    const here = createArchiveStream(dir);
    const expected = await store(here.stream, () => here.result.catalog.pieces());
    const first = await backupOf(dir);
    assert.deepEqual([first.payload, first.catalog], [expected.payload, expected.catalog]);
    assertPayloadHolds(dir, first);

    writeFileSync(join(dir, 'small-150'), 'changed');
    const previous = { catalog: first.catalog, payloadChunkEnds: first.ends };
    const made = createArchiveStream(dir, { previous: { ...previous, catalog: new CatalogIndex(first.catalog) } });
    const again = await store(made.stream, () => made.result.catalog.pieces(), first);
    let progress = 0;
    const warnings: string[] = [];
    const there = createArchiveStreamInWorker(dir, { previous, onWarning: (w) => warnings.push(w), onBytes: (n) => (progress += n) });
    const got = await store(there.stream, () => there.result.catalog.pieces(), first);
    assert.deepEqual([got.payload, got.catalog, got.newBytes], [again.payload, again.catalog, again.newBytes]);
    assert.equal(got.newBytes, 'changed'.length, 'only the changed file is read');
    assert.equal(progress, there.result.bytes);
    assert.deepEqual(warnings, []);
    assertPayloadHolds(dir, { ...got, entries: decodeCatalog(got.catalog, 'test') });

    // A damaged previous catalog costs speed only: everything is read again.
    const damaged = await backupOf(dir, { ...first, catalog: Buffer.from('{"path": ') });
    assert.equal(damaged.reusePieces, 0);
    assert.deepEqual(damaged.payload, (await backupOf(dir)).payload);
  });
});

test('change detection: an unchanged tree takes over every chunk in place, generation after generation of edits; each payload holds every file where its catalog says', async () => {
  await inTempDir(async (dir) => {
    for (let d = 0; d < 4; d++) {
      mkdirSync(join(dir, `d${d}`));
      for (let f = 0; f < 30; f++) writeFileSync(join(dir, `d${d}`, `f${f}`), randomBytes(50 + ((d * 30 + f) * 211) % 3000));
    }
    writeFileSync(join(dir, 'big'), randomBytes(40_000));
    let previous = await backupOf(dir);
    assertPayloadHolds(dir, previous);
    for (let g = 0; g < 8; g++) {
      // Edits: rewrite, append, delete, add; every other generation changes nothing.
      if (g % 2 === 1) {
        for (let k = 0; k < 4; k++) {
          const d = Math.floor(Math.random() * 4);
          const f = Math.floor(Math.random() * 30);
          const path = join(dir, `d${d}`, `f${f}`);
          if (k === 0) writeFileSync(path, randomBytes(500));
          else if (k === 1 && existsSync(path)) writeFileSync(path, 'appended', { flag: 'a' });
          else if (k === 2) rmSync(path, { force: true });
          else writeFileSync(join(dir, `d${d}`, `new-${g}`), randomBytes(300));
        }
      }
      const next = await backupOf(dir, previous);
      assertPayloadHolds(dir, next);
      const tar = await tarOf(next);
      const listed = spawnSync('tar', ['-df', '-', '-C', dir], { input: tar, encoding: 'utf8' });
      assert.equal(listed.status, 0, `generation ${g}: GNU tar finds the tree as archived: ${listed.stdout}${listed.stderr}`);
      if (g % 2 === 1) assert.ok(next.newBytes < 6000, `generation ${g}: only changed files are read (${next.newBytes} bytes)`);
      else {
        // The first run after edits may read files again whose chunks now hold mostly old contents (with these
        // small chunks, one changed file can be most of one); a run after it changes nothing.
        const again = await backupOf(dir, next);
        assert.equal(again.newBytes, 0, `generation ${g}: an unchanged tree reads nothing`);
        assert.equal(again.reusePieces, 1, `generation ${g}: one run of chunks`);
        assert.deepEqual([again.payload, again.ends, again.catalog], [next.payload, next.ends, next.catalog], `generation ${g}: the same chunks in the same places, the same catalog`);
      }
      previous = next;
    }
  });
});

test('a previous chunk mostly holding old contents of changed files is not taken over again: its unchanged files are read again', async () => {
  await inTempDir(async (dir) => {
    // Forty files of 100 bytes: about ten in each chunk (the chunker cuts at about 1 KiB).
    const name = (f: number): string => join(dir, `f${String(f).padStart(2, '0')}`);
    for (let f = 0; f < 40; f++) writeFileSync(name(f), randomBytes(100));
    const first = await backupOf(dir);
    for (let f = 1; f < 40; f++) writeFileSync(name(f), randomBytes(100));
    // f00's chunk is taken over: the first backup's files fill it.
    const second = await backupOf(dir, first);
    assertPayloadHolds(dir, second);
    assert.equal(second.newBytes, 3900);
    assert.ok(second.payload.length > 4000, 'the chunk taken over holds the old contents of changed files');
    // Against the second backup, that chunk is mostly old contents: f00 is read again and the chunk dropped.
    const third = await backupOf(dir, second);
    assertPayloadHolds(dir, third);
    assert.equal(third.newBytes, 100);
    assert.equal(third.payload.length, 4000, 'the payload holds only the files');
    const fourth = await backupOf(dir, third);
    assert.equal(fourth.newBytes, 0);
  });
});
