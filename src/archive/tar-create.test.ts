import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { CatalogIndex, createTarStream, createTarStreamInWorker, decodeCatalog, encodeCatalog, parseTar, type TarPiece } from './index.ts';

/** Runs `fn` in a new temporary directory, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ibs-tar-'));
  try {
    await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function* bytes(stream: AsyncIterable<TarPiece>): AsyncGenerator<Uint8Array> {
  for await (const piece of stream) {
    if (!(piece instanceof Uint8Array)) throw new Error('no previous snapshot here: only bytes expected');
    yield piece;
  }
}

/**
 * Archives `dir` (on a thread of its own, as a backup does) and returns the warnings and, per file, the archived
 * bytes (GNU tar reads the same stream).
 */
async function archive(dir: string): Promise<{ warnings: string[]; files: Map<string, Buffer>; tar: Buffer }> {
  const warnings: string[] = [];
  const { stream } = createTarStreamInWorker(dir, { onWarning: (w) => warnings.push(w) });
  const pieces: Buffer[] = [];
  for await (const piece of bytes(stream)) pieces.push(Buffer.from(piece));
  const tar = Buffer.concat(pieces);
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

/** A stream as runs of bytes and references, adjacent bytes joined (how it is cut into pieces does not matter). */
async function runs(stream: AsyncIterable<TarPiece> | Iterable<TarPiece>): Promise<Array<Buffer | { copyFrom: { start: number; end: number } }>> {
  const out: Array<Buffer | { copyFrom: { start: number; end: number } }> = [];
  for await (const piece of stream) {
    const last = out.at(-1);
    if (!Buffer.isBuffer(piece)) out.push(piece);
    else if (Buffer.isBuffer(last)) out[out.length - 1] = Buffer.concat([last, piece]);
    else out.push(Buffer.from(piece));
  }
  return out;
}

test('on its own thread, the stream, catalog, counts and warnings are those of the same stream made here, with and without a previous catalog', async () => {
  await inTempDir(async (dir) => {
    for (let i = 0; i < 300; i++) writeFileSync(join(dir, `small-${i}`), randomBytes(i * 37));
    mkdirSync(join(dir, 'sub', 'empty'), { recursive: true });
    // Larger than a batch (2 MiB) and than a read block (1 MiB), not a multiple of either.
    writeFileSync(join(dir, 'sub', 'large'), randomBytes(9 * 1024 * 1024 + 123));
    linkSync(join(dir, 'sub', 'large'), join(dir, 'sub', 'hard'));
    symlinkSync('sub/large', join(dir, 'link'));
    const here = createTarStream(dir);
    const expected = await runs(here.stream);
    const there = createTarStreamInWorker(dir);
    assert.deepEqual(await runs(there.stream), expected);
    assert.deepEqual(Buffer.concat(there.result.catalog.pieces()), Buffer.concat(here.result.catalog.pieces()));
    assert.deepEqual([there.result.files, there.result.bytes, there.result.catalog.count], [here.result.files, here.result.bytes, here.result.catalog.count]);

    // A second run against the first's catalog: unchanged entries become references to the previous archive.
    const stored = Buffer.concat(here.result.catalog.pieces());
    writeFileSync(join(dir, 'small-150'), 'changed');
    const again = await runs(createTarStream(dir, { previous: new CatalogIndex(stored) }).stream);
    const warnings: string[] = [];
    let progress = 0;
    const changed = createTarStreamInWorker(dir, { previousCatalog: stored, onWarning: (w) => warnings.push(w), onBytes: (n) => (progress += n) });
    const got = await runs(changed.stream);
    assert.deepEqual(got, again);
    assert.ok(got.filter((p) => !Buffer.isBuffer(p)).length >= 2, 'references before and after the changed file');
    assert.ok(got.filter(Buffer.isBuffer).reduce((n, b) => n + b.length, 0) < 8192, 'only the changed file is read');
    assert.equal(progress, changed.result.bytes);
    assert.deepEqual(warnings, []);

    // A damaged previous catalog costs speed only: everything is read again.
    const damaged = createTarStreamInWorker(dir, { previousCatalog: Buffer.from('{"path": ') });
    const all = await runs(damaged.stream);
    assert.equal(all.length, 1);
    assert.deepEqual(all, await runs(createTarStream(dir).stream));
  });
});

test('on its own thread: a root that is not a directory fails with its error; an abort or a consumer that stops early ends the thread', async () => {
  await inTempDir(async (dir) => {
    writeFileSync(join(dir, 'file'), 'x');
    await assert.rejects(runs(createTarStreamInWorker(join(dir, 'file')).stream), { name: 'IbsError', code: 'INVALID_ARGUMENT', message: new RegExp(`Cannot back up ".*file" as a file archive: it is not a directory`) });
    await assert.rejects(runs(createTarStreamInWorker(join(dir, 'missing')).stream), { name: 'IbsError', code: 'NOT_FOUND' });
    for (let i = 0; i < 20; i++) writeFileSync(join(dir, `f${i}`), Buffer.alloc(1024 * 1024, i));
    const controller = new AbortController();
    const reason = new Error('stopped by the test');
    await assert.rejects(
      (async () => {
        for await (const piece of createTarStreamInWorker(dir, { signal: controller.signal }).stream) {
          assert.ok(Buffer.isBuffer(piece));
          controller.abort(reason);
        }
      })(),
      reason,
    );
    for await (const piece of createTarStreamInWorker(dir).stream) {
      assert.ok(Buffer.isBuffer(piece));
      break;
    }
    // Were a thread left running, it would hold the test process open and the run would time out.
  });
});

test('a previous record whose length is not whole header blocks plus the data is not taken over: the file is read again', async () => {
  await inTempDir(async (dir) => {
    writeFileSync(join(dir, 'a'), 'first file');
    writeFileSync(join(dir, 'b'), 'second file');
    const first = createTarStream(dir);
    const tar = Buffer.concat([...first.stream].map((p) => p as Buffer));
    const catalog = decodeCatalog(Buffer.concat(first.result.catalog.pieces()), 'test');
    assert.deepEqual((await runs(createTarStream(dir, { previous: new CatalogIndex(encodeCatalog(catalog)) }).stream)).map((p) => Buffer.isBuffer(p)), [false], 'an unchanged tree is one reference');
    // A damaged record for "b": 512 bytes short (no room left for its header).
    const damaged = catalog.map((e) => (e.path === 'b' ? { ...e, end: e.end - 512 } : e));
    const again = await runs(createTarStream(dir, { previous: new CatalogIndex(encodeCatalog(damaged)) }).stream);
    assert.ok(Buffer.isBuffer(again[1]) && again[1].includes('second file'), 'b is read again');
    assert.deepEqual(Buffer.concat(again.map((p) => (Buffer.isBuffer(p) ? p : tar.subarray(p.copyFrom.start, p.copyFrom.end)))), tar);
  });
});
