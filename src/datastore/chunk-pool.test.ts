import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CryptKey, IbsError, decodeBlob, encodeBlob, readBlobHeader, sha256Hex } from '../core/index.ts';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChunkPool } from './chunk-pool.ts';
import { LocalBackend } from '../storage/local/index.ts';

test('the chunk pool checks chunks on worker threads: CRC and plaintext digest; encrypted ones by CRC', async () => {
  const pool = new ChunkPool(2);
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
  const script = `import { ChunkPool } from ${JSON.stringify(new URL('./chunk-pool.ts', import.meta.url).href)};
import { encodeBlob, sha256Hex } from ${JSON.stringify(new URL('../core/index.ts', import.meta.url).href)};
const pool = new ChunkPool(2);
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

test('closing the pool fails the jobs still waiting (ABORTED) and any asked later; the process ends with its own exit code', () => {
  const script = `import { ChunkPool } from ${JSON.stringify(new URL('./chunk-pool.ts', import.meta.url).href)};
import { encodeBlob, sha256Hex } from ${JSON.stringify(new URL('../core/index.ts', import.meta.url).href)};
import { randomBytes } from 'node:crypto';
const pool = new ChunkPool(2);
const data = randomBytes(8 << 20);
const blob = await encodeBlob(data, { compress: true });
const waiting = pool.decode(sha256Hex(data), blob, undefined).then(() => 'answered', (e) => e.code);
await pool.close();
const later = await pool.decode(sha256Hex(data), new Uint8Array(8), undefined).then(() => 'answered', (e) => e.code);
console.log(await waiting, later);
process.exitCode = 6;`;
  const dir = mkdtempSync(join(tmpdir(), 'ibs-pool-'));
  const file = join(dir, 'main.mjs');
  writeFileSync(file, script);
  const r = spawnSync(process.execPath, ['--no-warnings', file], { encoding: 'utf8', timeout: 20_000 });
  rmSync(dir, { recursive: true, force: true });
  assert.equal(r.status, 6, `exit ${r.status} (13: a job's promise was left unsettled), signal ${r.signal}: ${r.stderr}`);
  assert.match(r.stdout.trim(), /^(ABORTED|answered) ABORTED$/);
});

test('the chunk pool digests chunks on its threads and encodes only those wanted: plain, compressed, encrypted', async () => {
  const pool = new ChunkPool(2);
  try {
    const key = CryptKey.generate();
    const text = Buffer.alloc(300_000, 'abc');
    const noise = randomBytes(200_000);
    for (const [data, options, encoding] of [
      [text, { compress: true }, 'zstd'],
      [noise, { compress: true }, 'raw'],
      [text, { compress: false }, 'raw'],
      // Encrypted chunks are bound to their digest (encodings 4 and 5).
      [text, { compress: true, key }, 'encrypted+zstd-bound'],
      [noise, { compress: true, key }, 'encrypted-bound'],
      [Buffer.from('tiny'), { compress: true, key }, 'encrypted-bound'],
      // Encoded without waiting for the decision (one round trip): the same results.
      [text, { compress: true, speculate: true }, 'zstd'],
      [noise, { compress: true, key, speculate: true }, 'encrypted-bound'],
    ] as const) {
      const own = new Uint8Array(data);
      const seen: string[] = [];
      const r = await pool.encode(own, options, (d) => (seen.push(d), true));
      const expected = 'key' in options ? key.chunkDigest(data) : sha256Hex(data);
      assert.deepEqual(seen, [expected]);
      assert.equal(r.digest, expected);
      assert.equal(own.length, 0, 'a whole buffer moved to the thread');
      const blob = r.blob as Buffer;
      assert.equal(readBlobHeader(blob, 'blob').encoding, encoding);
      if ('key' in options) assert.equal(readBlobHeader(blob, 'blob').bound, expected);
      assert.deepEqual(await decodeBlob(blob, 'key' in options ? key : undefined, 'blob'), data);
    }
    // Not wanted (stored before): digested, dropped on the thread, no blob.
    const skipped = await pool.encode(new Uint8Array(text), { compress: true }, () => false);
    assert.deepEqual(skipped, { digest: sha256Hex(text) });
    const dropped = await pool.encode(new Uint8Array(text), { compress: true, key, speculate: true }, () => false);
    assert.deepEqual(dropped, { digest: key.chunkDigest(text) }, 'encoded on speculation, then dropped here');
    // Many at once, with checks among them: each answer goes to its own caller.
    const many = await Promise.all(Array.from({ length: 24 }, (_, i) => pool.encode(Buffer.alloc(10_000 + i, i), { compress: true, key }, () => i % 2 === 0)));
    many.forEach((r, i) => {
      assert.equal(r.digest, key.chunkDigest(Buffer.alloc(10_000 + i, i)));
      assert.equal(r.blob !== undefined, i % 2 === 0);
    });
  } finally {
    await pool.close();
  }
});

test('chunks of zeros get the digest of their bytes under each key and length; one non-zero byte is not a chunk of zeros', async () => {
  const pool = new ChunkPool(1);
  const key = CryptKey.generate();
  const other = CryptKey.generate();
  try {
    for (const size of [65536, 4 * 1024 * 1024, 300_001]) {
      for (const k of [undefined, key, other]) {
        const expected = k ? k.chunkDigest(Buffer.alloc(size)) : sha256Hex(Buffer.alloc(size));
        // Asked twice: the second answer, worked out once before, is the same.
        for (let i = 0; i < 2; i++) assert.equal((await pool.encode(Buffer.alloc(size), { compress: true, key: k }, () => false)).digest, expected);
        for (const at of [0, size >> 1, size - 1]) {
          const almost = Buffer.alloc(size);
          almost[at] = 1;
          const digest = (await pool.encode(new Uint8Array(almost), { compress: true, key: k }, () => false)).digest;
          assert.equal(digest, k ? k.chunkDigest(almost) : sha256Hex(almost), `a 1 at ${at} of ${size}`);
        }
      }
    }
    // A stored chunk of zeros (not bound to its digest) decodes and checks against that digest.
    const zeros = Buffer.alloc(4 * 1024 * 1024);
    const blob = await encodeBlob(zeros, { compress: true, key });
    assert.deepEqual(await pool.decode(key.chunkDigest(zeros), new Uint8Array(blob), key), zeros);
  } finally {
    await pool.close();
  }
});

test('the chunk pool decodes stored chunks on its threads and checks their digest (bound or not); damage, misplaced chunks and wrong keys fail', async () => {
  const pool = new ChunkPool(2);
  try {
    const key = CryptKey.generate();
    const data = Buffer.concat([randomBytes(30_000), Buffer.alloc(300_000, 'xyz')]);
    // Encrypted chunks as this version writes them (bound to their digest) and as earlier ones did (not bound:
    // checked by digesting the plaintext).
    const bound = key.chunkDigest(data);
    for (const options of [{ compress: true }, { compress: false }, { compress: true, key }, { compress: false, key }, { compress: true, key, digest: bound }, { compress: false, key, digest: bound }]) {
      const blob = await encodeBlob(data, options);
      const digest = 'key' in options ? key.chunkDigest(data) : sha256Hex(data);
      const whole = new Uint8Array(blob);
      assert.deepEqual(await pool.decode(digest, whole, options.key), data);
      assert.equal(whole.length, 0, 'a whole buffer moved to the thread');
      // A slice of a larger buffer is copied and stays the caller's.
      const body = Buffer.concat([Buffer.alloc(10), blob]);
      assert.deepEqual(await pool.decode(digest, body.subarray(10), options.key), data);
      assert.equal(body.length, 10 + blob.length);
      const code = (c: string) => (e: unknown) => e instanceof IbsError && e.code === c;
      await assert.rejects(pool.decode(sha256Hex(Buffer.from('other')), new Uint8Array(blob), options.key), code('CORRUPT'));
      const flipped = Buffer.from(blob);
      flipped[flipped.length - 3] = (flipped[flipped.length - 3] as number) ^ 4;
      await assert.rejects(pool.decode(digest, flipped, options.key), code('CORRUPT'));
      if ('key' in options) {
        await assert.rejects(pool.decode(digest, new Uint8Array(blob), CryptKey.generate()), code('WRONG_KEY'));
        await assert.rejects(pool.decode(digest, new Uint8Array(blob), undefined), code('WRONG_KEY'));
      }
    }
  } finally {
    await pool.close();
  }
});

test('a writer hands its chunks to the pool after its first 32 MiB; the snapshot reads back whole, image chunks decoded by the pool', async () => {
  const { Datastore, SnapshotWriter, SnapshotReader } = await import('./index.ts');
  const { MemoryBackend } = await import('../storage/memory/index.ts');
  const pool = new ChunkPool(2);
  try {
    const ds = await Datastore.create(new MemoryBackend());
    const key = CryptKey.generate();
    // 48 MiB: noise, text and a repeated block (dedup within the stream).
    const block = randomBytes(4 * 1024 * 1024);
    const data = Buffer.concat([randomBytes(20 * 1024 * 1024), Buffer.alloc(16 * 1024 * 1024, 'log line\n'), block, block, block]);
    let asked = 0;
    const ref = { ns: [], type: 'host' as const, id: 'pool', time: 1000 };
    const writer = await SnapshotWriter.begin(ds, ref, { owner: 'root@pam', key, pool: () => (asked++, pool) });
    await writer.addDynamicArchive('root.tar', [data.subarray(0, 30 * 1024 * 1024), data.subarray(30 * 1024 * 1024)]);
    const image = await writer.addFixedArchive('disk.img', (async function* () { yield data; })());
    await writer.commit();
    assert.ok(asked > 0, 'the pool was asked for');
    assert.equal(image.chunks, 12);
    assert.equal(image.newChunks + image.reusedChunks, 12);
    assert.ok(image.reusedChunks >= 2, 'the repeated block is stored once');
    const reader = await SnapshotReader.open(ds, ref, { key, pool });
    assert.ok((await reader.readAll('root.tar')).equals(data));
    assert.ok((await reader.readAll('disk.img')).equals(data));
  } finally {
    await pool.close();
  }
});

test('once every one of its last 16 chunks was new, a writer lets the pool encode without asking first; repeats are still stored once', async () => {
  const { Datastore, SnapshotWriter, SnapshotReader } = await import('./index.ts');
  const { MemoryBackend } = await import('../storage/memory/index.ts');
  const pool = new ChunkPool(2);
  try {
    const ds = await Datastore.create(new MemoryBackend());
    let speculated = 0;
    let asked = 0;
    const spy = {
      encode: (chunk: Uint8Array, options: { compress: boolean; speculate?: boolean }, wanted: (d: string) => boolean) => {
        asked++;
        if (options.speculate) speculated++;
        return pool.encode(chunk, options, wanted);
      },
    } as unknown as ChunkPool;
    // 40 distinct chunks of 1 MiB (the pool is asked for after 32 MiB), then two of them again.
    const distinct = Array.from({ length: 40 }, () => randomBytes(1024 * 1024));
    const data = Buffer.concat([...distinct, distinct[3] as Buffer, distinct[35] as Buffer]);
    const ref = { ns: [], type: 'host' as const, id: 'speculate', time: 1000 };
    const writer = await SnapshotWriter.begin(ds, ref, { owner: 'root@pam', pool: () => spy });
    const image = await writer.addFixedArchive('disk.img', (async function* () { yield data; })(), { chunkSize: 1024 * 1024 });
    await writer.commit();
    assert.ok(asked >= 8 && speculated === asked, `${speculated} of ${asked} chunks encoded on speculation`);
    assert.deepEqual([image.chunks, image.newChunks, image.reusedChunks], [42, 40, 2]);
    const reader = await SnapshotReader.open(ds, ref, { pool });
    assert.ok((await reader.readAll('disk.img')).equals(data));
  } finally {
    await pool.close();
  }
});

test('threads for storing start with the first chunk to store and take only such jobs; every chunk is stored and reads back', async () => {
  const root = mkdtempSync(join(tmpdir(), 'ibs-pool-store-'));
  const pool = new ChunkPool(1, { storeThreads: 2 });
  try {
    const data = randomBytes(100_000);
    const blob = await encodeBlob(data, { compress: false });
    assert.equal((await pool.encode(Buffer.from(data), { compress: false }, () => false)).digest, sha256Hex(data));
    assert.equal(pool.threads, 1, 'none for storing before anything is stored');
    const backend = new LocalBackend({ root });
    const store = backend.threadStore;
    assert.ok(store);
    const chunks = await Promise.all(Array.from({ length: 12 }, async () => {
      const plain = randomBytes(200_000);
      return { digest: sha256Hex(plain), blob: await encodeBlob(plain, { compress: true }) };
    }));
    const stored = await Promise.all(chunks.map((c) => pool.checkAndStore(c.digest, new Uint8Array(c.blob), store, `c/${c.digest}`, true)));
    assert.deepEqual(stored, chunks.map(() => ({ existed: false, same: true })));
    assert.equal(pool.threads, 3);
    for (const c of chunks) assert.ok((await backend.read(`c/${c.digest}`)).equals(c.blob));
    // Jobs of every kind still run on the first thread.
    assert.deepEqual(Buffer.from(await pool.check(sha256Hex(data), new Uint8Array(blob))), blob);
  } finally {
    await pool.close();
    rmSync(root, { recursive: true, force: true });
  }
});
