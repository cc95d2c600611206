import {
  IbsError,
  encodeBlob,
  encodeDynamicIndex,
  encodeFixedIndex,
  formatSnapshot,
  parseArchiveName,
  parseIndexedName,
  sha256Hex,
  sha256HexAsync,
  signManifest,
  type ChunkSpan,
  type CryptKey,
  type IndexEntry,
  type Manifest,
  type ManifestFile,
  type SnapshotRef,
  type Unprotected,
} from '../core/index.ts';
import { isWhole, release, throwIfAborted, WorkQueue } from '../lib/index.ts';
import type { OpOptions } from '../storage/index.ts';
import { Chunker, DEFAULT_CHUNKER, type ChunkerOptions } from './chunker.ts';
import type { ChunkPool } from './chunk-pool.ts';
import type { Datastore } from './datastore.ts';
import { SnapshotUpload, type SnapshotSink } from './snapshot-upload.ts';
import { SnapshotReader } from './snapshot-reader.ts';

export const FIXED_CHUNK_SIZE = 4 * 1024 * 1024;

/**
 * What a dynamic archive is made of: bytes, or whole chunks [start, end) of the same stream in the previous
 * snapshot, taken over as they are (a file archive's payload: the catalog says which of their bytes are used).
 */
export type ArchivePiece = Uint8Array | { reuse: { start: number; end: number } };

export interface ArchiveStats {
  name: string;
  /** Bytes of the archive stream. */
  size: number;
  chunks: number;
  /** Chunks newly written to the store, and their stored (compressed/encrypted) bytes. */
  newChunks: number;
  storedBytes: number;
  /** Chunks found in the previous snapshot or already in the store. */
  reusedChunks: number;
  /** Bytes of chunks taken over from the previous snapshot without reading their source. */
  copiedBytes: number;
}

/** Bytes a writer digests on the main thread before it asks for the chunk pool. */
const POOL_AFTER = 32 * 1024 * 1024;

export interface BeginOptions extends OpOptions {
  owner: string;
  key?: CryptKey | undefined;
  compress?: boolean;
  chunker?: ChunkerOptions;
  /** Parallel chunk encodes and writes. */
  concurrency?: number;
  /**
   * Threads that digest and encode the chunks (else the main thread and Node's thread pool do), asked for once
   * the writer has digested 32 MiB: a small backup, or one that finds little changed, starts no threads (their
   * start cost an unchanged backup of the benchmark tree 0.3 s).
   */
  pool?: (() => ChunkPool | undefined) | undefined;
  /** Called for every chunk decided (bytes of the archive stream consumed). */
  onChunk?: (event: { size: number; reused: boolean }) => void;
}

/**
 * Writes one snapshot. Archives are chunked and their chunks stored as they arrive; index files and blobs go
 * into the snapshot's folder; `commit` writes the manifest last, after everything it references is durable, so
 * that the snapshot appears complete or not at all. Holds a writer lease until commit or abort.
 */
export class SnapshotWriter {
  readonly ref: SnapshotRef;
  readonly #sink: SnapshotSink;
  readonly #options: BeginOptions;
  readonly #known: Set<string>;
  readonly #previous: SnapshotReader | undefined;
  readonly #files: ManifestFile[] = [];
  readonly archives: ArchiveStats[] = [];
  #done = false;
  /** Bytes of chunks handed to digesting so far. */
  #digested = 0;
  /** Of the last 16 chunks digested, which were new (a bit each, the latest lowest). */
  #recentNew = 0;

  private constructor(sink: SnapshotSink, options: BeginOptions, previous: SnapshotReader | undefined) {
    this.#sink = sink;
    this.#previous = previous;
    this.ref = sink.ref;
    this.#options = options;
    this.#known = new Set(sink.known);
  }

