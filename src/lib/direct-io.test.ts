import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DIRECT_ALIGN, directRefused, openDirect, openDirectSync, sameDirectSync, SequentialFile, writeDirect, writeDirectSync } from './direct-io.ts';

/** Whether the temporary folder's file system refuses direct I/O (the tests of it then skip). */
function refusedHere(): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'ibs-direct-probe-'));
  try {
    closeSync(openDirectSync(join(dir, 'probe'), 0o644));
    return false;
  } catch (error) {
    if (directRefused(error)) return true;
    throw error;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('direct writes keep every length exactly (around block and staging sizes), and the read-back tells the same file from a longer, shorter or different one', (t) => {
  if (refusedHere()) return t.skip(`${tmpdir()} refuses direct I/O`);
  const dir = mkdtempSync(join(tmpdir(), 'ibs-direct-'));
  try {
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

test('a sequential file takes pieces of any length and holes anywhere, and reads back as written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ibs-seq-'));
  try {
    const MiB = 1024 * 1024;
    // Piece, hole, piece ... : holes on and off block boundaries, a piece across the staging size, odd ends.
    const plan: Array<['data' | 'hole', number]> = [
      ['data', 3 * MiB + 5],
      ['hole', 4096],
      ['data', 100],
      ['hole', 2 * MiB],
      ['data', 4 * MiB],
      ['hole', 4 * MiB],
      ['data', 1],
      ['hole', 333],
    ];
    for (const trailingHole of [true, false]) {
      const steps = trailingHole ? plan : plan.slice(0, -1);
      const path = join(dir, `f-${trailingHole}`);
      const file = await SequentialFile.create(path, 0o600);
      const expected: Buffer[] = [];
      for (const [kind, length] of steps) {
        const bytes = kind === 'data' ? randomBytes(length) : Buffer.alloc(length);
        if (kind === 'data') await file.write(bytes);
        else await file.hole(length);
        expected.push(bytes);
      }
      await file.end({ sync: true });
      assert.ok(readFileSync(path).equals(Buffer.concat(expected)), `trailing hole ${trailingHole}`);
    }
    await assert.rejects(SequentialFile.create(join(dir, 'f-true'), 0o600), { code: 'EEXIST' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('concurrent direct writes (more than there are staging areas) each write their own bytes', async (t) => {
  if (refusedHere()) return t.skip(`${tmpdir()} refuses direct I/O`);
  const dir = mkdtempSync(join(tmpdir(), 'ibs-direct-many-'));
  try {
    const datas = Array.from({ length: 40 }, (_, i) => randomBytes(1024 * 1024 + 1000 * i));
    await Promise.all(
      datas.map(async (data, i) => {
        const handle = await openDirect(join(dir, `f${i}`), 0o644);
        try {
          await writeDirect(handle, data);
        } finally {
          await handle.close();
        }
      }),
    );
    datas.forEach((data, i) => assert.ok(readFileSync(join(dir, `f${i}`)).equals(data), `f${i}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
