import { createHash } from 'node:crypto';
import { IbsError } from './errors.ts';

/**
 * Index files map an archive's byte stream to chunks.
 *
 * Dynamic index (`*.didx`, content-defined chunks), little-endian:
 *   header 64 bytes: magic "IBSdidx1" | ctime u64 | entry count u64 | SHA-256 of the entries (32) | zero (8)
 *   entries, 40 bytes each: end offset u64 (exclusive, strictly increasing) | digest (32)
 *
 * Fixed index (`*.fidx`, fixed-size chunks of images):
 *   header 64 bytes: magic "IBSfidx1" | ctime u64 | total size u64 | chunk size u64 | SHA-256 of digests (32)
 *   digests, 32 bytes each; chunk i covers [i*chunkSize, min(size, (i+1)*chunkSize)).
 */

export const INDEX_HEADER = 64;
const DIDX_MAGIC = Buffer.from('IBSdidx1', 'latin1');
const FIDX_MAGIC = Buffer.from('IBSfidx1', 'latin1');
/** No single chunk of any index may be larger; keeps readers' memory bounded. */
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

export interface IndexEntry {
  /** Exclusive end offset of the chunk in the archive stream. */
  end: number;
  digest: string;
}

export interface DynamicIndex {
  kind: 'dynamic';
  ctime: number;
  entries: IndexEntry[];
}

export interface FixedIndex {
  kind: 'fixed';
  ctime: number;
  size: number;
  chunkSize: number;
  digests: string[];
}

export type ArchiveIndex = DynamicIndex | FixedIndex;

export function encodeDynamicIndex(index: Omit<DynamicIndex, 'kind'>): Buffer {
  const body = Buffer.alloc(index.entries.length * 40);
  let previous = 0;
  index.entries.forEach((entry, i) => {
    if (!(entry.end > previous)) throw new RangeError(`Index entry ${i}: end ${entry.end} is not after ${previous}`);
    previous = entry.end;
    body.writeBigUInt64LE(BigInt(entry.end), i * 40);
    body.write(entry.digest, i * 40 + 8, 32, 'hex');
  });
  const header = Buffer.alloc(INDEX_HEADER);
  DIDX_MAGIC.copy(header);
  header.writeBigUInt64LE(BigInt(index.ctime), 8);
  header.writeBigUInt64LE(BigInt(index.entries.length), 16);
  createHash('sha256').update(body).digest().copy(header, 24);
  return Buffer.concat([header, body]);
}

export function encodeFixedIndex(index: Omit<FixedIndex, 'kind'>): Buffer {
  const expected = index.size === 0 ? 0 : Math.ceil(index.size / index.chunkSize);
  if (index.digests.length !== expected) throw new RangeError(`Fixed index: ${index.digests.length} digests for ${expected} chunks`);
  const body = Buffer.alloc(index.digests.length * 32);
  index.digests.forEach((digest, i) => body.write(digest, i * 32, 32, 'hex'));
  const header = Buffer.alloc(INDEX_HEADER);
  FIDX_MAGIC.copy(header);
  header.writeBigUInt64LE(BigInt(index.ctime), 8);
  header.writeBigUInt64LE(BigInt(index.size), 16);
  header.writeBigUInt64LE(BigInt(index.chunkSize), 24);
  createHash('sha256').update(body).digest().copy(header, 32);
  return Buffer.concat([header, body]);
}

function corrupt(what: string, problem: string): IbsError {
  return new IbsError('CORRUPT', `Index ${what}: ${problem}`);
}

