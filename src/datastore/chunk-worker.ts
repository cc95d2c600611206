/**
 * Worker thread of the ChunkPool. Checks a received chunk (the SHA-256 of a plain chunk's plaintext, the CRC
 * of an encrypted one's) and sends the blob back (moved, not copied) for storing, or stores it itself where
 * the backend offers a ThreadStore; digests a backup's chunk and holds it until told to encode it
 * (compression, encryption) or to drop it (a chunk stored before), or digests and encodes it in one go.
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
// Only the blob codec, the key and error helpers: a small module graph keeps each thread's memory low.
import { checkBlobCrc, decodeBlobSync, encodeBlobSync, isEncryptedBlob, plainDigestSync, readBlobHeader } from '../core/blob.ts';
import { CryptKey } from '../core/crypt-key.ts';
import { damagedChunk } from '../core/digest.ts';
import { IbsError, toIbsError } from '../core/errors.ts';
import { isAllZero } from '../lib/read-pieces.ts';
import { movable, release } from '../lib/release.ts';
import type { ThreadStore, ThreadStoreModule } from '../storage/backend.ts';

type Job =
  | { type: 'check'; id: number; digest: string; blob: Uint8Array }
  | { type: 'check-store'; id: number; digest: string; blob: Uint8Array; store: ThreadStore; key: string; readBack: boolean }
  | { type: 'decode'; id: number; digest: string; blob: Uint8Array; key?: Uint8Array }
  | { type: 'digest'; id: number; chunk: Uint8Array; key?: Uint8Array }
  | { type: 'encode'; id: number; held: number; compress: boolean }
  | { type: 'digest-encode'; id: number; chunk: Uint8Array; key?: Uint8Array; compress: boolean }
  | { type: 'drop'; held: number };

/** Chunks digested and waiting for the decision (encode or drop), by the id of their digest job. */
const held = new Map<number, { chunk: Uint8Array; key: CryptKey | undefined; digest: string }>();
const keys = new Map<string, CryptKey>();

/** The key whose raw bytes a job carries (made once per thread and key). */
function keyOf(raw: Uint8Array | undefined): CryptKey | undefined {
  if (!raw) return undefined;
  const hex = Buffer.from(raw).toString('hex');
  let key = keys.get(hex);
  if (!key) keys.set(hex, (key = new CryptKey(raw)));
  return key;
}

/** The digests of all-zero chunks, by key (none: plain SHA-256) and then length. */
const zeroDigests = new Map<CryptKey | undefined, Map<number, string>>();

/**
 * The digest a chunk of this plaintext is stored under: the key's keyed digest, else SHA-256. A chunk of
 * zeros (a disk image's unused regions, by the hundred) is told by a compare at memory speed, and its digest
 * worked out once per key and length: for 4 MiB, 0.09 ms to compare against 2.4 ms to digest (measured
 * here). On the bench's image (a third zeros: 85 such chunks) that is 0.2 s of CPU, within the backup's
 * spread; a large, mostly empty disk image saves most of its digesting.
 */
function digestOf(plain: Uint8Array, key: CryptKey | undefined): string {
  const digest = (): string => (key ? key.chunkDigest(plain) : createHash('sha256').update(plain).digest('hex'));
  if (plain.length < 65536 || !isAllZero(plain)) return digest();
  let byLength = zeroDigests.get(key);
  if (!byLength) zeroDigests.set(key, (byLength = new Map()));
  let d = byLength.get(plain.length);
  if (d !== undefined) return d;
  d = digest();
  // Lengths of zero chunks are few (fixed-size chunks, the largest CDC chunk, ends of regions): kept up to 64.
  if (byLength.size < 64) byLength.set(plain.length, d);
  return d;
}

/** The plaintext of a stored chunk: decoded (CRC, decryption, decompression) and checked against its digest. */
function verifiedPlaintext(blob: Uint8Array, digest: string, key: CryptKey | undefined): Buffer {
  const what = `chunk ${digest}`;
  const header = readBlobHeader(blob, what);
  const encrypted = isEncryptedBlob(header);
  // Checked against its digest below: the CRC would add a pass and catch nothing more.
  const plain = decodeBlobSync(blob, key, what, { crc: false, digest });
  // Bound to this digest and authenticated with it by decryption: digesting it again would tell nothing more.
  if (header.bound !== undefined) return plain;
  const actual = digestOf(plain, encrypted ? key : undefined);
  if (actual === digest) return plain;
  if (plain.buffer !== blob.buffer) release(plain);
  throw damagedChunk(digest, actual);
}

