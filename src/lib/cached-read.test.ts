import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTextCached } from './cached-read.ts';

test('a cached read always gives what the file holds now: replaced, rewritten in place at the same size, removed, created', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-cached-read-'));
  const path = join(dir, 'user.cfg');
  /** Rewrites the file in place (same inode), keeping its size. */
  const inPlace = async (text: string): Promise<void> => {
    const handle = await open(path, 'r+');
    await handle.write(text, 0, 'utf8');
    await handle.close();
  };
  try {
    await assert.rejects(readTextCached(path), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    await writeFile(path, 'token: a\n');
    assert.equal(await readTextCached(path), 'token: a\n');
    // Changed right after it was read, in place and at the same size (within the clock's step, as can be).
    await inPlace('token: b\n');
    assert.equal(await readTextCached(path), 'token: b\n');
    // Settled (last changed more than 2 s ago): kept after a read, and still every change is seen.
    await new Promise((r) => setTimeout(r, 2100));
    assert.equal(await readTextCached(path), 'token: b\n');
    assert.equal(await readTextCached(path), 'token: b\n');
    await inPlace('token: c\n');
    assert.equal(await readTextCached(path), 'token: c\n');
    await new Promise((r) => setTimeout(r, 2100));
    assert.equal(await readTextCached(path), 'token: c\n');
    // Replaced as our writers do (a temporary file renamed over it).
    await writeFile(`${path}.tmp`, 'token: d\n');
    await rename(`${path}.tmp`, path);
    assert.equal(await readTextCached(path), 'token: d\n');
    await rm(path);
    await assert.rejects(readTextCached(path), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    await writeFile(path, 'token: e\n');
    assert.equal(await readTextCached(path), 'token: e\n');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
