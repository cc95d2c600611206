/**
 * Worker thread of the ChunkPool. Checks a received chunk (CRC, then decompression and SHA-256 of the
 * plaintext for plain chunks) and sends the blob back (moved, not copied) for storing; digests a backup's
 * chunk and holds it until told to encode it (compression, encryption) or to drop it (a chunk stored before).
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
// Only the blob codec, the key and error helpers: a small module graph keeps each thread's memory low.
import { checkBlobCrc, decompressSync, encodeBlobSync, isEncryptedBlob } from '../core/blob.ts';
import { CryptKey } from '../core/crypt-key.ts';
import { toIbsError } from '../core/errors.ts';
import { movable, release } from '../lib/release.ts';

type Job =
  | { type: 'check'; id: number; digest: string; blob: Uint8Array }
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

function digest(job: Extract<Job, { type: 'digest' }>): void {
  let key: CryptKey | undefined;
  if (job.key) {
    const hex = Buffer.from(job.key).toString('hex');
    key = keys.get(hex);
    if (!key) keys.set(hex, (key = new CryptKey(job.key)));
  }
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
    else if (job.type === 'digest') digest(job);
    else encode(job);
  } catch (error) {
    const e = error as Error & { code?: string };
    parentPort?.postMessage({ id: job.id, error: { code: e.code === 'CORRUPT' ? 'CORRUPT' : toIbsError(error).code, message: e.message } });
  }
});
