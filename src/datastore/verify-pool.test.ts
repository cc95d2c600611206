import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CryptKey, IbsError, encodeBlob, sha256Hex } from '../core/index.ts';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VerifyPool } from './verify-pool.ts';

test('the verify pool checks chunks on worker threads: CRC, plaintext digest, blob hash; encrypted ones by CRC', async () => {
  const pool = new VerifyPool(2);
  try {
    const data = Buffer.concat([randomBytes(50_000), Buffer.alloc(200_000, 7)]);
    const blob = await encodeBlob(data, { compress: true });
    assert.deepEqual(await pool.check(sha256Hex(data), blob), { blobSha256: sha256Hex(blob) });
    const corrupt = (e: unknown): boolean => e instanceof IbsError && e.code === 'CORRUPT';
    await assert.rejects(pool.check(sha256Hex(Buffer.from('other')), blob), corrupt);
    const flipped = Buffer.from(blob);
    flipped[flipped.length - 5] = (flipped[flipped.length - 5] as number) ^ 1;
    await assert.rejects(pool.check(sha256Hex(data), flipped), corrupt);
    // A slice of a larger buffer (a request body) is checked as itself.
    const body = Buffer.concat([Buffer.alloc(100, 1), blob, Buffer.alloc(100, 2)]);
    assert.deepEqual(await pool.check(sha256Hex(data), body.subarray(100, 100 + blob.length)), { blobSha256: sha256Hex(blob) });
    const key = CryptKey.generate();
    const enc = await encodeBlob(data, { compress: true, key });
    assert.deepEqual(await pool.check(key.chunkDigest(data), enc), { blobSha256: sha256Hex(enc) });
    // Hash only (a read-back): a slice is copied and stays usable, a whole buffer handed over moves.
    const slice = body.subarray(100, 100 + blob.length);
    assert.equal(await pool.hash(slice, { handOver: true }), sha256Hex(blob));
    assert.equal(slice.length, blob.length);
    const own = new Uint8Array(blob);
    assert.equal(await pool.hash(own, { handOver: true }), sha256Hex(blob));
    assert.equal(own.length, 0, 'a handed-over buffer moved to the thread');
    const checks = await Promise.all(Array.from({ length: 20 }, () => pool.check(sha256Hex(data), blob)));
    assert.equal(checks.length, 20);
  } finally {
    await pool.close();
  }
});

test('a pending check keeps the process alive; idle threads do not (a command ends without closing the pool)', () => {
  const script = `import { VerifyPool } from ${JSON.stringify(new URL('./verify-pool.ts', import.meta.url).href)};
const pool = new VerifyPool(2);
console.log(await pool.hash(new Uint8Array(8)));`;
  const dir = mkdtempSync(join(tmpdir(), 'ibs-pool-'));
  const file = join(dir, 'main.mjs');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, ['--no-warnings', file], { encoding: 'utf8', timeout: 20_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 0, `exit ${r.status} (13: the awaited check did not hold the process), signal ${r.signal}: ${r.stderr}`);
  assert.equal(r.stdout.trim(), sha256Hex(new Uint8Array(8)));
});
