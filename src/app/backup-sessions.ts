import { formatSnapshot, parseBackupId, parseBackupTime, parseBackupType, parseManifest, parseNamespace, type ManifestFile } from '../core/index.ts';
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
      session = this.#sessions.open(ctx.authId, { upload, backend, store: input.store });
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

  /** Stores a batch of chunks: frames of digest (32 bytes) | blob length (u32 LE) | blob. */
  chunks(session: string, authId: string, body: Buffer | readonly Buffer[]): Promise<{ existed: boolean[] }> {
    return this.#use(session, authId, async (s) => {
      const frames = parseChunkFrames(body, 'Chunk batch');
      // A few chunks at a time: each is decompressed to be checked, and batches arrive several at once.
      const existed = await mapConcurrent(frames, 4, async (f) => (await s.upload.insertChunk(f.digest, f.blob)).existed);
      this.#uploads.remember(authId, s.store, frames.map((f) => f.digest));
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

  /** Reads back the chunks the session newly stored and checks them; returns those that failed (moved aside). */
  verify(session: string, authId: string): Promise<{ bad: string[] }> {
    return this.#use(session, authId, async (s) => ({ bad: await s.upload.verifyReceived() }));
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

  async abort(session: string, authId: string): Promise<void> {
    await this.#use(session, authId, (s) => s.upload.abort());
    await this.#sessions.end(session);
  }

  /** Aborts every open session (server shutdown). */
  close(): Promise<void> {
    return this.#sessions.close();
  }
}
