import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { decodeCatalog, encodeCatalog } from '../archive/index.ts';
import { parseSnapshot } from '../core/index.ts';
import { Datastore, SnapshotReader, SnapshotWriter } from '../datastore/index.ts';
import { resolvePaths, type DatastoreConfig } from '../config/index.ts';
import { silentReporter } from '../lib/index.ts';
import { MemoryBackend } from '../storage/memory/index.ts';
import type { ReadOptions, StorageBackend } from '../storage/index.ts';
import { createBackup, createDatastore, restoreBackup, verifyStore } from './index.ts';
import { configStores, type AppContext } from './context.ts';

/** A memory backend that counts chunk reads and is never closed for real (it outlives each command). */
class CountingBackend extends MemoryBackend {
  chunkReads = 0;
  override async read(key: string, options?: ReadOptions): Promise<Buffer> {
    if (key.startsWith('.chunks/')) this.chunkReads++;
    return super.read(key, options);
  }
  override async close(): Promise<void> {}
}

async function context(): Promise<{ ctx: AppContext; backend: CountingBackend; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-app-'));
  const backend = new CountingBackend();
  const paths = resolvePaths({ IRONCORE_HOME: dir });
  const ctx: AppContext = {
    ...configStores(paths),
    openBackend: (_config: DatastoreConfig): StorageBackend => backend,
    authId: 'test@pam',
    reporter: silentReporter,
  };
  return { ctx, backend, dir };
}

/** Runs `fn` with a fresh context (app context over a counting memory backend, a temporary directory), then removes the directory. */
async function inContext(fn: (c: { ctx: AppContext; backend: CountingBackend; dir: string }) => Promise<void>): Promise<void> {
  const c = await context();
  try {
    await fn(c);
  } finally {
    await rm(c.dir, { recursive: true, force: true });
  }
}

test('restore --path reads only the chunks that hold the selected entries', async () => {
  await inContext(async ({ ctx, backend, dir }) => {
    const src = join(dir, 'src');
    for (let i = 0; i < 8; i++) {
      await mkdir(join(src, `d${i}`), { recursive: true });
      await writeFile(join(src, `d${i}`, 'data.bin'), randomBytes(3 * 1024 * 1024));
    }
    await writeFile(join(src, 'd3', 'small.txt'), 'small');
    await createDatastore(ctx, { name: 'store1', path: join(dir, 'unused') });
    const backup = await createBackup(ctx, { store: 'store1', type: 'host', id: 'h', time: '2026-01-01T00:00:00Z', archives: [`root.tar:${src}`] });
    const total = backup.archives[0]!.chunks;
    backend.chunkReads = 0;
    await restoreBackup(ctx, { store: 'store1', snapshot: 'host/h/2026-01-01T00:00:00Z', archive: 'root.tar', target: join(dir, 'out'), path: 'd3/small.txt' });
    assert.equal(await readFile(join(dir, 'out', 'd3', 'small.txt'), 'utf8'), 'small');
    assert.deepEqual(await readdir(join(dir, 'out')), ['d3']);
    assert.ok(backend.chunkReads <= 2, `read ${backend.chunkReads} of ${total} chunks for one small file`);
    backend.chunkReads = 0;
    await restoreBackup(ctx, { store: 'store1', snapshot: 'host/h/2026-01-01T00:00:00Z', archive: 'root.tar', target: join(dir, 'out2'), path: 'd5' });
    assert.ok(backend.chunkReads < total / 2, `read ${backend.chunkReads} of ${total} chunks for one of eight directories`);
    assert.deepEqual(await readFile(join(dir, 'out2', 'd5', 'data.bin')), await readFile(join(src, 'd5', 'data.bin')));
  });
});

