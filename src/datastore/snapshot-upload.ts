import {
  IbsError,
  MANIFEST_NAME,
  decodeIndex,
  encodeManifest,
  formatSnapshot,
  indexChunks,
  parseIndexedName,
  sha256Hex,
  snapshotPath,
  type Manifest,
  type ManifestFile,
  type SnapshotRef,
} from '../core/index.ts';
import { release, throwIfAborted } from '../lib/index.ts';
import { isStorageError, type OpOptions } from '../storage/index.ts';
import type { Datastore } from './datastore.ts';
import { SnapshotReader } from './snapshot-reader.ts';
import { WriterLease } from './writer-lease.ts';
import type { ChunkPool } from './chunk-pool.ts';

/** Where a snapshot writer puts chunks and files: a datastore here, or one behind the API. */
export interface SnapshotSink {
  readonly ref: SnapshotRef;
  /** Chunks the writer may reference without sending them: those of the previous snapshot of the group. */
  readonly known: ReadonlySet<string>;
  /** Stores (or sends) one chunk; keeps no reference to `blob` once the promise settles. */
  insertChunk(digest: string, blob: Uint8Array): Promise<{ existed: boolean }>;
  putFile(file: ManifestFile, data: Buffer): Promise<void>;
  commit(manifest: Manifest): Promise<void>;
  abort(): Promise<void>;
}

export interface UploadOptions extends OpOptions {
  owner: string;
  /** Fingerprint of the key the snapshot is encrypted with (null: not encrypted); the previous snapshot is used for dedup only when it matches. */
  keyFingerprint: string | null;
  /**
   * Check plaintext chunks' digests on receipt and read back what was stored (data from elsewhere: always).
   * False means the chunks are encoded by this process (a local backup): their CRC is not checked again either.
   */
  verifyChunks: boolean;
  /** Worker threads for those checks (else they run on this thread). */
  pool?: ChunkPool | undefined;
  /**
   * Replace an existing snapshot of the same key whose files stay as they are, adding files (a client log
   * added on the source after the snapshot was copied) or sending again chunks it lacks (a copy that failed
   * verification): the old manifest stays valid until `commit` replaces it, and `abort` leaves the snapshot as
   * it was. A file the snapshot has is accepted again only with the same content; its chunks count as sent
   * only where `adopt` finds them stored. Without an existing snapshot this is a plain upload.
   */
  amend?: boolean;
}

/**
 * Receives one snapshot into a datastore and enforces what a writer may do (DESIGN invariants 1, 2, 5):
 * - the datastore must accept writes, the namespace exist, the group be the writer's own, the snapshot new
 *   (or, amending one, its files kept as they are);
 * - chunks from elsewhere (verifyChunks) are checked before they are stored: CRC, and the digest of plaintext
 *   chunks;
 * - an index may reference only chunks uploaded in this session or belonging to the previous snapshot of the
 *   group (a forged index cannot reach anybody else's chunks);
 * - the manifest must list exactly the files uploaded, with their sizes and checksums, and is written last.
 * Holds a writer lease (GC keeps this writer's chunks; prune keeps its base snapshot) until commit or abort.
 */
export class SnapshotUpload implements SnapshotSink {
  readonly ref: SnapshotRef;
  readonly known: ReadonlySet<string>;
  readonly previous: SnapshotReader | undefined;
  readonly #ds: Datastore;
  readonly #options: UploadOptions;
  readonly #lease: WriterLease;
  readonly #uploaded = new Set<string>();
  /** Chunks received from elsewhere that this session stored and has not reported yet: whether the read-back matched. */
  readonly #unverified = new Map<string, Promise<boolean>>();
  readonly #files = new Map<string, ManifestFile>();
  /** Which of `known` (the previous snapshot's chunks) are no longer stored (`#checkBase`). */
  readonly #knownMissing: Promise<Set<string>>;
  /** With `amend`: the files of the snapshot being replaced, which stay valid until commit. */
  readonly #existing: Map<string, ManifestFile>;
  /**
   * With `amend`: the chunks the snapshot being replaced references. The writer may reference them again, but
   * only once `adopt` has found them stored: a copy is replaced because something about it is wrong (a chunk
   * failed verification and was moved aside, say), so its chunks are not taken on trust.
   */
  readonly #amended: ReadonlySet<string>;
  readonly #amending: boolean;
  #done = false;
  /** A `finish` under way, which `abort` waits for. */
  #finishing: Promise<unknown> | undefined;

