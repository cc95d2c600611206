import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAllZero, readPieces } from './read-pieces.ts';

test('readPieces gives a file in whole buffers of the piece size, the last one shorter; empty file, bad size, abort', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ibs-read-pieces-'));
  try {
    const data = randomBytes(3 * 4096 + 100);
    await writeFile(join(dir, 'f'), data);
    const pieces: Buffer[] = [];
    for await (const p of readPieces(join(dir, 'f'), 4096)) pieces.push(p);
    assert.deepEqual(pieces.map((p) => p.length), [4096, 4096, 4096, 100]);
    assert.ok(pieces.slice(0, 3).every((p) => p.byteOffset === 0 && p.buffer.byteLength === 4096), 'full pieces are whole buffers');
    assert.deepEqual(Buffer.concat(pieces), data);
    await writeFile(join(dir, 'aligned'), data.subarray(0, 8192));
    const aligned: number[] = [];
    for await (const p of readPieces(join(dir, 'aligned'), 4096)) aligned.push(p.length);
    assert.deepEqual(aligned, [4096, 4096]);
    await writeFile(join(dir, 'empty'), '');
    for await (const _ of readPieces(join(dir, 'empty'), 4096)) assert.fail('an empty file has no pieces');
    await assert.rejects(async () => {
      for await (const _ of readPieces(join(dir, 'f'), 0));
    }, /size must be a positive integer, got 0/);
    await assert.rejects(async () => {
      for await (const _ of readPieces(join(dir, 'missing'), 4096));
    }, { code: 'ENOENT' });
    const controller = new AbortController();
    await assert.rejects(async () => {
      for await (const _ of readPieces(join(dir, 'f'), 4096, controller.signal)) controller.abort();
    }, { name: 'AbortError' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('isAllZero: empty and zero-filled buffers of any length are zero; one set byte anywhere is not', () => {
  assert.equal(isAllZero(new Uint8Array(0)), true);
  for (const size of [1, 65535, 65536, 65537, 3 * 65536 + 7]) {
    const data = new Uint8Array(size);
    assert.equal(isAllZero(data), true, `${size} zeros`);
    for (const at of [0, size >> 1, 65536, size - 1]) {
      if (at >= size) continue;
      data[at] = 1;
      assert.equal(isAllZero(data), false, `${size} bytes with byte ${at} set`);
      assert.equal(isAllZero(data.subarray(at + 1)), true, `the view after byte ${at}`);
      data[at] = 0;
    }
  }
});