  /**
   * Starts a snapshot: checks quarantine, namespace, group ownership and that the snapshot does not exist
   * yet; learns the chunks of the group's newest snapshot (unless its verification failed) for dedup.
   */
  static async begin(ds: Datastore, ref: SnapshotRef, options: BeginOptions): Promise<SnapshotWriter> {
    const upload = await SnapshotUpload.begin(ds, ref, { owner: options.owner, keyFingerprint: options.key?.fingerprint ?? null, verifyChunks: false, signal: options.signal });
    // The upload opened the previous snapshot without a key; change detection reads its (possibly encrypted)
    // catalog, so the writer reads it with the backup's key.
    const previous = upload.previous ? await SnapshotReader.open(ds, upload.previous.ref, { key: options.key, signal: options.signal }) : undefined;
    return new SnapshotWriter(upload, options, previous);
  }

  /** A writer over any sink (a remote datastore through the API, say); change detection needs `previous`. */
  static over(sink: SnapshotSink, options: Omit<BeginOptions, 'owner'>, previous?: SnapshotReader): SnapshotWriter {
    return new SnapshotWriter(sink, { ...options, owner: '' }, previous);
  }

  /** The snapshot this one deduplicates against (newest of the group, same key, not failed verification). */
  get previous(): SnapshotReader | undefined {
    return this.#previous;
  }

