import {
  archiveNamesOf,
  IbsError,
  decodeBlob,
  decodeIndex,
  formatSnapshot,
  indexChunks,
  indexSize,
  chunksInRange,
  readBlobHeader,
  isEncryptedBlob,
  sha256Hex,
  snapshotPath,
  verifyManifestSignature,
  type ArchiveIndex,
  type ChunkSpan,
  type CryptKey,
  type Manifest,
  type SnapshotRef,
} from '../core/index.ts';
import { throwIfAborted } from '../lib/index.ts';
import { isStorageError, type OpOptions } from '../storage/index.ts';
import type { Datastore } from './datastore.ts';
import type { ChunkPool } from './chunk-pool.ts';
import { verifyChunkContent } from './chunk-store.ts';

export interface ReaderOptions extends OpOptions {
  key?: CryptKey | undefined;
  /** Threads that decode and check the chunks (else the main thread and Node's thread pool do). */
  pool?: ChunkPool | undefined;
}

/** Where a reader gets a snapshot's bytes: a datastore here, or a server through the API. */
export interface SnapshotSource {
  /** A file of the snapshot directory (manifest, index, blob), unchecked; NOT_FOUND when missing. */
  readFile(filename: string, options?: OpOptions): Promise<Buffer>;
  /** A chunk's stored blob, unchecked; NOT_FOUND when missing. */
  chunkBlob(digest: string, options?: OpOptions): Promise<Buffer>;
}

/** The source of a snapshot in a datastore. */
export function datastoreSource(ds: Datastore, ref: SnapshotRef): SnapshotSource {
  return {
    readFile: async (filename, options = {}) => {
      try {
        return await ds.backend.read(`${snapshotPath(ref)}${filename}`, options);
      } catch (error) {
        if (isStorageError(error, 'not-found')) throw new IbsError('NOT_FOUND', `Snapshot ${formatSnapshot(ref)}: file "${filename}" is missing`);
        throw error;
      }
    },
    // Unchecked, as the interface says: whoever decodes it checks the CRC (once).
    chunkBlob: (digest, options = {}) => ds.chunks.rawBlob(digest, options),
  };
}

/**
 * Reads one snapshot: the manifest (signature checked for encrypted snapshots when a key is given), its files
 * (checksum against the manifest), and archive streams whose chunks are each verified before any byte is
 * returned, so a damaged chunk fails loudly and never yields wrong data.
 */
export class SnapshotReader {
  readonly ref: SnapshotRef;
  readonly manifest: Manifest;
  readonly #source: SnapshotSource;
  readonly #key: CryptKey | undefined;
  readonly #pool: ChunkPool | undefined;
  readonly #indexes = new Map<string, ArchiveIndex>();

  private constructor(source: SnapshotSource, ref: SnapshotRef, manifest: Manifest, options: ReaderOptions) {
    this.#source = source;
    this.ref = ref;
    this.manifest = manifest;
    this.#key = options.key;
    this.#pool = options.pool;
  }

  static async open(ds: Datastore, ref: SnapshotRef, options: ReaderOptions = {}): Promise<SnapshotReader> {
    return SnapshotReader.from(datastoreSource(ds, ref), ref, await ds.readManifest(ref, options), options);
  }

  /** A reader over any source, given the snapshot's (already parsed) manifest. */
  static from(source: SnapshotSource, ref: SnapshotRef, manifest: Manifest, options: ReaderOptions = {}): SnapshotReader {
    if (manifest.keyFingerprint !== undefined && options.key) verifyManifestSignature(manifest, options.key, `Snapshot ${formatSnapshot(ref)}`);
    return new SnapshotReader(source, ref, manifest, options);
  }

  get encrypted(): boolean {
    return this.manifest.keyFingerprint !== undefined;
  }

