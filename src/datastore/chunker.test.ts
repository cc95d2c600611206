import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Chunker, DEFAULT_CHUNKER, type ChunkerOptions } from './chunker.ts';

const small = { min: 2048, avg: 8192, max: 32768 };

function chunkAll(data: Buffer, pieceSizes: number[], options = small): Buffer[] {
  const chunker = new Chunker(options);
  const out: Buffer[] = [];
  let pos = 0;
  let i = 0;
  while (pos < data.length) {
    const size = pieceSizes.length ? (pieceSizes[i++ % pieceSizes.length] as number) : data.length;
    out.push(...chunker.push(data.subarray(pos, pos + size)));
    pos += size;
  }
  const last = chunker.finish();
  if (last) out.push(last);
  return out;
}

test('chunks concatenate to the input, respect min/max, and do not depend on how the input is split', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 300_000 }), fc.array(fc.integer({ min: 1, max: 70_000 }), { maxLength: 5 }), (size, pieces) => {
      const data = randomBytes(size);
      const chunks = chunkAll(data, pieces);
      assert.ok(Buffer.concat(chunks).equals(data));
      chunks.slice(0, -1).forEach((c) => assert.ok(c.length >= small.min && c.length <= small.max, `chunk of ${c.length}`));
      assert.deepEqual(chunks.map((c) => c.length), chunkAll(data, []).map((c) => c.length));
    }),
    { numRuns: 60 },
  );
});

test('pieces of a few bytes (odd and even scan ranges) cut where the whole input does', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 60_000 }), fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 }), (size, pieces) => {
      const data = randomBytes(size);
      assert.deepEqual(chunkAll(data, pieces).map((c) => c.length), chunkAll(data, []).map((c) => c.length));
    }),
    { numRuns: 40 },
  );
});

/** A fixed pseudo-random stream (xorshift32), the same on every machine and in every version. */
function fixedStream(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x >>> 24;
  }
  return out;
}

test('cut points never change between versions (chunks already stored must dedup with new backups)', () => {
  const data = fixedStream(24 * 1024 * 1024, 12345);
  // A low-entropy region, like text.
  for (let i = 8 << 20; i < 10 << 20; i++) data[i] = 97 + ((data[i] as number) % 4);
  const sizes = (options: ChunkerOptions, size: number): number[] => chunkAll(data.subarray(0, size), [1_000_003], options).map((c) => c.length);
  assert.deepEqual(sizes(DEFAULT_CHUNKER, data.length), [2359464, 2549728, 2316135, 2318052, 2251912, 2213261, 3518627, 3087388, 1711011, 1542165, 1298081]);
  assert.deepEqual(sizes(small, 200_000), [10224, 9645, 3377, 9383, 3672, 10152, 8541, 8755, 9242, 12978, 8903, 8297, 3520, 9740, 12114, 8542, 8255, 6482, 10397, 8613, 12216, 10088, 6864]);
});

