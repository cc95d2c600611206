import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createZstdCompress, zstdCompressSync } from 'node:zlib';
import { decodeBlob, decompressSync, encodeBlob, readBlobHeader, checkBlobCrc, zstdContentSize } from './blob.ts';
import { CryptKey } from './crypt-key.ts';
import { IbsError } from './errors.ts';

const key = CryptKey.generate();

test('encodeBlob/decodeBlob round-trip any bytes in all four encodings', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 20000 }), fc.boolean(), fc.boolean(), async (data, compress, encrypt) => {
      const blob = await encodeBlob(data, { compress, key: encrypt ? key : undefined });
      const back = await decodeBlob(blob, encrypt ? key : undefined, 'test');
      assert.deepEqual(new Uint8Array(back), data);
    }),
    { numRuns: 150 },
  );
});

test('compressible data is stored zstd-compressed, random data raw', async () => {
  const zeros = await encodeBlob(Buffer.alloc(100000), { compress: true });
  assert.equal(readBlobHeader(zeros, 't').encoding, 'zstd');
  assert.ok(zeros.length < 1000);
  const random = await encodeBlob(Buffer.from(Array.from({ length: 4096 }, () => Math.floor(Math.random() * 256))), { compress: true });
  assert.equal(readBlobHeader(random, 't').encoding, 'raw');
  const enc = await encodeBlob(Buffer.alloc(100000), { compress: true, key });
  assert.equal(readBlobHeader(enc, 't').encoding, 'encrypted+zstd');
});

test('any flipped bit of a blob is detected (CRC, magic or authentication), never decoded silently', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.boolean(), fc.nat(), fc.integer({ min: 0, max: 7 }), async (data, encrypt, pos, bit) => {
      const blob = await encodeBlob(data, { compress: true, key: encrypt ? key : undefined });
      const i = pos % blob.length;
      blob[i] = (blob[i] as number) ^ (1 << bit);
      await assert.rejects(decodeBlob(blob, encrypt ? key : undefined, 'test'), (e) => e instanceof IbsError && (e.code === 'CORRUPT' || e.code === 'WRONG_KEY'));
    }),
    { numRuns: 200 },
  );
});

test('decoding without the CRC pass still tells damage from a wrong key for encrypted blobs', async () => {
  for (const compress of [true, false]) {
    const data = Buffer.alloc(5000, 'encrypted text ');
    const blob = await encodeBlob(data, { compress, key });
    assert.deepEqual(await decodeBlob(blob, key, 'x', { crc: false }), data);
    const damaged = Buffer.from(blob);
    damaged[damaged.length - 1] = (damaged[damaged.length - 1] as number) ^ 1;
    await assert.rejects(decodeBlob(damaged, key, 'x', { crc: false }), (e) => e instanceof IbsError && e.code === 'CORRUPT' && /CRC32 mismatch/.test(e.message));
    const { decodeBlobSync } = await import('./blob.ts');
    assert.throws(() => decodeBlobSync(damaged, key, 'x', { crc: false }), (e) => e instanceof IbsError && e.code === 'CORRUPT');
    assert.throws(() => decodeBlobSync(blob, CryptKey.generate(), 'x', { crc: false }), (e) => e instanceof IbsError && e.code === 'WRONG_KEY');
    await assert.rejects(decodeBlob(blob, CryptKey.generate(), 'x', { crc: false }), (e) => e instanceof IbsError && e.code === 'WRONG_KEY');
  }
});

test('decodeBlob with the wrong key fails with WRONG_KEY; without a key it says a key is needed', async () => {
  const blob = await encodeBlob(Buffer.from('secret'), { compress: false, key });
  await assert.rejects(decodeBlob(blob, CryptKey.generate(), 'x'), (e) => e instanceof IbsError && e.code === 'WRONG_KEY');
  await assert.rejects(decodeBlob(blob, undefined, 'x'), /key is needed/);
  assert.doesNotThrow(() => checkBlobCrc(blob, 'x'));
});

test('garbage input is refused as CORRUPT', async () => {
  await assert.rejects(decodeBlob(Buffer.from('not a blob at all'), undefined, 'x'), (e) => e instanceof IbsError && e.code === 'CORRUPT');
  await assert.rejects(decodeBlob(Buffer.alloc(3), undefined, 'x'), (e) => e instanceof IbsError && e.code === 'CORRUPT');
});

test('zstd frames declare their size; frames without it, or with a false one, still decode or fail as CORRUPT', async () => {
  for (const size of [100, 255, 256, 70000, 4 * 1024 * 1024, 6 * 1024 * 1024 + 3]) {
    const data = Buffer.alloc(size, 'ab');
    const blob = await encodeBlob(data, { compress: true });
    const payload = blob.subarray(readBlobHeader(blob, 't').headerSize);
    assert.equal(zstdContentSize(payload), size, `size ${size}`);
    assert.ok(decompressSync(payload, 't').equals(data));
  }
  // A frame written in pieces (older chunks) has no size: decoded all the same.
  const data = Buffer.alloc(5 * 1024 * 1024, 'xyz');
  const unsized = await new Promise<Buffer>((resolve, reject) => {
    const z = createZstdCompress();
    const out: Buffer[] = [];
    z.on('data', (d: Buffer) => out.push(d)).on('end', () => resolve(Buffer.concat(out))).on('error', reject);
    z.end(data);
  });
  assert.equal(zstdContentSize(unsized), undefined);
  assert.ok(decompressSync(unsized, 't').equals(data));
  // A header that lies about the size: the decoder refuses it, it never yields other bytes.
  const sized = zstdCompressSync(Buffer.alloc(1000, 'q'));
  assert.equal(zstdContentSize(sized), 1000);
  const lying = Buffer.from(sized);
  lying.writeUInt16LE(500 - 256, 5);
  assert.throws(() => decompressSync(lying, 'lying'), (e: unknown) => e instanceof IbsError && e.code === 'CORRUPT');
  assert.equal(zstdContentSize(Buffer.from('not zstd')), undefined);
});