  private constructor(ds: Datastore, ref: SnapshotRef, options: UploadOptions, lease: WriterLease, known: Set<string>, previous: SnapshotReader | undefined, existing: Manifest | undefined, amended: Set<string>) {
    this.#ds = ds;
    this.#amended = amended;
    this.#existing = new Map((existing?.files ?? []).map((f) => [f.filename, f]));
    this.#amending = existing !== undefined;
    this.ref = ref;
    this.#options = options;
    this.#lease = lease;
    this.known = known;
    this.previous = previous;
    // Which of the previous snapshot's chunks are no longer stored: asked now, while the writer reads and
    // chunks, and awaited when an index reuses them (`#checkBase`).
    this.#knownMissing = known.size > 0 ? ds.chunks.missing(known, { signal: options.signal }) : Promise.resolve(new Set());
    this.#knownMissing.catch(() => {});
  }

  static async begin(ds: Datastore, ref: SnapshotRef, options: UploadOptions): Promise<SnapshotUpload> {
    await ds.assertWritable('start a backup', options);
    await ds.assertNamespace(ref.ns, options);
    const group = { ns: ref.ns, type: ref.type, id: ref.id };
    const owner = await ds.getOwner(group, options);
    if (owner !== undefined && owner !== options.owner) {
      throw new IbsError('PERMISSION_DENIED', `Backup group ${ref.type}/${ref.id} is owned by "${owner}", not by "${options.owner}"`);
    }
    let existing: Manifest | undefined;
    if (await ds.backend.stat(`${snapshotPath(ref)}${MANIFEST_NAME}`, options)) {
      if (!options.amend) throw new IbsError('EXISTS', `Snapshot ${formatSnapshot(ref)} already exists`);
      existing = await ds.readManifest(ref, options);
      if ((existing.keyFingerprint ?? null) !== options.keyFingerprint) {
        // EXISTS, as for a file with other content: a sync then replaces the copy whole (a job's key was changed).
        throw new IbsError('EXISTS', `Snapshot ${formatSnapshot(ref)} exists ${existing.keyFingerprint ? `encrypted with key ${existing.keyFingerprint}` : 'not encrypted'}: an amendment must keep that`);
      }
    }
    // A snapshot of the group that does not read is no base (and does not stop the upload).
    const newest = (await ds.listSnapshots({ ns: ref.ns, group }, { ...options, damaged: [] })).find((s) => s.ref.time < ref.time && s.manifest.unprotected.verifyState?.state !== 'failed');
    const base = newest && (newest.manifest.keyFingerprint ?? null) === options.keyFingerprint ? newest : undefined;
    const lease = await WriterLease.acquire(ds.backend, { kind: 'backup', target: snapshotPath(ref), ...(base ? { base: snapshotPath(base.ref) } : {}) });
    const known = new Set<string>();
    const amended = new Set<string>();
    let previous: SnapshotReader | undefined;
    try {
      if (owner === undefined) await ds.setOwner(group, options.owner, options);
      if (base) {
        previous = await SnapshotReader.open(ds, base.ref, { signal: options.signal });
        for (const name of previous.indexedNames()) for (const span of await previous.chunkList(name)) known.add(span.digest);
      }
      if (existing) {
        // The snapshot being amended keeps its indexes: their chunks may be referenced again, once found stored.
        // An index that no longer reads (damaged, missing) is left out: the amendment writes it again.
        const current = await SnapshotReader.open(ds, ref, { signal: options.signal });
        for (const name of current.indexedNames()) {
          try {
            for (const span of await current.chunkList(name)) amended.add(span.digest);
          } catch (error) {
            if (!(error instanceof IbsError) || (error.code !== 'CORRUPT' && error.code !== 'NOT_FOUND')) throw error;
          }
        }
      }
    } catch (error) {
      await lease.release().catch(() => {});
      throw error;
    }
    return new SnapshotUpload(ds, ref, options, lease, known, previous, existing, amended);
  }