/** `size` bytes of a fixed pseudo-random sequence (xorshift32 from `seed`): the same data on every run. */
function seeded(size: number, seed: number): Buffer {
  const out = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

test('an insertion near the start changes only the first chunks (content-defined boundaries resynchronise)', () => {
  // Fixed data: how soon the cuts line up again varies with the data, and random data made this flaky (once in
  // many runs, 4 chunks differed). Over these seeds it is at most 3, every run.
  for (const seed of [1, 7, 42, 1234, 99991]) {
    const data = seeded(600_000, seed);
    const shifted = Buffer.concat([data.subarray(0, 1000), Buffer.from('inserted bytes'), data.subarray(1000)]);
    const a = new Set(chunkAll(data, []).map((c) => c.toString('hex')));
    const b = chunkAll(shifted, []);
    const shared = b.filter((c) => a.has(c.toString('hex'))).length;
    assert.ok(shared >= b.length - 3, `seed ${seed}: only ${shared} of ${b.length} chunks shared`);
  }
});

test('default sizes give about 2 MiB chunks between 512 KiB and 8 MiB', () => {
  const data = randomBytes(40 * 1024 * 1024);
  const chunks = chunkAll(data, [1 << 20], { min: 512 * 1024, avg: 2 * 1024 * 1024, max: 8 * 1024 * 1024 });
  const mean = data.length / chunks.length;
  assert.ok(mean > 1.2 * 1024 * 1024 && mean < 4 * 1024 * 1024, `mean chunk ${mean}`);
  chunks.slice(0, -1).forEach((c) => assert.ok(c.length >= 512 * 1024 && c.length <= 8 * 1024 * 1024));
});

test('a stream of zeros is cut at max size', () => {
  const chunks = chunkAll(Buffer.alloc(100_000), [], small);
  assert.ok(chunks.slice(0, -1).every((c) => c.length === small.max));
});

/** `data` cut into pieces of the given sizes (repeated), each copied into memory of its own, with its end offset. */
function* ownPieces(data: Buffer, sizes: readonly number[]): Generator<{ piece: Buffer<ArrayBuffer>; end: number }> {
  for (let pos = 0, i = 0; pos < data.length; i++) {
    const end = Math.min(data.length, pos + (sizes[i % sizes.length] as number));
    const piece = Buffer.allocUnsafeSlow(end - pos); // not a slice of Node's pool
    data.copy(piece, 0, pos, end);
    pos = end;
    yield { piece, end };
  }
}

test('every chunk is a buffer of its own: the pieces pushed can be freed at once without changing any chunk', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 200_000 }), fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 5 }), (size, sizes) => {
      const data = randomBytes(size);
      const chunker = new Chunker(small);
      const chunks: Buffer[] = [];
      for (const { piece } of ownPieces(data, sizes)) {
        chunks.push(...chunker.push(piece));
        piece.buffer.transfer(0); // the pusher frees its piece
      }
      const last = chunker.finish();
      if (last) chunks.push(last);
      assert.ok(Buffer.concat(chunks).equals(data));
      for (const c of chunks) assert.equal(c.buffer.byteLength, c.length, 'the chunk is all of its memory');
    }),
    { numRuns: 40 },
  );
});

test('pieces handed over (owned) wait uncopied, give the same chunks, and are freed once all of them is in chunks', () => {
  fc.assert(
    // Pieces of at least 100 bytes: each push checks every piece still waiting (at most max / 100 of them).
    fc.property(fc.integer({ min: 1, max: 200_000 }), fc.array(fc.integer({ min: 100, max: 70_000 }), { minLength: 1, maxLength: 5 }), (size, sizes) => {
      const data = randomBytes(size);
      const chunker = new Chunker(small);
      const chunks: Buffer[] = [];
      const pieces: Array<{ piece: Buffer; end: number }> = [];
      let freed = 0;
      for (const { piece, end } of ownPieces(data, sizes)) {
        pieces.push({ piece, end });
        chunks.push(...chunker.push(piece, true));
        // Every piece whose last byte is in a chunk by now has been freed; the others are intact.
        const chunked = chunks.reduce((n, c) => n + c.length, 0);
        for (; freed < pieces.length && (pieces[freed] as { end: number }).end <= chunked; freed++) assert.ok((pieces[freed]?.piece.buffer as ArrayBuffer).detached);
        for (const p of pieces.slice(freed)) assert.equal((p.piece.buffer as ArrayBuffer).detached, false, `piece ending at ${p.end}, ${chunked} bytes chunked`);
      }
      const last = chunker.finish();
      if (last) chunks.push(last);
      assert.ok(Buffer.concat(chunks).equals(data));
      assert.deepEqual(chunks.map((c) => c.length), chunkAll(data, []).map((c) => c.length));
      assert.ok(pieces.every((p) => (p.piece.buffer as ArrayBuffer).detached), 'all freed at the end');
    }),
    { numRuns: 40 },
  );
});