  #requireKey(what: string): void {
    if (this.encrypted && !this.#key) {
      throw new IbsError('WRONG_KEY', `${what} of snapshot ${formatSnapshot(this.ref)} is encrypted with key ${this.manifest.keyFingerprint}: pass --keyfile with that key`);
    }
  }

  /** A file of the snapshot, checked against the manifest's size and SHA-256. */
  async readFile(filename: string, options: OpOptions = {}): Promise<Buffer> {
    const entry = this.manifest.files.find((f) => f.filename === filename);
    if (!entry) throw new IbsError('NOT_FOUND', `Snapshot ${formatSnapshot(this.ref)} has no file "${filename}" (it has: ${this.manifest.files.map((f) => f.filename).join(', ') || 'none'})`);
    let data: Buffer;
    try {
      data = await this.#source.readFile(filename, options);
    } catch (error) {
      if (error instanceof IbsError && error.code === 'NOT_FOUND') throw new IbsError('CORRUPT', `Snapshot ${formatSnapshot(this.ref)}: file "${filename}" listed in the manifest is missing`);
      throw error;
    }
    if (data.length !== entry.size || sha256Hex(data) !== entry.csum) {
      throw new IbsError('CORRUPT', `Snapshot ${formatSnapshot(this.ref)}: file "${filename}" does not match the manifest checksum`);
    }
    return data;
  }

  /** The decoded blob `NAME.blob`. */
  async readBlob(name: string, options: OpOptions = {}): Promise<Buffer> {
    this.#requireKey(`Blob ${name}`);
    return decodeBlob(await this.readFile(`${name}.blob`, options), this.#key, `blob ${name} of ${formatSnapshot(this.ref)}`);
  }

  /** The index of an archive, by archive name (`root.tar`) or index file name (`root.tar.didx`). */
  async index(name: string, options: OpOptions = {}): Promise<ArchiveIndex> {
    const filename = /\.(didx|fidx)$/.test(name) ? name : this.#indexFileName(name);
    const cached = this.#indexes.get(filename);
    if (cached) return cached;
    const index = decodeIndex(await this.readFile(filename, options), `${filename} of ${formatSnapshot(this.ref)}`);
    this.#indexes.set(filename, index);
    return index;
  }

  #indexFileName(archive: string): string {
    const found = this.manifest.files.find((f) => f.filename === `${archive}.didx` || f.filename === `${archive}.fidx`);
    if (!found) {
      const archives = this.archiveNames();
      throw new IbsError('NOT_FOUND', `Snapshot ${formatSnapshot(this.ref)} has no archive "${archive}" (it has: ${archives.join(', ') || 'none'})`);
    }
    return found.filename;
  }

  /** Names of everything stored with an index: archives and catalogs (`NAME.tar.catalog`). */
  indexedNames(): string[] {
    return this.manifest.files.filter((f) => /\.(didx|fidx)$/.test(f.filename)).map((f) => f.filename.replace(/\.(didx|fidx)$/, ''));
  }

  /**
   * Names of the archives a user can restore (`NAME.tar`, `NAME.img`): a file archive is stored either as its
   * catalog and payload (`NAME.tar.payload`) or, in the older layout, as its tar stream (`NAME.tar`).
   */
  archiveNames(): string[] {
    return archiveNamesOf(this.manifest.files);
  }

  /** Whether file archive `name` is stored as catalog and payload (else as one tar stream, the older layout). */
  hasPayload(name: string): boolean {
    return this.manifest.files.some((f) => f.filename === `${name}.payload.didx`);
  }

  /** A whole indexed stream in memory (for catalogs; archives should be streamed). */
  async readAll(name: string, options: OpOptions = {}): Promise<Buffer> {
    const pieces: Buffer[] = [];
    for await (const piece of this.stream(name, options)) pieces.push(piece);
    return Buffer.concat(pieces);
  }

  async chunkList(name: string, options: OpOptions = {}): Promise<ChunkSpan[]> {
    return indexChunks(await this.index(name, options));
  }

  async archiveSize(name: string, options: OpOptions = {}): Promise<number> {
    return indexSize(await this.index(name, options));
  }

  /**
   * Chunks of an indexed stream, verified, in the order given, as `{ index, data }`; up to `readAhead` are
   * fetched ahead of the consumer. Each `data` is decoded for this stream and kept by nobody else: the consumer
   * may move or free it.
   */
  async *fetchChunks(name: string, order: readonly number[], options: OpOptions & { readAhead?: number } = {}): AsyncGenerator<{ index: number; data: Buffer }> {
    this.#requireKey(`Archive ${name}`);
    const spans = indexChunks(await this.index(name, options));
    const pending: Array<Promise<Buffer>> = [];
    const readAhead = options.readAhead ?? 8;
    let next = 0;
    const more = (): void => {
      for (; next < order.length && pending.length < readAhead; next++) {
        const span = spans[order[next] as number];
        if (!span) throw new RangeError(`fetchChunks: ${name} has no chunk ${order[next]}`);
        pending.push(this.#fetchChunk(name, span, options));
      }
    };
    try {
      for (const index of order) {
        throwIfAborted(options.signal);
        more();
        const data = await (pending.shift() as Promise<Buffer>);
        yield { index, data };
      }
    } finally {
      for (const p of pending) p.catch(() => {});
    }
  }

  /** A chunk of an indexed stream, verified; a damaged or missing one fails naming the stream and the bytes. */
  #fetchChunk(name: string, span: ChunkSpan, options: OpOptions): Promise<Buffer> {
    const pool = this.#pool;
    const p = this.#source
      .chunkBlob(span.digest, { signal: options.signal })
      .then((blob) => (pool ? pool.decode(span.digest, blob, this.#key) : verifyChunkContent(span.digest, blob, this.#key, isEncryptedBlob(readBlobHeader(blob, `chunk ${span.digest}`)))))
      .then((data) => {
        if (data.length !== span.end - span.start) throw new IbsError('CORRUPT', `Chunk ${span.digest} of ${name}: ${data.length} bytes, index says ${span.end - span.start}`);
        return data;
      })
      .catch((error: unknown) => {
        if (error instanceof IbsError && (error.code === 'CORRUPT' || error.code === 'NOT_FOUND')) {
          throw new IbsError('CORRUPT', `Cannot read ${name} of ${formatSnapshot(this.ref)} at bytes ${span.start}-${span.end}: ${error.message}`, { cause: error });
        }
        throw error;
      });
    p.catch(() => {}); // observed when awaited
    return p;
  }

  /**
   * The bytes of an archive, or of the byte ranges given, as a stream of verified chunk data. Up to
   * `readAhead` chunks are fetched and verified in parallel ahead of the consumer. Each piece is (a view of) a
   * buffer decoded for this stream and kept by nobody else: the consumer may move or free its memory.
   */
  async *stream(name: string, options: OpOptions & { ranges?: Array<{ start: number; end: number }>; readAhead?: number } = {}): AsyncGenerator<Buffer> {
    this.#requireKey(`Archive ${name}`);
    const index = await this.index(name, options);
    const size = indexSize(index);
    const ranges = options.ranges ?? [{ start: 0, end: size }];
    const readAhead = options.readAhead ?? 8;
    for (const range of ranges) {
      const spans = chunksInRange(index, range.start, Math.min(range.end, size));
      const pending: Array<Promise<Buffer>> = [];
      let next = 0;
      while (next < spans.length && pending.length < readAhead) pending.push(this.#fetchChunk(name, spans[next++] as ChunkSpan, options));
      for (const span of spans) {
        throwIfAborted(options.signal);
        const data = await (pending.shift() as Promise<Buffer>);
        if (next < spans.length) pending.push(this.#fetchChunk(name, spans[next++] as ChunkSpan, options));
        const from = Math.max(range.start, span.start) - span.start;
        const to = Math.min(range.end, span.end) - span.start;
        yield from === 0 && to === data.length ? data : data.subarray(from, to);
      }
    }
  }
}
