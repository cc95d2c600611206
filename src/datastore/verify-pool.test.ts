import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CryptKey, IbsError, encodeBlob, sha256Hex } from '../core/index.ts';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VerifyPool } from './verify-pool.ts';

test('the verify pool checks chunks on worker threads: CRC and plaintext digest; encrypted ones by CRC', async () => {
  const pool = new VerifyPool(2);
  try {
    const data = Buffer.concat([randomBytes(50_000), Buffer.alloc(200_000, 7)]);
    const blob = await encodeBlob(data, { compress: true });
    const corrupt = (e: unknown): boolean => e instanceof IbsError && e.code === 'CORRUPT';
    // Each check gets its own copy: a whole buffer moves to the thread, and a rejected one does not come back.
    await assert.rejects(pool.check(sha256Hex(Buffer.from('other')), new Uint8Array(blob)), corrupt);
    const flipped = Buffer.from(blob);
    flipped[flipped.length - 5] = (flipped[flipped.length - 5] as number) ^ 1;
    await assert.rejects(pool.check(sha256Hex(data), flipped), corrupt);
    // A slice of a larger buffer (a request body) is copied for the thread and stays the caller's.
    const body = Buffer.concat([Buffer.alloc(100, 1), blob, Buffer.alloc(100, 2)]);
    const slice = body.subarray(100, 100 + blob.length);
    assert.equal(await pool.check(sha256Hex(data), slice), slice);
    // A whole buffer moves to the thread and comes back: the one passed in is empty, the one returned the same bytes.
    const own = new Uint8Array(blob);
    const back = await pool.check(sha256Hex(data), own);
    assert.equal(own.length, 0, 'a whole buffer moved to the thread');
    assert.deepEqual(Buffer.from(back), Buffer.from(blob));
    const key = CryptKey.generate();
    const enc = await encodeBlob(data, { compress: true, key });
    assert.deepEqual(Buffer.from(await pool.check(key.chunkDigest(data), new Uint8Array(enc))), enc);
    const checks = await Promise.all(Array.from({ length: 20 }, () => pool.check(sha256Hex(data), new Uint8Array(blob))));
    assert.equal(checks.length, 20);
  } finally {
    await pool.close();
  }
});

test('a pending check keeps the process alive; idle threads do not (a command ends without closing the pool)', () => {
  const script = `import { VerifyPool } from ${JSON.stringify(new URL('./verify-pool.ts', import.meta.url).href)};
import { encodeBlob, sha256Hex } from ${JSON.stringify(new URL('../core/index.ts', import.meta.url).href)};
const pool = new VerifyPool(2);
const blob = await encodeBlob(Buffer.from('x'), { compress: false });
console.log((await pool.check(sha256Hex(Buffer.from('x')), blob)).length);`;
  const dir = mkdtempSync(join(tmpdir(), 'ibs-pool-'));
  const file = join(dir, 'main.mjs');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, ['--no-warnings', file], { encoding: 'utf8', timeout: 20_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, `exit ${r.status} (13: the awaited check did not hold the process), signal ${r.signal}: ${r.stderr}`);
  assert.match(r.stdout.trim(), /^\d+$/);
});
