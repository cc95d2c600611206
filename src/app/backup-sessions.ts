import { IbsError, formatSnapshot, parseBackupId, parseBackupTime, parseBackupType, parseManifest, parseNamespace, type ManifestFile } from '../core/index.ts';
import { parseChunkFrames } from '../client/index.ts';
import { Datastore, SnapshotUpload } from '../datastore/index.ts';
import type { StorageBackend } from '../storage/index.ts';
import type { AppContext } from './context.ts';
import { SessionRegistry } from './session-registry.ts';

interface Session {
  upload: SnapshotUpload;
  backend: StorageBackend;
}

/** Per identity, how many recently uploaded digests are remembered (about 100 bytes each). */
const RECENT_LIMIT = 200_000;
const RECENT_MS = 24 * 3600_000;

export class BackupSessions {
  readonly #sessions: SessionRegistry<Session>;
  /** Chunks each identity uploaded in recent sessions, with the time: what an interrupted backup left. */
  readonly #recent = new Map<string, Map<string, number>>();

  constructor(options: { idleMs?: number } = {}) {
    this.#sessions = new SessionRegistry<Session>('backup', {
      ...(options.idleMs !== undefined ? { idleMs: options.idleMs } : {}),
      onEnd: async (s, expired) => {
        if (expired) await s.upload.abort().catch(() => {});
        await s.backend.close();
      },
    });
  }

  async start(ctx: AppContext, input: { store: string; ns?: string; type: string; id: string; time: number; keyFingerprint?: string }): Promise<{ session: string; snapshot: string; known: string[] }> {
    const ref = { ns: parseNamespace(input.ns ?? ''), type: parseBackupType(input.type), id: parseBackupId(input.id), time: parseBackupTime(String(input.time)) };
    const config = await ctx.datastores.get(input.store);
    const backend = ctx.openBackend(config);
    try {
      const ds = await Datastore.open(backend, { signal: ctx.signal });
      const upload = await SnapshotUpload.begin(ds, ref, { owner: ctx.authId, keyFingerprint: input.keyFingerprint ?? null, verifyChunks: true });
      const session = this.#sessions.open(ctx.authId, { upload, backend });
      return { session, snapshot: formatSnapshot(ref), known: [...upload.known] };
    } catch (error) {
      await backend.close();
      throw error;
    }
  }

  #use<T>(session: string, authId: string, fn: (s: Session) => Promise<T>): Promise<T> {
    return this.#sessions.use(session, authId, fn);
  }

  /** Stores a batch of chunks: frames of digest (32 bytes) | blob length (u32 LE) | blob. */
  chunks(session: string, authId: string, body: Buffer): Promise<{ existed: boolean[] }> {
    return this.#use(session, authId, async (s) => {
      const frames = parseChunkFrames(body, 'Chunk batch');
      const existed = await Promise.all(frames.map(async (f) => (await s.upload.insertChunk(f.digest, f.blob)).existed));
      this.#remember(authId, frames.map((f) => f.digest));
      return { existed };
    });
  }

  /** Batched existence query: which of `digests` the session may reference without sending them. */
  known(session: string, authId: string, digests: string[]): Promise<{ known: string[] }> {
    return this.#use(session, authId, async (s) => {
      const recent = this.#recent.get(authId);
      const now = Date.now();
      const known = await s.upload.adopt(digests, (d) => (recent?.get(d) ?? 0) > now - RECENT_MS);
      return { known };
    });
  }

  #remember(authId: string, digests: string[]): void {
    let recent = this.#recent.get(authId);
    if (!recent) this.#recent.set(authId, (recent = new Map()));
    const now = Date.now();
    for (const d of digests) {
      recent.delete(d);
      recent.set(d, now);
    }
    // Oldest first (insertion order): forget beyond the limit.
    for (const d of recent.keys()) {
      if (recent.size <= RECENT_LIMIT) break;
      recent.delete(d);
    }
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