function readSafeU64(buf: Buffer, offset: number, what: string): number {
  const value = buf.readBigUInt64LE(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(what, `value ${value} at offset ${offset} is too large`);
  return Number(value);
}

/** Parses and fully checks an index file (magic, length, checksum, monotonic offsets, chunk size bounds). */
export function decodeIndex(data: Uint8Array, what: string): ArchiveIndex {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (buf.length < INDEX_HEADER) throw corrupt(what, `${buf.length} bytes is shorter than the ${INDEX_HEADER}-byte header`);
  const magic = buf.subarray(0, 8);
  const ctime = readSafeU64(buf, 8, what);
  const body = buf.subarray(INDEX_HEADER);
  if (magic.equals(DIDX_MAGIC)) {
    const count = readSafeU64(buf, 16, what);
    if (body.length !== count * 40) throw corrupt(what, `${body.length} bytes of entries for ${count} entries of 40 bytes`);
    if (!createHash('sha256').update(body).digest().equals(buf.subarray(24, 56))) throw corrupt(what, 'checksum mismatch');
    if (buf.subarray(56, INDEX_HEADER).some((b) => b !== 0)) throw corrupt(what, 'reserved header bytes are not zero');
    const entries: IndexEntry[] = [];
    let previous = 0;
    for (let i = 0; i < count; i++) {
      const end = readSafeU64(body, i * 40, what);
      if (end <= previous || end - previous > MAX_CHUNK_SIZE) throw corrupt(what, `entry ${i} ends at ${end} after ${previous}`);
      previous = end;
      entries.push({ end, digest: body.toString('hex', i * 40 + 8, i * 40 + 40) });
    }
    return { kind: 'dynamic', ctime, entries };
  }
  if (magic.equals(FIDX_MAGIC)) {
    const size = readSafeU64(buf, 16, what);
    const chunkSize = readSafeU64(buf, 24, what);
    if (chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) throw corrupt(what, `chunk size ${chunkSize} out of range`);
    const count = size === 0 ? 0 : Math.ceil(size / chunkSize);
    if (body.length !== count * 32) throw corrupt(what, `${body.length} bytes of digests for ${count} chunks`);
    if (!createHash('sha256').update(body).digest().equals(buf.subarray(32, 64))) throw corrupt(what, 'checksum mismatch');
    const digests: string[] = [];
    for (let i = 0; i < count; i++) digests.push(body.toString('hex', i * 32, i * 32 + 32));
    return { kind: 'fixed', ctime, size, chunkSize, digests };
  }
  throw corrupt(what, 'unknown magic');
}

export interface ChunkSpan {
  digest: string;
  start: number;
  end: number;
}

/** The chunks of an index with their byte ranges, in stream order. */
export function indexChunks(index: ArchiveIndex): ChunkSpan[] {
  if (index.kind === 'dynamic') {
    let start = 0;
    return index.entries.map((e) => {
      const span = { digest: e.digest, start, end: e.end };
      start = e.end;
      return span;
    });
  }
  return index.digests.map((digest, i) => ({ digest, start: i * index.chunkSize, end: Math.min(index.size, (i + 1) * index.chunkSize) }));
}

export function indexSize(index: ArchiveIndex): number {
  return index.kind === 'fixed' ? index.size : (index.entries.at(-1)?.end ?? 0);
}

/** Index of the chunk that holds byte `offset`, given the chunks' end offsets (increasing); their count when past the end. */
export function chunkAt(chunkEnds: ArrayLike<number>, offset: number): number {
  let lo = 0;
  let hi = chunkEnds.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((chunkEnds[mid] as number) <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Which chunks serve byte ranges of a stream (flat `[start, end, start, end, …]`, in the order they are read;
 * they may repeat, overlap or go back): `order`, each chunk once, in the order it is first needed, and `uses`,
 * per chunk, how many ranges need it (so that a reader can keep a chunk exactly until its last use).
 */
export function planRanges(chunkEnds: ArrayLike<number>, ranges: ArrayLike<number>): { order: number[]; uses: Uint32Array } {
  const uses = new Uint32Array(chunkEnds.length);
  const order: number[] = [];
  for (let r = 0; r < ranges.length; r += 2) {
    const end = ranges[r + 1] as number;
    for (let i = chunkAt(chunkEnds, ranges[r] as number); i < chunkEnds.length && (i === 0 ? 0 : (chunkEnds[i - 1] as number)) < end; i++) {
      if (uses[i] === 0) order.push(i);
      uses[i] = (uses[i] as number) + 1;
    }
  }
  return { order, uses };
}

/** The chunks that overlap the byte range [start, end). */
export function chunksInRange(index: ArchiveIndex, start: number, end: number): ChunkSpan[] {
  const spans = indexChunks(index);
  const lo = chunkAt(spans.map((s) => s.end), start);
  const out: ChunkSpan[] = [];
  for (let i = lo; i < spans.length && (spans[i] as ChunkSpan).start < end; i++) out.push(spans[i] as ChunkSpan);
  return out;
}