/** Checks a received chunk: its plaintext digest, or the CRC alone when encrypted. CORRUPT when damaged. */
function checkBlob(digest: string, blob: Uint8Array): void {
  const what = `chunk ${digest}`;
  if (isEncryptedBlob(readBlobHeader(blob, what))) checkBlobCrc(blob, what);
  else {
    // Nobody needs the plaintext: it is hashed piece by piece as it decodes, never held whole.
    const actual = plainDigestSync(blob, what);
    if (actual !== digest) throw damagedChunk(digest, actual);
  }
}

/** Checks a received chunk and sends the blob back. */
function check(job: Extract<Job, { type: 'check' }>): void {
  checkBlob(job.digest, job.blob);
  parentPort?.postMessage({ id: job.id, blob: job.blob }, [job.blob.buffer as ArrayBuffer]);
}

/** The ThreadStore modules this thread has loaded, by URL. */
const stores = new Map<string, Promise<ThreadStoreModule>>();

/**
 * Checks a received chunk and stores it through the backend's ThreadStore; answers whether it existed and,
 * for a new one read back, whether it read back the same. When storing fails, the blob goes back with the
 * error (the chunk passed its check), for the caller to store the usual way with its retries.
 */
async function checkAndStore(job: Extract<Job, { type: 'check-store' }>): Promise<void> {
  checkBlob(job.digest, job.blob);
  let stored: { existed: boolean; same?: boolean };
  try {
    let store = stores.get(job.store.module);
    if (!store) stores.set(job.store.module, (store = import(job.store.module) as Promise<ThreadStoreModule>));
    stored = (await store).putSync(job.store.location, job.key, job.blob, { readBack: job.readBack });
  } catch (error) {
    const e = toIbsError(error);
    parentPort?.postMessage({ id: job.id, blob: job.blob, storeError: { code: e.code, message: e.message } }, [job.blob.buffer as ArrayBuffer]);
    return;
  }
  release(job.blob);
  parentPort?.postMessage({ id: job.id, ...stored });
}

/** Decodes a stored chunk and checks its digest; sends the plaintext. */
function decode(job: Extract<Job, { type: 'decode' }>): void {
  const plain = verifiedPlaintext(job.blob, job.digest, keyOf(job.key));
  // Decoded into memory of its own (moved with it), or a view of a raw blob (copied).
  const out = movable(plain, plain.buffer !== job.blob.buffer);
  parentPort?.postMessage({ id: job.id, blob: out }, [out.buffer]);
  release(job.blob);
}

function digest(job: Extract<Job, { type: 'digest' }>): void {
  const key = keyOf(job.key);
  const d = digestOf(job.chunk, key);
  held.set(job.id, { chunk: job.chunk, key, digest: d });
  parentPort?.postMessage({ id: job.id, digest: d });
}

/** Digests a chunk and encodes it at once (no waiting for the decision): both go back. */
function digestAndEncode(job: Extract<Job, { type: 'digest-encode' }>): void {
  const key = keyOf(job.key);
  try {
    const d = digestOf(job.chunk, key);
    const blob = movable(encodeBlobSync(job.chunk, { compress: job.compress, key, digest: d }));
    parentPort?.postMessage({ id: job.id, digest: d, blob }, [blob.buffer]);
  } finally {
    release(job.chunk);
  }
}

function encode(job: Extract<Job, { type: 'encode' }>): void {
  const h = held.get(job.held);
  if (!h) throw new Error(`no chunk held for job ${job.held}`);
  held.delete(job.held);
  try {
    // A small blob may be a slice of this thread's buffer pool, which must not move: it goes as a copy.
    const blob = movable(encodeBlobSync(h.chunk, { compress: job.compress, key: h.key, digest: h.digest }));
    parentPort?.postMessage({ id: job.id, blob }, [blob.buffer]);
  } finally {
    release(h.chunk);
  }
}

parentPort?.on('message', async (job: Job) => {
  if (job.type === 'drop') {
    const h = held.get(job.held);
    held.delete(job.held);
    if (h) release(h.chunk);
    return;
  }
  try {
    if (job.type === 'check') check(job);
    else if (job.type === 'check-store') await checkAndStore(job);
    else if (job.type === 'decode') decode(job);
    else if (job.type === 'digest') digest(job);
    else if (job.type === 'digest-encode') digestAndEncode(job);
    else encode(job);
  } catch (error) {
    const e = toIbsError(error);
    parentPort?.postMessage({ id: job.id, error: { code: e.code, message: e.message } });
  }
});
