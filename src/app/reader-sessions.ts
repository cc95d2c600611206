import { IbsError, datastoreAclPath, effectivePrivileges, parseNamespace, parseSnapshot, type AclEntry, type Manifest } from '../core/index.ts';
import { Datastore, SnapshotReader, datastoreSource, type SnapshotSource } from '../datastore/index.ts';
import type { StorageBackend } from '../storage/index.ts';
import { encodeChunkFrames } from '../client/index.ts';
import { mapConcurrent } from '../lib/index.ts';
import type { AppContext } from './context.ts';
import { SessionRegistry } from './session-registry.ts';

interface Session {
  source: SnapshotSource;
  backend: StorageBackend;
  files: Set<string>;
  /** Every chunk the snapshot's indexes reference: the only chunks this reader may fetch. */
  chunks: Set<string>;
}

/**
 * Restores over the API: a session opens one snapshot the caller may read (Datastore.Read on its namespace,
 * or Datastore.Backup as the owner of its group), serves its files, and serves only chunks that snapshot
 * references, so a reader cannot fetch other snapshots' chunks by guessing digests.
 */
export class ReaderSessions {
  readonly #sessions: SessionRegistry<Session>;

  constructor(options: { idleMs?: number } = {}) {
    this.#sessions = new SessionRegistry<Session>('reader', { ...(options.idleMs !== undefined ? { idleMs: options.idleMs } : {}), onEnd: (s) => s.backend.close() });
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
      const session = this.#sessions.open(ctx.authId, { source: datastoreSource(ds, ref), backend, files: new Set(reader.manifest.files.map((f) => f.filename)), chunks });
      return { session, manifest: reader.manifest };
    } catch (error) {
      await backend.close();
      throw error;
    }
  }

  file(session: string, authId: string, filename: string): Promise<Buffer> {
    return this.#sessions.use(session, authId, async (s) => {
      if (!s.files.has(filename)) throw new IbsError('NOT_FOUND', `The snapshot has no file "${filename}"`);
      return s.source.readFile(filename);
    });
  }

  chunk(session: string, authId: string, digest: string): Promise<Buffer> {
    return this.#sessions.use(session, authId, async (s) => {
      if (!s.chunks.has(digest)) throw new IbsError('PERMISSION_DENIED', `Chunk ${digest} is not part of the snapshot this reader opened`);
      return s.source.chunkBlob(digest);
    });
  }

  /** Several chunks of the snapshot in one response (frames, in request order). */
  chunks(session: string, authId: string, digests: string[]): Promise<Buffer> {
    return this.#sessions.use(session, authId, async (s) => {
      for (const d of digests) if (!s.chunks.has(d)) throw new IbsError('PERMISSION_DENIED', `Chunk ${d} is not part of the snapshot this reader opened`);
      const blobs = await mapConcurrent(digests, 8, (d) => s.source.chunkBlob(d));
      return encodeChunkFrames(digests.map((digest, i) => ({ digest, blob: blobs[i] as Buffer })));
    });
  }

  async close(session: string, authId: string): Promise<void> {
    await this.#sessions.use(session, authId, async () => {});
    await this.#sessions.end(session);
  }

  closeAll(): Promise<void> {
    return this.#sessions.close();
  }
}