  get #cryptMode(): 'none' | 'encrypt' {
    return this.#options.key ? 'encrypt' : 'none';
  }

  #assertOpen(): void {
    if (this.#done) throw new RangeError('SnapshotWriter is already committed or aborted');
  }

  async #putFile(filename: string, data: Buffer, archiveSize?: number, sourceStamp?: string): Promise<void> {
    throwIfAborted(this.#options.signal);
    if (this.#files.some((f) => f.filename === filename)) throw new IbsError('EXISTS', `Snapshot ${formatSnapshot(this.ref)} already has a file "${filename}"`);
    const file: ManifestFile = { filename, size: data.length, csum: sha256Hex(data), cryptMode: this.#cryptMode, ...(archiveSize !== undefined ? { archiveSize } : {}), ...(sourceStamp !== undefined ? { sourceStamp } : {}) };
    await this.#sink.putFile(file, data);
    this.#files.push(file);
  }

  /** Stores a small file of the snapshot (a config, a log; at most 16 MiB) as a blob named `NAME.blob`. */
  async addBlob(name: string, data: Uint8Array): Promise<void> {
    this.#assertOpen();
    const blob = await encodeBlob(data, { compress: this.#options.compress ?? true, key: this.#options.key });
    await this.#putFile(`${name}.blob`, blob);
  }

  /**
   * Hands a chunk to the work queue, which digests, encodes and stores it off the main thread; resolves (once
   * queued) to a holder of the promise of the chunk's digest. Chunks seen before in this session or in the previous
   * snapshot are not stored again.
   */
  async #storeChunk(queue: WorkQueue, chunk: Buffer, stats: ArchiveStats, owned: boolean): Promise<{ digest: Promise<string> }> {
    const key = this.#options.key;
    stats.chunks++;
    const digest = Promise.withResolvers<string>();
    digest.promise.catch(() => {}); // the queue reports the failure
    const compress = this.#options.compress ?? true;
    const length = chunk.length;
    const pool = this.#digested >= POOL_AFTER ? this.#options.pool?.() : undefined;
    this.#digested += length;
    // Whether a chunk of this digest is to be stored (not seen before in this session or the previous snapshot).
    const wanted = (d: string): boolean => {
      digest.resolve(d);
      const known = this.#known.has(d);
      this.#recentNew = ((this.#recentNew << 1) | (known ? 0 : 1)) & 0xffff;
      if (known) return false;
      this.#known.add(d);
      return true;
    };
    await queue.submit(async () => {
      try {
        let blob: Buffer | undefined;
        if (pool) {
          // Digested on a thread, then encoded there only if wanted. A chunk of the writer's own moves there;
          // another is copied (its memory stays the caller's).
          // While every one of the last 16 chunks was new, the thread encodes without asking first.
          const speculate = this.#recentNew === 0xffff;
          blob = (await pool.encode(owned ? chunk : new Uint8Array(chunk), { compress, key, speculate }, wanted)).blob;
        } else {
          const d = key ? await key.chunkDigestAsync(chunk) : await sha256HexAsync(chunk);
          if (wanted(d)) blob = await encodeBlob(chunk, { compress, key, digest: d });
        }
        const d = await digest.promise;
        if (!blob) {
          stats.reusedChunks++;
          this.#options.onChunk?.({ size: length, reused: true });
          return;
        }
        const stored = blob.length;
        const { existed } = await this.#sink.insertChunk(d, blob);
        // The sink has stored (or sent) it: the encoded copy is freed now, not by a collection later.
        release(blob);
        if (existed) stats.reusedChunks++;
        else {
          stats.newChunks++;
          stats.storedBytes += stored;
        }
        this.#options.onChunk?.({ size: length, reused: existed });
      } catch (error) {
        digest.reject(error);
        throw error;
      } finally {
        // A chunk gathered for this writer alone is done with once digested and stored: freed now.
        if (owned) release(chunk);
      }
    }, chunk.length);
    return { digest: digest.promise };
  }

  /** Chunks in flight: at most 8, and at most 24 MiB of plaintext (each also has encoded copies in memory). */
  #newQueue(): WorkQueue {
    return new WorkQueue(this.#options.concurrency ?? 8, { maxWeight: 16 * 1024 * 1024 });
  }

  #newStats(name: string): ArchiveStats {
    return { name, size: 0, chunks: 0, newChunks: 0, storedBytes: 0, reusedChunks: 0, copiedBytes: 0 };
  }

  /**
   * Adds a stream cut into content-defined chunks (a file archive's payload or catalog). A piece that takes
   * over whole chunks of the same stream in the previous snapshot ends the chunk being cut there (it comes out
   * shorter) and adds those chunks to the index unread.
   * With `handOver`, the stream's buffers become the writer's: each is freed as soon as it is chunked (for
   * streams that make a buffer for each piece and keep none, such as a tree's payload).
   */
  async addDynamicArchive(name: string, stream: AsyncIterable<ArchivePiece> | Iterable<ArchivePiece>, options: { handOver?: boolean } = {}): Promise<ArchiveStats> {
    this.#assertOpen();
    parseIndexedName(name);
    const chunker = new Chunker(this.#options.chunker ?? DEFAULT_CHUNKER);
    const queue = this.#newQueue();
    const stats = this.#newStats(name);
    const pending: Array<{ end: number; digest: Promise<string> }> = [];
    const take = async (chunk: Buffer): Promise<void> => {
      const length = chunk.length;
      // The chunker's chunks are buffers of their own.
      const { digest } = await this.#storeChunk(queue, chunk, stats, true);
      stats.size += length;
      pending.push({ end: stats.size, digest });
    };
    let byStart: Map<number, ChunkSpan> | undefined;
    const reuse = async (region: { start: number; end: number }): Promise<void> => {
      const previous = this.#previous;
      if (!previous) throw new RangeError(`addDynamicArchive: ${name} takes over chunks of a previous snapshot, but there is none`);
      byStart ??= new Map((await previous.chunkList(name, { signal: this.#options.signal })).map((s) => [s.start, s]));
      const cut = chunker.finish();
      if (cut) await take(cut);
      for (let pos = region.start; pos < region.end; ) {
        const span = byStart.get(pos);
        if (!span || span.end > region.end) throw new IbsError('CORRUPT', `Previous ${name} of ${formatSnapshot(previous.ref)} has no chunk boundaries at bytes ${pos} and ${region.end}`);
        stats.chunks++;
        stats.reusedChunks++;
        stats.copiedBytes += span.end - span.start;
        stats.size += span.end - span.start;
        pending.push({ end: stats.size, digest: Promise.resolve(span.digest) });
        this.#options.onChunk?.({ size: span.end - span.start, reused: true });
        pos = span.end;
      }
    };
    for await (const piece of stream) {
      throwIfAborted(this.#options.signal);
      if (piece instanceof Uint8Array) {
        // A piece handed over becomes the chunker's, which frees it once all of it is in chunks.
        for (const chunk of chunker.push(piece, options.handOver === true)) await take(chunk);
      } else {
        await reuse(piece.reuse);
      }
    }
    const last = chunker.finish();
    if (last) await take(last);
    await queue.drain();
    const entries: IndexEntry[] = [];
    for (const p of pending) entries.push({ end: p.end, digest: await p.digest });
    await this.#putFile(`${name}.didx`, encodeDynamicIndex({ ctime: Math.floor(Date.now() / 1000), entries }), stats.size);
    this.archives.push(stats);
    return stats;
  }

  /**
   * Takes over the previous snapshot's image archive `name` unread when its source stamp equals `stamp`;
   * returns undefined (nothing done) otherwise.
   */
  async reuseFixedArchive(name: string, stamp: string): Promise<ArchiveStats | undefined> {
    this.#assertOpen();
    const previous = this.#previous;
    const file = previous?.manifest.files.find((f) => f.filename === `${name}.fidx`);
    if (!previous || !file || file.sourceStamp !== stamp) return undefined;
    const data = await previous.readFile(file.filename, { signal: this.#options.signal });
    const spans = await previous.chunkList(file.filename);
    const size = spans.at(-1)?.end ?? 0;
    await this.#putFile(file.filename, data, size, stamp);
    const stats = { ...this.#newStats(name), size, chunks: spans.length, reusedChunks: spans.length, copiedBytes: size };
    this.#options.onChunk?.({ size, reused: true });
    this.archives.push(stats);
    return stats;
  }

  /**
   * Adds an image archive (`NAME.img`) cut into fixed 4 MiB chunks; `sourceStamp` enables reuse next time.
   * With `handOver`, the stream's buffers become the writer's: a piece that is a whole chunk and the whole of
   * its memory is stored as it stands (moved, then freed), such as the pieces of `readPieces` at chunk size.
   */
  async addFixedArchive(name: string, stream: AsyncIterable<Uint8Array>, options: { chunkSize?: number; sourceStamp?: string | undefined; handOver?: boolean } = {}): Promise<ArchiveStats> {
    const chunkSize = options.chunkSize ?? FIXED_CHUNK_SIZE;
    this.#assertOpen();
    parseArchiveName(name);
    const queue = this.#newQueue();
    const stats = this.#newStats(name);
    const digestPromises: Array<Promise<string>> = [];
    let pending: Buffer[] = [];
    let pendingSize = 0;
    const flush = async (): Promise<void> => {
      const gathered = pending.length > 1;
      const chunk = gathered ? Buffer.concat(pending) : (pending[0] as Buffer);
      // Gathered, the chunk is a copy of the writer's own; handed over whole (a piece that is the whole of its
      // memory), the piece itself: either moves to a thread and is freed once stored, with no copy.
      const owned = gathered || (options.handOver === true && isWhole(chunk));
      pending = [];
      pendingSize = 0;
      const length = chunk.length;
      digestPromises.push((await this.#storeChunk(queue, chunk, stats, owned)).digest);
      stats.size += length;
    };
    for await (const piece of stream) {
      throwIfAborted(this.#options.signal);
      let buf = Buffer.from(piece.buffer, piece.byteOffset, piece.length);
      while (buf.length > 0) {
        const take = Math.min(chunkSize - pendingSize, buf.length);
        pending.push(buf.subarray(0, take));
        pendingSize += take;
        buf = buf.subarray(take);
        if (pendingSize === chunkSize) await flush();
      }
    }
    if (pendingSize > 0) await flush();
    await queue.drain();
    const digests = await Promise.all(digestPromises);
    await this.#putFile(`${name}.fidx`, encodeFixedIndex({ ctime: Math.floor(Date.now() / 1000), size: stats.size, chunkSize, digests }), stats.size, options.sourceStamp);
    this.archives.push(stats);
    return stats;
  }

  /** Writes the manifest (the snapshot becomes visible) and releases the lease. */
  async commit(unprotected: Unprotected = {}): Promise<Manifest> {
    this.#assertOpen();
    throwIfAborted(this.#options.signal);
    let manifest: Manifest = {
      format: 1,
      backupType: this.ref.type,
      backupId: this.ref.id,
      backupTime: this.ref.time,
      files: this.#files,
      unprotected,
    };
    if (this.#options.key) manifest = signManifest(manifest, this.#options.key);
    this.#done = true;
    await this.#sink.commit(manifest);
    return manifest;
  }

  /** Gives up: the snapshot never appears; files written so far are removed (chunks stay for reuse). */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await this.#sink.abort();
  }
}
