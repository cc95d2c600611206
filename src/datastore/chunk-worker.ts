/**
 * Worker thread of the ChunkPool. Checks a received chunk (CRC, then decompression and SHA-256 of the
 * plaintext for plain chunks) and sends the blob back (moved, not copied) for storing; digests a backup's
 * chunk and holds it until told to encode it (compression, encryption) or to drop it (a chunk stored before).
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
// Only the blob codec, the key and error helpers: a small module graph keeps each thread's memory low.
import { checkBlobCrc, decodeBlobSync, decompressSync, encodeBlobSync, isEncryptedBlob, readBlobHeader } from '../core/blob.ts';
import { CryptKey } from '../core/crypt-key.ts';
import { toIbsError } from '../core/errors.ts';
import { movable, release } from '../lib/release.ts';

type Job =
  | { type: 'check'; id: number; digest: string; blob: Uint8Array }
  | { type: 'decode'; id: number; digest: string; blob: Uint8Array; key?: Uint8Array }
  | { type: 'digest'; id: number; chunk: Uint8Array; key?: Uint8Array }
  | { type: 'encode'; id: number; held: number; compress: boolean }
  | { type: 'drop'; held: number };

/** Chunks digested and waiting for the decision (encode or drop), by the id of their digest job. */
const held = new Map<number, { chunk: Uint8Array; key: CryptKey | undefined }>();
const keys = new Map<string, CryptKey>();

function check(job: Extract<Job, { type: 'check' }>): void {
  const what = `chunk ${job.digest}`;
  const header = checkBlobCrc(job.blob, what);
  if (!isEncryptedBlob(header)) {
    let plain: Uint8Array = job.blob.subarray(header.headerSize);
    if (header.encoding === 'zstd') plain = decompressSync(plain, what);
    const actual = createHash('sha256').update(plain).digest('hex');
    // Decompressed here and seen by nobody else: freed now rather than by a collection later.
    if (plain.buffer !== job.blob.buffer) release(plain);
    if (actual !== job.digest) throw Object.assign(new Error(`Chunk ${job.digest}: content digest is ${actual} (damaged chunk)`), { code: 'CORRUPT' });
  }
  parentPort?.postMessage({ id: job.id, blob: job.blob }, [job.blob.buffer as ArrayBuffer]);
}

/** The key whose raw bytes a job carries (made once per thread and key). */
function keyOf(raw: Uint8Array | undefined): CryptKey | undefined {
  if (!raw) return undefined;
  const hex = Buffer.from(raw).toString('hex');
  let key = keys.get(hex);
  if (!key) keys.set(hex, (key = new CryptKey(raw)));
  return key;
}

/** Decodes a stored chunk (CRC, decryption, decompression) and checks its digest; sends the plaintext. */
function decode(job: Extract<Job, { type: 'decode' }>): void {
  const what = `chunk ${job.digest}`;
  const key = keyOf(job.key);
  const encrypted = isEncryptedBlob(readBlobHeader(job.blob, what));
  const plain = decodeBlobSync(job.blob, key, what);
  const actual = encrypted && key ? key.chunkDigest(plain) : createHash('sha256').update(plain).digest('hex');
  if (actual !== job.digest) throw Object.assign(new Error(`Chunk ${job.digest}: content digest is ${actual} (damaged chunk)`), { code: 'CORRUPT' });
  // Decoded into memory of its own (moved with it), or a view of a raw blob (copied).
  const own = plain.buffer !== job.blob.buffer;
  const out = movable(plain, own);
  parentPort?.postMessage({ id: job.id, blob: out }, [out.buffer]);
  release(job.blob);
}

function digest(job: Extract<Job, { type: 'digest' }>): void {
  const key = keyOf(job.key);
  const d = key ? key.chunkDigest(job.chunk) : createHash('sha256').update(job.chunk).digest('hex');
  held.set(job.id, { chunk: job.chunk, key });
  parentPort?.postMessage({ id: job.id, digest: d });
}

function encode(job: Extract<Job, { type: 'encode' }>): void {
  const h = held.get(job.held);
  if (!h) throw new Error(`no chunk held for job ${job.held}`);
  held.delete(job.held);
  try {
    // A small blob may be a slice of this thread's buffer pool, which must not move: it goes as a copy.
    const blob = movable(encodeBlobSync(h.chunk, { compress: job.compress, key: h.key }));
    parentPort?.postMessage({ id: job.id, blob }, [blob.buffer]);
  } finally {
    release(h.chunk);
  }
}

parentPort?.on('message', (job: Job) => {
  if (job.type === 'drop') {
    const h = held.get(job.held);
    held.delete(job.held);
    if (h) release(h.chunk);
    return;
  }
  try {
    if (job.type === 'check') check(job);
    else if (job.type === 'decode') decode(job);
    else if (job.type === 'digest') digest(job);
    else encode(job);
  } catch (error) {
    const e = error as Error & { code?: string };
    parentPort?.postMessage({ id: job.id, error: { code: e.code === 'CORRUPT' ? 'CORRUPT' : toIbsError(error).code, message: e.message } });
  }
});
