import { checkBlobCrc, readBlobHeader, decodeBlob, assertDigest, isEncryptedBlob, sha256HexAsync, damagedChunk, IbsError, type CryptKey } from '../core/index.ts';
import { mapConcurrent, release, throwIfAborted } from '../lib/index.ts';
import type { ChunkPool } from './chunk-pool.ts';
import { isStorageError, type StorageBackend, type OpOptions, type ReadOptions } from '../storage/index.ts';

export const CHUNK_PREFIX = '.chunks/';
const BAD_SUFFIX = '.bad';

export function chunkKey(digest: string): string {
  return `${CHUNK_PREFIX}${digest.slice(0, 4)}/${digest}`;
}

export interface ChunkInfo {
  digest: string;
  size: number;
  mtimeMs: number;
}

/**
 * Content-addressed chunks on a backend: `.chunks/<first 4 hex>/<digest>`, one blob each. Inserting an
 * existing chunk does not rewrite it but touches it, so that garbage collection (which removes unreferenced
 * chunks older than its cutoff) cannot remove a chunk a running writer has just decided to reuse.
 */
export class ChunkStore {
  readonly #backend: StorageBackend;

  constructor(backend: StorageBackend) {
    this.#backend = backend;
  }

  /** The digests among `digests` that the store does not hold, checked many at a time. */
  async missing(digests: Iterable<string>, options: OpOptions & { concurrency?: number } = {}): Promise<Set<string>> {
    const unique = [...new Set(digests)];
    const present = await mapConcurrent(unique, options.concurrency ?? 32, async (d) => (await this.#backend.stat(chunkKey(assertDigest(d)), options)) !== undefined);
    return new Set(unique.filter((_, i) => !present[i]));
  }

  /**
   * Stores `blob` under `digest` unless present; reports whether it existed (then it is touched). The blob's
   * CRC is checked, unless `encodedHere` says this process has just encoded it (a local backup's own chunks:
   * the encoder computed that CRC a moment ago); with `verify` the plaintext digest is checked too (plain
   * chunks always, encrypted ones when `verify.key` is given). A mismatch throws CORRUPT and stores nothing.
   * With `verify.pool` the blob may move to a thread: use `stored` (the same bytes) afterwards, never `blob`.
   * Where the backend has a ThreadStore, that thread stores it too and `stored` is absent; with `readBack` it
   * then reads a new chunk back and `same` tells whether it matched (without `stored`, nobody else can).
   */
  async insert(
    digest: string,
    blob: Uint8Array,
    options: OpOptions & { verify?: { key?: CryptKey | undefined; pool?: ChunkPool | undefined }; encodedHere?: boolean; readBack?: boolean } = {},
  ): Promise<{ existed: boolean; stored?: Uint8Array; same?: boolean }> {
    assertDigest(digest, 'chunk digest');
    if (options.encodedHere && !options.verify) {
      readBlobHeader(blob, `chunk ${digest}`);
      return { ...(await this.#store(digest, blob, options)), stored: blob };
    }
    let stored = blob;
    const pool = options.verify?.pool;
    let checked = false;
    if (pool && !options.verify?.key) {
      // CRC and plaintext digest (plain chunks) on a worker thread, which also stores it where it can; if the
      // threads themselves fail (not the chunk), the check runs here instead, unless the blob went down with
      // its thread. A chunk the thread could not store comes back checked, to be stored the usual way.
      const length = blob.length;
      const store = this.#backend.threadStore;
      try {
        if (store) {
          throwIfAborted(options.signal);
          const done = await pool.checkAndStore(digest, blob, store, chunkKey(digest), options.readBack === true);
          if (!('blob' in done)) return done;
          stored = done.blob;
        } else stored = await pool.check(digest, blob);
        checked = true;
      } catch (error) {
        if (error instanceof IbsError) throw error;
        if (blob.length !== length) throw new IbsError('UNAVAILABLE', `Chunk ${digest}: the thread checking it failed (${(error as Error).message}); send it again`, { cause: error });
      }
    }
    if (!checked) {
      const header = checkBlobCrc(stored, `chunk ${digest}`);
      const encrypted = isEncryptedBlob(header);
      // Encrypted chunks without their key: the CRC (checked above) is what the receiver can check.
      if (options.verify && (!encrypted || options.verify.key)) await verifyChunkContent(digest, stored, options.verify.key, encrypted);
    }
    return { ...(await this.#store(digest, stored, options)), stored };
  }

  async #store(digest: string, blob: Uint8Array, options: OpOptions): Promise<{ existed: boolean }> {
    const key = chunkKey(digest);
    if (await this.#backend.stat(key, options)) {
      await this.#touch(key, options);
      return { existed: true };
    }
    try {
      await this.#backend.write(key, blob, { ...options, ifNotExists: true });
      return { existed: false };
    } catch (error) {
      if (!isStorageError(error, 'exists')) throw error;
      await this.#touch(key, options);
      return { existed: true };
    }
  }

  async #touch(key: string, options: OpOptions): Promise<void> {
    try {
      await this.#backend.touch(key, options);
    } catch (error) {
      if (!isStorageError(error, 'not-found')) throw error;
    }
  }

  /** The stored blob as it is; NOT_FOUND when missing. */
  async #read(digest: string, options: ReadOptions): Promise<Buffer> {
    try {
      return await this.#backend.read(chunkKey(assertDigest(digest)), { ...options, cold: true });
    } catch (error) {
      if (isStorageError(error, 'not-found')) throw new IbsError('NOT_FOUND', `Chunk ${digest} is missing from the datastore`);
      throw error;
    }
  }

  /** Whether the stored blob is byte for byte `expected` (a read-back after writing). NOT_FOUND when missing. */
  async storedEquals(digest: string, expected: Uint8Array, options: OpOptions = {}): Promise<boolean> {
    // One byte more than expected, so that a longer object differs too; a range read needs no size first.
    const stored = await this.#read(digest, { ...options, range: { start: 0, end: expected.length + 1 } });
    const same = stored.equals(expected);
    release(stored);
    return same;
  }

  /** The stored blob unchecked, for a caller that checks it itself (a reader or a sync target decoding it, verify's threads). */
  async rawBlob(digest: string, options: OpOptions = {}): Promise<Buffer> {
    return this.#read(digest, options);
  }

  /** The plaintext of a chunk, with its digest verified; never returns wrong bytes. */
  async get(digest: string, options: OpOptions & { key?: CryptKey | undefined } = {}): Promise<Buffer> {
    // Decoding checks the CRC.
    const blob = await this.#read(digest, options);
    return verifyChunkContent(digest, blob, options.key, isEncryptedBlob(readBlobHeader(blob, `chunk ${digest}`)));
  }

  /**
   * Reads a stored chunk back and checks it: the digest of plaintext chunks (and of encrypted ones with `key`),
   * the CRC of encrypted ones without. Returns why it is unusable (missing, damaged), or undefined when good.
   */
  async check(digest: string, options: OpOptions & { key?: CryptKey | undefined } = {}): Promise<string | undefined> {
    try {
      const blob = await this.#read(digest, options);
      const encrypted = isEncryptedBlob(readBlobHeader(blob, `chunk ${digest}`));
      // Decoding checks the CRC; without the key, the CRC is what can be checked.
      if (!encrypted || options.key) await verifyChunkContent(digest, blob, options.key, encrypted);
      else checkBlobCrc(blob, `chunk ${digest}`);
      return undefined;
    } catch (error) {
      if (error instanceof IbsError && (error.code === 'NOT_FOUND' || error.code === 'CORRUPT' || error.code === 'WRONG_KEY')) return error.message;
      throw error;
    }
  }

  async touch(digest: string, options: OpOptions = {}): Promise<void> {
    await this.#touch(chunkKey(digest), options);
  }

  async stat(digest: string, options: OpOptions = {}): Promise<ChunkInfo | undefined> {
    const info = await this.#backend.stat(chunkKey(digest), options);
    return info ? { digest, size: info.size, mtimeMs: info.mtimeMs } : undefined;
  }

  async *list(options: OpOptions = {}): AsyncIterable<ChunkInfo> {
    for await (const entry of this.#backend.list(CHUNK_PREFIX, options)) {
      const name = entry.key.slice(entry.key.lastIndexOf('/') + 1);
      if (/^[0-9a-f]{64}$/.test(name)) yield { digest: name, size: entry.size, mtimeMs: entry.mtimeMs };
    }
  }

  async remove(digest: string, options: OpOptions = {}): Promise<void> {
    await this.#backend.delete(chunkKey(digest), options);
  }

  /** Moves a damaged chunk aside as `<digest>.bad` so that it is no longer used and a later write replaces it. */
  async markBad(digest: string, options: OpOptions = {}): Promise<void> {
    const key = chunkKey(digest);
    let data: Buffer;
    try {
      data = await this.#backend.read(key, options);
    } catch (error) {
      if (isStorageError(error, 'not-found')) return;
      throw error;
    }
    await this.#backend.write(`${key}${BAD_SUFFIX}`, data, options);
    await this.#backend.delete(key, options);
  }
}

/** Decodes a chunk and checks its digest (SHA-256 of plaintext, or the keyed digest). Returns the plaintext. */
export async function verifyChunkContent(digest: string, blob: Uint8Array, key: CryptKey | undefined, encrypted: boolean): Promise<Buffer> {
  if (encrypted && !key) {
    throw new IbsError('WRONG_KEY', `Chunk ${digest} is encrypted: a key is needed to check its content`);
  }
  // Checked against its digest below: the CRC would add a pass and catch nothing more.
  const plain = await decodeBlob(blob, key, `chunk ${digest}`, { crc: false, digest });
  // Bound to this digest and authenticated with it by decryption: digesting it again would tell nothing more.
  if (readBlobHeader(blob, `chunk ${digest}`).bound !== undefined) return plain;
  const actual = encrypted && key ? await key.chunkDigestAsync(plain) : await sha256HexAsync(plain);
  if (actual !== digest) throw damagedChunk(digest, actual);
  return plain;
}