test('verify --ignore-verified skips snapshots verified recently and re-checks outdated ones', async () => {
  await inContext(async ({ ctx, dir }) => {
    const src = join(dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a'), 'a');
    await createDatastore(ctx, { name: 'store1', path: join(dir, 'unused') });
    await createBackup(ctx, { store: 'store1', type: 'host', id: 'h', time: '2026-01-01T00:00:00Z', archives: [`root.tar:${src}`] });
    const first = await verifyStore(ctx, { store: 'store1' });
    assert.deepEqual(first.snapshots.map((s) => s.state), ['ok']);
    const again = await verifyStore(ctx, { store: 'store1', ignoreVerified: true, outdatedAfterDays: 30 });
    assert.deepEqual(again.snapshots.map((s) => s.state), ['skipped']);
    const outdated = await verifyStore(ctx, { store: 'store1', ignoreVerified: true, outdatedAfterDays: 0 });
    assert.deepEqual(outdated.snapshots.map((s) => s.state), ['ok']);
  });
});

test('restore progress of a tree, whole or one path, ends at its total; the summary counts the file bytes written', async () => {
  await inContext(async ({ ctx, dir }) => {
    const src = join(dir, 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(join(src, 'sub', `f${i}`), randomBytes(1000 + i));
    await createDatastore(ctx, { name: 'store1', path: join(dir, 'unused') });
    await createBackup(ctx, { store: 'store1', type: 'host', id: 'h', time: '2026-01-01T00:00:00Z', archives: [`root.tar:${src}`] });
    for (const [target, path] of [['all', undefined], ['one', 'sub/f3']] as const) {
      const events: Array<{ done: number; total?: number | undefined }> = [];
      const reporting: AppContext = { ...ctx, reporter: { ...silentReporter, progress: (e) => events.push(e) } };
      const result = await restoreBackup(reporting, { store: 'store1', snapshot: 'host/h/2026-01-01T00:00:00Z', archive: 'root.tar', target: join(dir, target), ...(path ? { path } : {}) });
      const last = events.at(-1);
      assert.ok(last && last.total !== undefined && last.done === last.total, `progress ended at ${last?.done} of ${last?.total}`);
      assert.equal(result.bytes, path ? 1003 : 20 * 1000 + 190);
    }
  });
});

test('an archive of the older layout (its tar stream stored whole) restores whole, by path and as a stream; the next backup reads every file and writes catalog and payload', async () => {
  await inContext(async ({ ctx, backend, dir }) => {
    const src = join(dir, 'src');
    await mkdir(join(src, 'sub'), { recursive: true });
    for (let i = 0; i < 5; i++) await writeFile(join(src, 'sub', `f${i}`), randomBytes(100_000 + i));
    await writeFile(join(src, 'top.txt'), 'top');
    await createDatastore(ctx, { name: 'store1', path: join(dir, 'unused') });
    await createBackup(ctx, { store: 'store1', type: 'host', id: 'made', time: '2026-01-01T00:00:00Z', archives: [`root.tar:${src}`] });
    const toBuffer = async (snapshot: string, path?: string): Promise<Buffer> => {
      const out = new PassThrough();
      const parts: Buffer[] = [];
      out.on('data', (d: Buffer) => parts.push(d));
      await restoreBackup(ctx, { store: 'store1', snapshot, archive: 'root.tar', target: '-', stdout: out, ...(path ? { path } : {}) });
      return Buffer.concat(parts);
    };
    // The same tree as the older layout stored it: the tar stream itself, and a catalog without payload offsets.
    const tar = await toBuffer('host/made/2026-01-01T00:00:00Z');
    const ds = await Datastore.open(backend);
    const made = await SnapshotReader.open(ds, parseSnapshot('host/made/2026-01-01T00:00:00Z'));
    const entries = decodeCatalog(await made.readAll('root.tar.catalog'), 'test').map(({ data: _, ...e }) => e);
    const writer = await SnapshotWriter.begin(ds, parseSnapshot('host/old/2026-01-02T00:00:00Z'), { owner: 'test@pam' });
    await writer.addDynamicArchive('root.tar', [tar]);
    await writer.addDynamicArchive('root.tar.catalog', [encodeCatalog(entries)]);
    await writer.commit();

    assert.deepEqual(await toBuffer('host/old/2026-01-02T00:00:00Z'), tar);
    const listed = spawnSync('tar', ['-tf', '-'], { input: await toBuffer('host/old/2026-01-02T00:00:00Z', 'sub/f3'), encoding: 'utf8' });
    assert.equal(listed.status, 0, listed.stderr);
    assert.deepEqual(listed.stdout.trim().split('\n'), ['sub/f3']);
    await restoreBackup(ctx, { store: 'store1', snapshot: 'host/old/2026-01-02T00:00:00Z', archive: 'root.tar', target: join(dir, 'out') });
    assert.deepEqual(await readFile(join(dir, 'out', 'sub', 'f4')), await readFile(join(src, 'sub', 'f4')));

    // Nothing to take over chunk by chunk from a tar stream: the next backup reads the tree.
    const next = await createBackup(ctx, { store: 'store1', type: 'host', id: 'old', time: '2026-01-03T00:00:00Z', archives: [`root.tar:${src}`] });
    assert.deepEqual(next.archives.map((a) => [a.name, a.copiedBytes]), [['root.tar.payload', 0], ['root.tar.catalog', 0]]);
    assert.deepEqual(await toBuffer('host/old/2026-01-03T00:00:00Z'), tar);
    assert.equal((await verifyStore(ctx, { store: 'store1' })).snapshots.every((s) => s.state === 'ok'), true);
  });
});

test('a local backup reports its progress against the size of the tree (percent and ETA), summed while it runs, and skips the sizing walk when nobody sees progress', async () => {
  await inContext(async ({ ctx, dir }) => {
    const src = join(dir, 'src');
    let size = 0;
    for (let i = 0; i < 100; i++) {
      await mkdir(join(src, `d${i % 10}`), { recursive: true });
      const data = randomBytes(i % 10 === 0 ? 4 * 1024 * 1024 : 1000 + i);
      await writeFile(join(src, `d${i % 10}`, `f${i}`), data);
      size += data.length;
    }
    await createDatastore(ctx, { name: 'store1', path: join(dir, 'unused') });
    const backup = async (): Promise<Array<{ done: number; total: number | undefined }>> => {
      const events: Array<{ done: number; total: number | undefined }> = [];
      await createBackup({ ...ctx, reporter: { ...silentReporter, progress: (e) => events.push({ done: e.done, total: e.total }) } }, { store: 'store1', type: 'host', id: 'h', archives: [`root.tar:${src}`] });
      return events;
    };
    const first = await backup();
    assert.ok(first.some((e) => e.total === size), `progress totals seen: ${[...new Set(first.map((e) => e.total))].join(', ')}; expected ${size}`);
    // The next backup takes the size from the previous snapshot's catalog, without a walk: a file removed since
    // still counts in that estimate (a walk would not count it), and the backup ends below it.
    await rm(join(src, 'd1', 'f11'));
    const second = await backup();
    assert.ok(second.length > 0);
    for (const e of second) assert.equal(e.total, size, `total ${e.total} at ${e.done}`);
    assert.ok((second.at(-1)?.done ?? 0) < size);
    // Progress nobody sees (quiet, no terminal): the first backup of a group does not walk the tree for a total.
    const unseen: Array<number | undefined> = [];
    await createBackup({ ...ctx, reporter: { ...silentReporter, progress: (e) => unseen.push(e.total), showsProgress: false } }, { store: 'store1', type: 'host', id: 'q', archives: [`root.tar:${src}`] });
    assert.ok(unseen.length > 0);
    assert.deepEqual([...new Set(unseen)], [undefined]);
  });
});
