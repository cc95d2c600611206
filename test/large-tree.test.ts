import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ibs, tempDir } from './helpers.ts';

test('a tree whose catalog exceeds 16 MiB backs up, lists and restores one file', async () => {
  const work = await tempDir('ibs-large-');
  try {
    const home = join(work.path, 'home');
    const src = join(work.path, 'src');
    const dirName = 'd'.repeat(100);
    for (let d = 0; d < 4; d++) {
      const dir = join(src, `${dirName}${d}`);
      await mkdir(dir, { recursive: true });
      const writes: Array<Promise<void>> = [];
      for (let f = 0; f < 10_000; f++) writes.push(writeFile(join(dir, `${String(f).padStart(5, '0')}-${'f'.repeat(140)}`), f % 1000 === 0 ? `file ${f}` : ''));
      await Promise.all(writes);
    }
    assert.equal((await ibs(home, ['datastore', 'create', 'store1'])).code, 0);
    const b = await ibs(home, ['backup', 'create', '--store', 'store1', '--id', 'large', '--time', '2026-01-01T00:00:00Z', '--output', 'json', `root.tar:${src}`]);
    assert.equal(b.code, 0, b.stderr);
    const catalog = (JSON.parse(b.stdout).archives as Array<{ name: string; size: number }>).find((a) => a.name === 'root.tar.catalog');
    assert.ok(catalog && catalog.size > 16 * 1024 * 1024, `catalog of ${catalog?.size} bytes`);
    const file = `${dirName}2/${'02000'}-${'f'.repeat(140)}`;
    const r = await ibs(home, ['backup', 'restore', 'host/large/2026-01-01T00:00:00Z', 'root.tar', join(work.path, 'out'), '--store', 'store1', '--path', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readdir(join(work.path, 'out', `${dirName}2`)), [`02000-${'f'.repeat(140)}`]);
  } finally {
    await work.cleanup();
  }
});
