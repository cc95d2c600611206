import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeBlob, encodeBlob, readBlobHeader, checkBlobCrc } from './blob.ts';
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
