import { randomUUID } from 'node:crypto';
import { IbsError, datastoreAclPath, effectivePrivileges, parseNamespace, parseSnapshot, type AclEntry, type Manifest } from '../core/index.ts';
import { Datastore, SnapshotReader, datastoreSource, type SnapshotSource } from '../datastore/index.ts';
import type { StorageBackend } from '../storage/index.ts';
import type { AppContext } from './context.ts';

interface Session {
  source: SnapshotSource;
  backend: StorageBackend;
  authId: string;
  files: Set<string>;
  /** Every chunk the snapshot's indexes reference: the only chunks this reader may fetch. */
  chunks: Set<string>;
  lastUsed: number;
}

/**
 * Restores over the API: a session opens one snapshot the caller may read (Datastore.Read on its namespace,
 * or Datastore.Backup as the owner of its group), serves its files, and serves only chunks that snapshot
 * references, so a reader cannot fetch other snapshots' chunks by guessing digests.
 */
export class ReaderSessions {
  readonly #sessions = new Map<string, Session>();
  readonly #idleMs: number;
  readonly #timer: NodeJS.Timeout;

  constructor(options: { idleMs?: number } = {}) {
    this.#idleMs = options.idleMs ?? 10 * 60_000;
    this.#timer = setInterval(() => void this.#sweep(), Math.min(this.#idleMs, 30_000));
    this.#timer.unref();
  }

  async start(ctx: AppContext, acl: AclEntry[], input: { store: string; ns?: string; snapshot: string }): Promise<{ session: string; manifest: Manifest }> {
    const ns = parseNamespace(input.ns ?? '');
    const ref = parseSnapshot(input.snapshot, ns);
    const config = await ctx.datastores.get(input.store);
    const backend = ctx.openBackend(config);
    try {
      const ds = await Datastore.open(backend, { signal: ctx.signal });
      const path = datastoreAclPath(input.store, ref.ns);
      const privileges = effectivePrivileges(acl, ctx.authId, path);
      if (!privileges.has('Datastore.Read')) {
        const owner = await ds.getOwner(ref);
        if (!(privileges.has('Datastore.Backup') && owner === ctx.authId)) {
          throw new IbsError('PERMISSION_DENIED', `Permission check failed: ${ctx.authId} lacks Datastore.Read on ${path} (or Datastore.Backup as owner of ${ref.type}/${ref.id})`);
        }
      }
      const reader = await SnapshotReader.open(ds, ref, { signal: ctx.signal });
      const chunks = new Set<string>();
      for (const name of reader.indexedNames()) for (const span of await reader.chunkList(name)) chunks.add(span.digest);
      const session = randomUUID();
      this.#sessions.set(session, { source: datastoreSource(ds, ref), backend, authId: ctx.authId, files: new Set(reader.manifest.files.map((f) => f.filename)), chunks, lastUsed: Date.now() });
      return { session, manifest: reader.manifest };
    } catch (error) {
      await backend.close();
      throw error;
    }
  }

  #get(session: string, authId: string): Session {
    const s = this.#sessions.get(session);
    if (!s) throw new IbsError('NOT_FOUND', `No reader session ${session} (closed, or idle for too long)`);
    if (s.authId !== authId) throw new IbsError('PERMISSION_DENIED', `Reader session ${session} belongs to ${s.authId}`);
    s.lastUsed = Date.now();
    return s;
  }

  async file(session: string, authId: string, filename: string): Promise<Buffer> {
    const s = this.#get(session, authId);
    if (!s.files.has(filename)) throw new IbsError('NOT_FOUND', `The snapshot has no file "${filename}"`);
    return s.source.readFile(filename);
  }

  async chunk(session: string, authId: string, digest: string): Promise<Buffer> {
    const s = this.#get(session, authId);
    if (!s.chunks.has(digest)) throw new IbsError('PERMISSION_DENIED', `Chunk ${digest} is not part of the snapshot this reader opened`);
    return s.source.chunkBlob(digest);
  }

  async close(session: string, authId: string): Promise<void> {
    const s = this.#get(session, authId);
    this.#sessions.delete(session);
    await s.backend.close();
  }

  async #sweep(): Promise<void> {
    const now = Date.now();
    for (const [id, s] of this.#sessions) {
      if (now - s.lastUsed > this.#idleMs) {
        this.#sessions.delete(id);
        await s.backend.close();
      }
    }
  }

  async closeAll(): Promise<void> {
    clearInterval(this.#timer);
    for (const [id, s] of [...this.#sessions]) {
      this.#sessions.delete(id);
      await s.backend.close();
    }
  }
}