  /**
   * Chunks of the previous snapshot that this one reuses without sending them must still be stored: one lost
   * since (removed by hand, or by a damaged disk) would make this snapshot unrestorable where it uses it. Such
   * a previous snapshot is marked as failed verification, so that the next backup (or sync) does not build on
   * it and sends what it lacks, and this upload fails saying so. A stat per chunk of the previous snapshot,
   * from the start of the upload on: a chunk lost while this upload runs is not seen.
   */
  async #checkBase(digests: Set<string>, what: string): Promise<void> {
    const missing = await this.#knownMissing;
    const gone = [...digests].filter((d) => missing.has(d));
    if (gone.length === 0) return;
    // `known` holds chunks of the previous snapshot only: there is one when a chunk of it is gone.
    const base = (this.previous as SnapshotReader).ref;
    const verifyState = { state: 'failed' as const, time: Math.floor(Date.now() / 1000), failedChunks: gone };
    await this.#ds.updateUnprotected(base, (u) => ({ ...u, verifyState }), { signal: this.#options.signal }).catch(() => {});
    throw new IbsError(
      'CORRUPT',
      `${what} reuses ${gone.length} chunk(s) of the previous snapshot ${formatSnapshot(base)} that are no longer stored (${gone[0]}${gone.length > 1 ? ', …' : ''}); that snapshot is now marked as failed verification, so the next run does not build on it: run it again`,
    );
  }

  #assertOpen(): void {
    if (this.#done) throw new IbsError('INVALID_ARGUMENT', `The upload of ${formatSnapshot(this.ref)} is already finished`);
  }

  /**
   * Of `digests`, those this writer may reference without sending them because they are already stored and
   * `vouched` says it uploaded them itself earlier (a session that did not finish), or the snapshot it amends
   * references them; they become part of this session. Nobody learns about chunks they did not upload.
   */
  async adopt(digests: readonly string[], vouched: (digest: string) => boolean): Promise<string[]> {
    this.#assertOpen();
    const candidates = digests.filter((d) => !this.known.has(d) && !this.#uploaded.has(d) && (this.#amended.has(d) || vouched(d)));
    const missing = await this.#ds.chunks.missing(candidates, { signal: this.#options.signal });
    const adopted = candidates.filter((d) => !missing.has(d));
    for (const d of adopted) {
      await this.#ds.chunks.touch(d, { signal: this.#options.signal });
      this.#uploaded.add(d);
    }
    return [...digests.filter((d) => this.known.has(d) || this.#uploaded.has(d))];
  }

  /**
   * Checks and stores one chunk. With a pool the blob may move to a thread (and back): the caller must not use
   * `blob` afterwards. A chunk received from elsewhere (verifyChunks) that was not stored before is read back
   * at once (by the thread that stored it, or here) and compared byte for byte with what was checked;
   * verifyReceived reports the outcome.
   */
  async insertChunk(digest: string, blob: Uint8Array): Promise<{ existed: boolean }> {
    this.#assertOpen();
    throwIfAborted(this.#options.signal);
    const verify = this.#options.verifyChunks;
    const { existed, stored, same } = await this.#ds.chunks.insert(digest, blob, { signal: this.#options.signal, ...(verify ? { verify: { pool: this.#options.pool }, readBack: true } : { encodedHere: true }) });
    this.#uploaded.add(digest);
    // A blob that came back from a check thread is this upload's alone: freed once it is no longer needed.
    const owned = stored !== undefined && stored !== blob;
    if (!existed && verify && same !== undefined) this.#unverified.set(digest, Promise.resolve(same));
    else if (!existed && verify && stored) {
      const equal = this.#ds.chunks.storedEquals(digest, stored, { signal: this.#options.signal });
      equal.catch(() => {}).finally(() => owned && release(stored));
      this.#unverified.set(digest, equal);
    } else if (owned) release(stored);
    return { existed };
  }

  /**
   * The outcome of reading back the chunks this session newly stored since the last call (each compared byte
   * for byte with the blob whose content was checked on receipt, so what is on disk is exactly what was
   * verified, without decompressing it again). Returns those that failed, moved aside (`.bad`) so that
   * sending them again rewrites them.
   */
  async verifyReceived(): Promise<string[]> {
    this.#assertOpen();
    const entries = [...this.#unverified];
    this.#unverified.clear();
    const ok = await Promise.all(
      entries.map(async ([, same]) => {
        try {
          return await same;
        } catch (error) {
          if (error instanceof IbsError && (error.code === 'NOT_FOUND' || error.code === 'CORRUPT')) return false;
          throw error;
        }
      }),
    );
    const bad = entries.filter((_, i) => !ok[i]).map(([d]) => d);
    for (const d of bad) await this.#ds.chunks.markBad(d, { signal: this.#options.signal });
    return bad;
  }

  async putFile(file: ManifestFile, data: Buffer): Promise<void> {
    this.#assertOpen();
    const what = `${file.filename} of ${formatSnapshot(this.ref)}`;
    const indexed = /^(.+)\.(didx|fidx)$/.exec(file.filename);
    if (indexed) parseIndexedName(indexed[1] as string);
    else if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}\.blob$/.test(file.filename)) throw new IbsError('INVALID_ARGUMENT', `Invalid snapshot file name "${file.filename}": expected NAME.didx, NAME.fidx or NAME.blob`);
    if (file.filename === MANIFEST_NAME || this.#files.has(file.filename)) throw new IbsError('EXISTS', `${what} was already uploaded`);
    if (data.length !== file.size || sha256Hex(data) !== file.csum) throw new IbsError('CORRUPT', `${what}: content does not match its size and checksum`);
    const before = this.#existing.get(file.filename);
    // Rewriting a file with the same content keeps the old manifest valid; other content would break it.
    if (before && (before.size !== file.size || before.csum !== file.csum)) throw new IbsError('EXISTS', `${what}: the snapshot already has this file with other content; an amendment may only add files`);
    if (indexed) {
      const unsent = new Set<string>();
      const fromBase = new Set<string>();
      for (const span of indexChunks(decodeIndex(data, what))) {
        if (this.#uploaded.has(span.digest)) continue;
        if (this.known.has(span.digest)) {
          fromBase.add(span.digest);
          continue;
        }
        if (!this.#amended.has(span.digest)) {
          throw new IbsError('PERMISSION_DENIED', `${what} references chunk ${span.digest}, which was neither uploaded in this session nor part of the previous snapshot of the group`);
        }
        unsent.add(span.digest);
      }
      // Chunks of the snapshot being amended that nobody asked about (adopt): they must be stored.
      const missing = await this.#ds.chunks.missing([...unsent], { signal: this.#options.signal });
      const first = missing.values().next();
      if (!first.done) throw new IbsError('NOT_FOUND', `${what} references chunk ${first.value}, which is not stored (${missing.size} such chunk(s); send them first)`);
      for (const d of unsent) this.#uploaded.add(d);
      await this.#checkBase(fromBase, what);
    }
    await this.#ds.backend.write(`${snapshotPath(this.ref)}${file.filename}`, data, { signal: this.#options.signal });
    this.#files.set(file.filename, file);
  }

  /** Writes the manifest after checking it against the uploaded files; the snapshot then exists. */
  async commit(manifest: Manifest): Promise<void> {
    this.#assertOpen();
    throwIfAborted(this.#options.signal);
    const what = formatSnapshot(this.ref);
    if (manifest.backupType !== this.ref.type || manifest.backupId !== this.ref.id || manifest.backupTime !== this.ref.time) {
      throw new IbsError('INVALID_ARGUMENT', `Manifest names ${manifest.backupType}/${manifest.backupId} at ${manifest.backupTime}, but the upload is ${what}`);
    }
    if (manifest.files.length !== this.#files.size) throw new IbsError('INVALID_ARGUMENT', `Manifest of ${what} lists ${manifest.files.length} files, but ${this.#files.size} were uploaded`);
    for (const f of manifest.files) {
      const uploaded = this.#files.get(f.filename);
      if (!uploaded || uploaded.size !== f.size || uploaded.csum !== f.csum) throw new IbsError('INVALID_ARGUMENT', `Manifest of ${what}: file ${f.filename} was not uploaded as listed`);
    }
    const key = `${snapshotPath(this.ref)}${MANIFEST_NAME}`;
    const encoded = encodeManifest(manifest);
    try {
      // An amendment replaces the manifest in one step (the local backend renames over it).
      await this.#ds.backend.write(key, encoded, { signal: this.#options.signal, ifNotExists: !this.#amending });
    } catch (error) {
      if (isStorageError(error, 'exists')) {
        // Someone else's snapshot: its files are not ours to remove.
        await this.#end();
        throw new IbsError('EXISTS', `Snapshot ${what} was created by someone else meanwhile`);
      }
      // Not committed (a full disk, say): the files this upload added go too, and an amended copy stays as it
      // was. Unless the write did land after all (a store that failed only to answer): then they are its files.
      const stored = await this.#ds.backend.read(key).catch(() => undefined);
      if (!stored?.equals(encoded)) {
        await this.#discard().catch(() => {});
        throw error;
      }
    }
    try {
      for (const name of this.#existing.keys()) if (!this.#files.has(name)) await this.#ds.backend.delete(`${snapshotPath(this.ref)}${name}`).catch(() => {});
    } finally {
      await this.#end();
    }
  }

  /**
   * The end of a copy received from elsewhere: the chunks it newly stored are checked (verifyReceived); when
   * all pass, the files are stored and the manifest committed, and the answer is empty. Otherwise nothing is
   * stored and the failed digests are returned (moved aside): the upload stays open for them to be sent again.
   */
  async finish(files: ReadonlyArray<{ file: ManifestFile; data: Buffer }>, manifest: Manifest): Promise<string[]> {
    const names = new Set(files.map((f) => f.file.filename));
    if (names.size !== files.length) throw new IbsError('INVALID_ARGUMENT', `The files for ${formatSnapshot(this.ref)} name one file twice`);
    const work = (async (): Promise<string[]> => {
      const bad = await this.verifyReceived();
      if (bad.length > 0) return bad;
      await Promise.all(files.map((f) => this.putFile(f.file, f.data)));
      await this.commit(manifest);
      return [];
    })();
    this.#finishing = work;
    try {
      return await work;
    } finally {
      this.#finishing = undefined;
    }
  }

  /**
   * Gives up: the snapshot never appears (an amended one stays as it was); the files it added are removed
   * (chunks stay for reuse and GC). An abort that arrives while `finish` is under way waits for it: it then
   * either committed (and the abort does nothing) or failed; never a manifest written over removed files.
   */
  async abort(): Promise<void> {
    await this.#finishing?.catch(() => {});
    return this.#discard();
  }

  async #discard(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    try {
      for (const name of this.#files.keys()) if (!this.#existing.has(name)) await this.#ds.backend.delete(`${snapshotPath(this.ref)}${name}`);
    } finally {
      await this.#end();
    }
  }

  /** No more writes: the writer lease goes (GC may run past this upload's chunks). */
  async #end(): Promise<void> {
    this.#done = true;
    await this.#lease.release().catch(() => {});
  }
}
