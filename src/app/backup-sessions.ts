import { randomUUID } from 'node:crypto';
import { IbsError, formatSnapshot, parseBackupId, parseBackupTime, parseBackupType, parseManifest, parseNamespace, type ManifestFile } from '../core/index.ts';
import { Datastore, SnapshotUpload } from '../datastore/index.ts';
import type { StorageBackend } from '../storage/index.ts';
import type { AppContext } from './context.ts';

interface Session {
  upload: SnapshotUpload;
  backend: StorageBackend;
  authId: string;
  lastUsed: number;
  busy: number;
}

const FRAME_HEADER = 36;

/**
 * Backups arriving over the API: one SnapshotUpload per session (so every check of a local backup applies),
 * owned by the API identity that started it. Idle sessions are aborted after `idleMs`: a client that lost its
 * connection leaves no snapshot, and the chunks that did arrive stay for the next run and GC.
 */
/** Per identity, how many recently uploaded digests are remembered (about 100 bytes each). */
const RECENT_LIMIT = 200_000;
const RECENT_MS = 24 * 3600_000;

export class BackupSessions {
  readonly #sessions = new Map<string, Session>();
  /** Chunks each identity uploaded in recent sessions, with the time: what an interrupted backup left. */
  readonly #recent = new Map<string, Map<string, number>>();
  readonly #idleMs: number;
  readonly #timer: NodeJS.Timeout;

  constructor(options: { idleMs?: number } = {}) {
    this.#idleMs = options.idleMs ?? 10 * 60_000;
    this.#timer = setInterval(() => void this.#sweep(), Math.min(this.#idleMs, 30_000));
    this.#timer.unref();
  }

  async start(ctx: AppContext, input: { store: string; ns?: string; type: string; id: string; time: number; keyFingerprint?: string }): Promise<{ session: string; snapshot: string; known: string[] }> {
    const ref = { ns: parseNamespace(input.ns ?? ''), type: parseBackupType(input.type), id: parseBackupId(input.id), time: parseBackupTime(String(input.time)) };
    const config = await ctx.datastores.get(input.store);
    const backend = ctx.openBackend(config);
    try {
      const ds = await Datastore.open(backend, { signal: ctx.signal });
      const upload = await SnapshotUpload.begin(ds, ref, { owner: ctx.authId, keyFingerprint: input.keyFingerprint ?? null, verifyChunks: true });
      const session = randomUUID();
      this.#sessions.set(session, { upload, backend, authId: ctx.authId, lastUsed: Date.now(), busy: 0 });
      return { session, snapshot: formatSnapshot(ref), known: [...upload.known] };
    } catch (error) {
      await backend.close();
      throw error;
    }
  }

  async #use<T>(session: string, authId: string, fn: (s: Session) => Promise<T>): Promise<T> {
    const s = this.#sessions.get(session);
    if (!s) throw new IbsError('NOT_FOUND', `No backup session ${session} (finished, aborted, or idle for too long)`);
    if (s.authId !== authId) throw new IbsError('PERMISSION_DENIED', `Backup session ${session} belongs to ${s.authId}`);
    s.busy++;
    s.lastUsed = Date.now();
    try {
      return await fn(s);
    } finally {
      s.busy--;
      s.lastUsed = Date.now();
    }
  }

  /** Stores a batch of chunks: frames of digest (32 bytes) | blob length (u32 LE) | blob. */
  chunks(session: string, authId: string, body: Buffer): Promise<{ existed: boolean[] }> {
    return this.#use(session, authId, async (s) => {
      const frames: Array<{ digest: string; blob: Buffer }> = [];
      for (let pos = 0; pos < body.length; ) {
        if (pos + FRAME_HEADER > body.length) throw new IbsError('INVALID_ARGUMENT', `Chunk batch: truncated frame header at byte ${pos}`);
        const digest = body.toString('hex', pos, pos + 32);
        const length = body.readUInt32LE(pos + 32);
        if (pos + FRAME_HEADER + length > body.length) throw new IbsError('INVALID_ARGUMENT', `Chunk batch: frame at byte ${pos} claims ${length} bytes beyond the body`);
        frames.push({ digest, blob: body.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + length) });
        pos += FRAME_HEADER + length;
      }
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

  file(session: string, authId: string, file: ManifestFile, data: Buffer): Promise<void> {
    return this.#use(session, authId, (s) => s.upload.putFile(file, data));
  }

  async commit(session: string, authId: string, manifestJson: unknown): Promise<{ snapshot: string }> {
    const result = await this.#use(session, authId, async (s) => {
      const manifest = parseManifest(Buffer.from(JSON.stringify(manifestJson)), formatSnapshot(s.upload.ref));
      await s.upload.commit(manifest);
      return { snapshot: formatSnapshot(s.upload.ref) };
    });
    await this.#end(session);
    return result;
  }

  async abort(session: string, authId: string): Promise<void> {
    await this.#use(session, authId, (s) => s.upload.abort());
    await this.#end(session);
  }

  async #end(session: string): Promise<void> {
    const s = this.#sessions.get(session);
    if (!s) return;
    this.#sessions.delete(session);
    await s.backend.close();
  }

  async #sweep(): Promise<void> {
    const now = Date.now();
    for (const [id, s] of this.#sessions) {
      if (s.busy === 0 && now - s.lastUsed > this.#idleMs) {
        await s.upload.abort().catch(() => {});
        await this.#end(id);
      }
    }
  }

  /** Aborts every open session (server shutdown). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    for (const [id, s] of [...this.#sessions]) {
      await s.upload.abort().catch(() => {});
      await this.#end(id);
    }
  }
}
