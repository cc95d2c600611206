import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIRECT_ALIGN, directRefused, openDirectSync, sameDirectSync, writeDirectSync } from './direct-io.ts';

test('direct writes keep every length exactly (around block and staging sizes), and the read-back tells the same file from a longer, shorter or different one', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ibs-direct-'));
  try {
    try {
      closeSync(openDirectSync(join(dir, 'probe'), 0o644));
    } catch (error) {
      if (directRefused(error)) return t.skip(`${tmpdir()} refuses direct I/O`);
      throw error;
    }
    const MiB = 1024 * 1024;
    for (const size of [1, DIRECT_ALIGN - 1, DIRECT_ALIGN, DIRECT_ALIGN + 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 5, 8 * MiB + 4096 + 17]) {
      const data = randomBytes(size);
      const path = join(dir, `f${size}`);
      const fd = openDirectSync(path, 0o644);
      try {
        writeDirectSync(fd, data);
      } finally {
        closeSync(fd);
      }
      assert.ok(readFileSync(path).equals(data), `${size} bytes written`);
      assert.equal(sameDirectSync(path, data), true, `${size}: same`);
      assert.equal(sameDirectSync(path, data.subarray(0, size - 1)), false, `${size}: the file is longer`);
      assert.equal(sameDirectSync(path, Buffer.concat([data, Buffer.from([0])])), false, `${size}: the file is shorter`);
      const other = Buffer.from(data);
      other[size - 1] = (other[size - 1] as number) ^ 1;
      assert.equal(sameDirectSync(path, other), false, `${size}: the last byte differs`);
    }
    writeFileSync(join(dir, 'empty'), '');
    assert.equal(sameDirectSync(join(dir, 'empty'), Buffer.alloc(0)), true);
    assert.throws(() => openDirectSync(join(dir, 'f1'), 0o644), { code: 'EEXIST' }, 'created exclusively');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
