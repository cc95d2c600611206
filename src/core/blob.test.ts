import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createZstdCompress, zstdCompressSync } from 'node:zlib';
import { decodeBlob, decodeBlobSync, decompressPiecesSync, decompressSync, encodeBlob, encodeBlobSync, MAX_BLOB_PLAINTEXT, plainDigestSync, readBlobHeader, checkBlobCrc, zstdContentSize, zstdDecodesInPieces } from './blob.ts';
import { CryptKey } from './crypt-key.ts';
import { createHash } from 'node:crypto';

const sha256 = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
import { IbsError } from './errors.ts';

const key = CryptKey.generate();

test('encodeBlob/decodeBlob round-trip any bytes in all six encodings (sync and async alike)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 20000 }), fc.boolean(), fc.boolean(), fc.boolean(), async (data, compress, encrypt, bind) => {
      const digest = bind ? key.chunkDigest(data) : undefined;
      const blob = await encodeBlob(data, { compress, key: encrypt ? key : undefined, digest });
      assert.equal(readBlobHeader(blob, 'test').bound, encrypt && bind ? digest : undefined);
      const back = await decodeBlob(blob, encrypt ? key : undefined, 'test', { digest });
      assert.deepEqual(new Uint8Array(back), data);
      const again = encodeBlobSync(data, { compress, key: encrypt ? key : undefined, digest });
      assert.deepEqual(new Uint8Array(decodeBlobSync(again, encrypt ? key : undefined, 'test', { digest, crc: false })), data);
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

test('a large chunk whose trial slices do not shrink is stored raw without an attempt; the trial compressor serves many chunks', async () => {
  const { randomBytes } = await import('node:crypto');
  const text = (n: number): Buffer => Buffer.from('lorem ipsum dolor sit amet, consectetur adipiscing elit; '.repeat(Math.ceil(n / 57)).slice(0, n));
  // 1 MiB: the four slices of 16 KiB sit at 0, 1/3, 2/3 and the end; random there, zeros everywhere else.
  const size = 1024 * 1024;
  const step = Math.floor((size - 16384) / 3);
  const sly = Buffer.alloc(size);
  for (let i = 0; i < 4; i++) randomBytes(16384).copy(sly, i * step);
  // Compressing it whole would save 94%: the trial, which sees only its random slices, stores it raw.
  assert.ok(zstdCompressSync(sly).length < size * 0.1);
  for (const encode of [encodeBlob, async (d: Uint8Array, o: Parameters<typeof encodeBlobSync>[1]) => encodeBlobSync(d, o)]) {
    const raw = await encode(sly, { compress: true });
    assert.equal(readBlobHeader(raw, 't').encoding, 'raw');
    assert.ok((await decodeBlob(raw, undefined, 't')).equals(sly));
    assert.equal(readBlobHeader(await encode(sly, { compress: true, key }), 't').encoding, 'encrypted');
    // Below 256 KiB there is no trial: a small chunk is compressed when that saves space at all.
    assert.equal(readBlobHeader(await encode(sly.subarray(0, 200 * 1024), { compress: true }), 't').encoding, 'zstd');
  }
  // One compressor for the trials of a thread, frame after frame: text and random chunks in turn are told apart
  // every time, and what is stored decodes to the chunk.
  for (let i = 0; i < 40; i++) {
    const chunk = i % 2 === 0 ? text(300000 + i * 1000) : randomBytes(300000 + i * 1000);
    const blob = i % 4 < 2 ? encodeBlobSync(chunk, { compress: true }) : await encodeBlob(chunk, { compress: true });
    assert.equal(readBlobHeader(blob, 't').encoding, i % 2 === 0 ? 'zstd' : 'raw', `chunk ${i}`);
    assert.ok(decodeBlobSync(blob, undefined, 't').equals(chunk));
  }
});

test('any flipped bit of a blob is detected (CRC, magic or authentication), never decoded silently', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.boolean(), fc.boolean(), fc.nat(), fc.integer({ min: 0, max: 7 }), async (data, encrypt, bind, pos, bit) => {
      const digest = bind ? key.chunkDigest(data) : undefined;
      const blob = await encodeBlob(data, { compress: true, key: encrypt ? key : undefined, digest });
      const i = pos % blob.length;
      blob[i] = (blob[i] as number) ^ (1 << bit);
      await assert.rejects(decodeBlob(blob, encrypt ? key : undefined, 'test', { digest }), (e) => e instanceof IbsError && (e.code === 'CORRUPT' || e.code === 'WRONG_KEY'));
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

test('a zstd payload decoded in pieces gives the same bytes as decoded whole; a digest of a blob never holds it whole', async () => {
  // On the Node this project pins, the pieces path is the one in use (a Node that drops it would fall back to
  // whole decoding: correct, only slower; this says so).
  assert.equal(zstdDecodesInPieces(), true);
  const corpus = Buffer.from(Array.from({ length: 20000 }, (_, i) => `line ${i} ${(i * 7919) % 1013}\n`).join(''));
  for (const size of [0, 1, 1000, 256 * 1024, 256 * 1024 + 1, 3 * 1024 * 1024 + 17]) {
    const data = Buffer.alloc(size);
    for (let at = 0; at < size; at += corpus.length) corpus.copy(data, at, 0, Math.min(corpus.length, size - at));
    const blob = encodeBlobSync(data, { compress: true });
    const payload = blob.subarray(readBlobHeader(blob, 't').headerSize);
    const pieces: Buffer[] = [];
    if (readBlobHeader(blob, 't').encoding === 'zstd') decompressPiecesSync(payload, 't', (piece) => pieces.push(Buffer.from(piece)));
    else pieces.push(Buffer.from(payload));
    assert.ok(Buffer.concat(pieces).equals(data), `size ${size}`);
    assert.ok(pieces.every((p) => p.length <= 256 * 1024));
    if (size > 512 * 1024) assert.ok(pieces.length > 2, `size ${size} came in ${pieces.length} piece(s)`);
    assert.equal(plainDigestSync(blob, 't'), createHash('sha256').update(data).digest('hex'));
    assert.equal(plainDigestSync(encodeBlobSync(data, { compress: false }), 't'), createHash('sha256').update(data).digest('hex'));
  }
  await fc.assert(
    fc.property(fc.uint8Array({ maxLength: 70000 }), fc.nat({ max: 3 }), (bytes, repeat) => {
      const data = Buffer.concat(Array.from({ length: repeat + 1 }, () => bytes));
      const frame = zstdCompressSync(data);
      const pieces: Buffer[] = [];
      decompressPiecesSync(frame, 'p', (piece) => pieces.push(Buffer.from(piece)));
      assert.ok(Buffer.concat(pieces).equals(decompressSync(frame, 'w')));
    }),
    { numRuns: 40 },
  );
  // Damage is CORRUPT; so is a frame that decodes beyond the plaintext limit (a decompression bomb).
  const frame = zstdCompressSync(Buffer.from(corpus));
  const damaged = Buffer.from(frame);
  damaged.fill(0xff, 20, 60);
  assert.throws(() => decompressPiecesSync(damaged, 'damaged', () => {}), (e: unknown) => e instanceof IbsError && e.code === 'CORRUPT' && e.message.includes('damaged'));
  const bomb = zstdCompressSync(Buffer.alloc(MAX_BLOB_PLAINTEXT + 1));
  let seen = 0;
  assert.throws(() => decompressPiecesSync(bomb, 'bomb', (piece) => (seen += piece.length)), (e: unknown) => e instanceof IbsError && e.code === 'CORRUPT');
  assert.ok(seen <= MAX_BLOB_PLAINTEXT);
  // What the sink throws is its own error, not the payload's.
  const refusal = new RangeError('sink refuses');
  assert.throws(() => decompressPiecesSync(frame, 'f', () => { throw refusal; }), (e: unknown) => e === refusal);
  // A frame cut short too, as when decoded whole.
  assert.throws(() => decompressPiecesSync(frame.subarray(0, frame.length - 10), 'cut', () => {}), (e: unknown) => e instanceof IbsError && e.code === 'CORRUPT' && e.message.includes('cut'));
  const sealed = encodeBlobSync(Buffer.from('secret'), { compress: true, key });
  assert.throws(() => plainDigestSync(sealed, 'sealed'), (e: unknown) => e instanceof IbsError && e.code === 'WRONG_KEY');
});

test('a blob bound to its digest: another digest is refused as a misplaced chunk; a wrong key stays WRONG_KEY', async () => {
  const data = Buffer.from('chunk content '.repeat(500));
  const digest = key.chunkDigest(data);
  const other = key.chunkDigest(Buffer.from('another chunk'));
  for (const encode of [encodeBlob, async (d: Uint8Array, o: Parameters<typeof encodeBlobSync>[1]) => encodeBlobSync(d, o)]) {
    const blob = await encode(data, { compress: true, key, digest });
    assert.equal(readBlobHeader(blob, 't').encoding, 'encrypted+zstd-bound');
    const misplaced = (e: unknown): boolean => e instanceof IbsError && e.code === 'CORRUPT' && e.message === `chunk ${other}: the blob stored under it is chunk ${digest} (misplaced chunk)`;
    await assert.rejects(decodeBlob(blob, key, `chunk ${other}`, { digest: other }), misplaced);
    assert.throws(() => decodeBlobSync(blob, key, `chunk ${other}`, { digest: other, crc: false }), misplaced);
    await assert.rejects(decodeBlob(blob, CryptKey.generate(), 't', { digest, crc: false }), (e) => e instanceof IbsError && e.code === 'WRONG_KEY');
    // The digest in the header is authenticated with the ciphertext: rewriting it (and asking for the new one) fails.
    const forged = Buffer.from(blob);
    Buffer.from(other, 'hex').copy(forged, 40);
    await assert.rejects(decodeBlob(forged, key, 't', { digest: other }), (e) => e instanceof IbsError && (e.code === 'WRONG_KEY' || e.code === 'CORRUPT'));
  }
  // An unencrypted blob is never bound (its digest is checked by hashing), nor is one without a digest.
  assert.equal(readBlobHeader(await encodeBlob(data, { compress: true, digest: sha256(data) }), 't').encoding, 'zstd');
  assert.equal(readBlobHeader(await encodeBlob(data, { compress: true, key }), 't').encoding, 'encrypted+zstd');
  assert.throws(() => encodeBlobSync(data, { compress: true, key, digest: 'XYZ' }), RangeError);
});
