import { IbsError, formatSnapshot, parseBackupId, parseBackupTime, parseBackupType, parseManifest, parseNamespace, type ManifestFile } from '../core/index.ts';
import { parseChunkFrames } from '../client/index.ts';
import { mapConcurrent } from '../lib/index.ts';
import { Datastore, SnapshotUpload } from '../datastore/index.ts';
import type { StorageBackend } from '../storage/index.ts';
import type { AppContext } from './context.ts';
import { SessionRegistry } from './session-registry.ts';

interface Session {
  upload: SnapshotUpload;
  backend: StorageBackend;
  store: string;
  batches: BatchLedger;
}

/**
 * Which numbered chunk batches of a session are stored, so that a finish sent right behind its last batches
 * (not after their answers) waits for them here instead of a round trip on the client.
 */
class BatchLedger {
  /** Every batch up to this number is stored. */
  #through = 0;
  readonly #ahead = new Set<number>();
  readonly #waiters = new Set<{ n: number; wake: () => void; fail: (e: unknown) => void }>();
  #closed: unknown;

  stored(seq: number): void {
    if (seq <= this.#through) return;
    this.#ahead.add(seq);
    while (this.#ahead.delete(this.#through + 1)) this.#through++;
    for (const w of this.#waiters) if (w.n <= this.#through) w.wake();
  }

  /** Resolves once batches 1..n are stored; fails when the session ends or the caller goes away first. */
  reach(n: number, signal: AbortSignal): Promise<void> {
    if (n <= this.#through) return Promise.resolve();
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => w.fail(signal.reason ?? new IbsError('ABORTED', 'client went away'));
      const w = {
        n,
        wake: () => (this.#waiters.delete(w), signal.removeEventListener('abort', onAbort), resolve()),
        fail: (e: unknown) => (this.#waiters.delete(w), signal.removeEventListener('abort', onAbort), reject(e)),
      };
      this.#waiters.add(w);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(error: unknown): void {
    this.#closed ??= error;
    for (const w of [...this.#waiters]) w.fail(error);
  }
}

/** Remembers which chunks an identity uploaded to a store, so an interrupted upload can resume (see UploadLedger). */
export interface UploadMemory {
  remember(authId: string, store: string, digests: readonly string[]): void;
  vouched(authId: string, store: string, digests: readonly string[]): Set<string>;
}

/** An UploadMemory in this process only (tests, and clients without a state directory). */
export function inMemoryUploads(): UploadMemory {
  const recent = new Map<string, Map<string, number>>();
  return {
    remember(authId, store, digests) {
      const key = `${authId}\0${store}`;
      let m = recent.get(key);
      if (!m) recent.set(key, (m = new Map()));
      const now = Date.now();
      for (const d of digests) {
        m.delete(d);
        m.set(d, now);
      }
      for (const d of m.keys()) {
        if (m.size <= RECENT_LIMIT) break;
        m.delete(d);
      }
    },
    vouched(authId, store, digests) {
      const m = recent.get(`${authId}\0${store}`);
      const now = Date.now();
      return new Set(digests.filter((d) => (m?.get(d) ?? 0) > now - RECENT_MS));
    },
  };
}

/** Per identity, how many recently uploaded digests are remembered (about 100 bytes each). */
const RECENT_LIMIT = 200_000;
const RECENT_MS = 24 * 3600_000;

export class BackupSessions {
  readonly #sessions: SessionRegistry<Session>;
  /** Chunks each identity uploaded in recent sessions: what an interrupted backup left. */
  readonly #uploads: UploadMemory;

  constructor(options: { idleMs?: number; uploads?: UploadMemory } = {}) {
    this.#uploads = options.uploads ?? inMemoryUploads();
    this.#sessions = new SessionRegistry<Session>('backup', {
      ...(options.idleMs !== undefined ? { idleMs: options.idleMs } : {}),
      onEnd: async (s, expired) => {
        s.batches.close(new IbsError('NOT_FOUND', 'The backup session ended before all of its chunk batches arrived'));
        if (expired) await s.upload.abort().catch(() => {});
        await s.backend.close();
      },
    });
  }

  async start(
    ctx: AppContext,
    input: { store: string; ns?: string; type: string; id: string; time: number; keyFingerprint?: string; amend?: boolean; digests?: string[] },
  ): Promise<{ session: string; snapshot: string; known: string[]; previous?: string; present?: string[] }> {
    const ref = { ns: parseNamespace(input.ns ?? ''), type: parseBackupType(input.type), id: parseBackupId(input.id), time: parseBackupTime(String(input.time)) };
    const config = await ctx.datastores.get(input.store);
    const backend = ctx.openBackend(config);
    let session: string;
    let upload: SnapshotUpload;
    try {
      const ds = await Datastore.open(backend, { signal: ctx.signal });
      upload = await SnapshotUpload.begin(ds, ref, { owner: ctx.authId, keyFingerprint: input.keyFingerprint ?? null, verifyChunks: true, pool: ctx.chunkPool, amend: input.amend === true });
      session = this.#sessions.open(ctx.authId, { upload, backend, store: input.store, batches: new BatchLedger() });
    } catch (error) {
      await backend.close();
      throw error;
    }
    let present: string[] | undefined;
    try {
      // Chunks asked about along with opening: the same answer as a first /known query, one round trip sooner.
      if (input.digests) present = (await this.known(session, ctx.authId, input.digests)).known;
    } catch (error) {
      await this.abort(session, ctx.authId).catch(() => {});
      throw error;
    }
    // The previous snapshot (when its chunks may be referenced): the client reads its catalog for change detection.
    return {
      session,
      snapshot: formatSnapshot(ref),
      known: [...upload.known],
      ...(upload.previous ? { previous: formatSnapshot({ ...upload.previous.ref, ns: [] }) } : {}),
      ...(present ? { present } : {}),
    };
  }

  #use<T>(session: string, authId: string, fn: (s: Session) => Promise<T>): Promise<T> {
    return this.#sessions.use(session, authId, fn);
  }

  /**
   * Stores a batch of chunks: frames of digest (32 bytes) | blob length (u32 LE) | blob. A client that numbers
   * its batches (`seq` from 1) may send `finish` before their answers.
   */
  chunks(session: string, authId: string, body: Buffer | readonly Buffer[], seq?: number): Promise<{ existed: boolean[] }> {
    return this.#use(session, authId, async (s) => {
      const frames = parseChunkFrames(body, 'Chunk batch');
      // A few chunks at a time: each is decompressed to be checked, and batches arrive several at once.
      const existed = await mapConcurrent(frames, 4, async (f) => (await s.upload.insertChunk(f.digest, f.blob)).existed);
      this.#uploads.remember(authId, s.store, frames.map((f) => f.digest));
      if (seq !== undefined) s.batches.stored(seq);
      return { existed };
    });
  }

  /** Batched existence query: which of `digests` the session may reference without sending them. */
  known(session: string, authId: string, digests: string[]): Promise<{ known: string[] }> {
    return this.#use(session, authId, async (s) => {
      const vouched = this.#uploads.vouched(authId, s.store, digests);
      const known = await s.upload.adopt(digests, (d) => vouched.has(d));
      return { known };
    });
  }

  file(session: string, authId: string, file: ManifestFile, data: Buffer): Promise<void> {
    return this.#use(session, authId, (s) => s.upload.putFile(file, data));
  }

  async commit(session: string, authId: string, manifestJson: unknown): Promise<{ snapshot: string }> {
    const result = await this.#use(session, authId, async (s) => {
      const manifest = parseManifest(Buffer.from(JSON.stringify(manifestJson)), formatSnapshot(s.upload.ref));
      await s.upload.commit(manifest);
      return { snapshot: formatSnapshot(s.upload.ref) };
    });
    await this.#sessions.end(session);
    return result;
  }

  /**
   * Ends an upload in one request (`read` gives its body), once batches 1..`after` are stored: checks the
   * chunks it newly stored; when all pass, stores the files and commits the manifest (the session ends).
   * Otherwise answers the failed chunks (moved aside) and commits nothing: the session stays open for them to
   * be sent again.
   */
  async finish(
    session: string,
    authId: string,
    read: () => { after: number; manifest: unknown; files: ReadonlyArray<{ file: ManifestFile; data: Buffer }> },
    signal: AbortSignal,
  ): Promise<{ bad: string[]; snapshot?: string }> {
    const result = await this.#use(session, authId, async (s) => {
      // The body is read once the session is known to be the caller's.
      const input = read();
      const what = formatSnapshot(s.upload.ref);
      const manifest = parseManifest(Buffer.from(JSON.stringify(input.manifest)), what);
      await s.batches.reach(input.after, signal);
      const bad = await s.upload.finish(input.files, manifest);
      return bad.length > 0 ? { bad } : { bad, snapshot: what };
    });
    if (result.snapshot !== undefined) await this.#sessions.end(session);
    return result;
  }

  async abort(session: string, authId: string): Promise<void> {
    await this.#use(session, authId, async (s) => {
      s.batches.close(new IbsError('ABORTED', 'The backup session was aborted'));
      await s.upload.abort();
    });
    await this.#sessions.end(session);
  }

  /** Aborts every open session (server shutdown). */
  close(): Promise<void> {
    return this.#sessions.close();
  }
}
