import { formatNamespace, type GroupRef, type Namespace, type SnapshotRef } from '../core/index.ts';
import { Datastore, SnapshotUpload, datastoreSource, type ChunkPool, type DamagedSnapshot } from '../datastore/index.ts';
import { mapConcurrent, prefetch } from '../lib/index.ts';
import { groupKey, type BeginInput, type OpOptions, type SideListing, type SourceSnapshot, type SyncSource, type SyncTarget, type TargetSnapshot } from './types.ts';

/**
 * Lists a datastore's namespace tree under `root` (root included) with snapshots and group owners. A snapshot
 * whose manifest does not read fails the listing (CORRUPT), unless `withDamaged`: then it is listed apart
 * (`damaged`), for the planner (see SideListing.damaged).
 */
export async function listDatastore(ds: Datastore, root: Namespace, maxDepth: number | undefined, options: OpOptions & { withDamaged?: boolean } = {}): Promise<SideListing> {
  if (!(await ds.namespaceExists(root, options))) return { namespaces: [], snapshots: [], owners: new Map() };
  const namespaces = [root, ...(await ds.listNamespaces(root, { ...options, ...(maxDepth !== undefined ? { maxDepth } : {}) }))];
  const inScope = new Set(namespaces.map(formatNamespace));
  const damaged: DamagedSnapshot[] | undefined = options.withDamaged ? [] : undefined;
  const infos = (await ds.listSnapshots({ ns: root, recursive: true }, { ...(options.signal ? { signal: options.signal } : {}), ...(damaged ? { damaged } : {}) })).filter((s) => inScope.has(formatNamespace(s.ref.ns)));
  const unreadable = (damaged ?? []).filter((d) => inScope.has(formatNamespace(d.ref.ns)));
  const owners = new Map<string, string>();
  for (const s of [...infos, ...unreadable]) {
    const key = groupKey(s.ref);
    if (owners.has(key)) continue;
    const owner = await ds.getOwner(s.ref, options);
    if (owner !== undefined) owners.set(key, owner);
  }
  const listing: SideListing = { namespaces, snapshots: infos.map((s) => ({ ref: s.ref, manifest: s.manifest, protected: s.protected })), owners };
  if (unreadable.length > 0) listing.damaged = unreadable.map((d) => ({ ref: d.ref, reason: d.reason, protected: d.protected }));
  return listing;
}

/** A datastore (on any backend) as the source or the target of a sync. */
export class DatastoreSide implements SyncSource, SyncTarget {
  readonly label: string;
  readonly ds: Datastore;
  readonly #pool: (() => ChunkPool | undefined) | undefined;

  /** `pool` is asked for only when this side receives a snapshot: a source starts no threads. */
  constructor(ds: Datastore, label: string, options: { pool?: (() => ChunkPool | undefined) | undefined } = {}) {
    this.ds = ds;
    this.label = label;
    this.#pool = options.pool;
  }

  list(root: Namespace, maxDepth: number | undefined, options: OpOptions = {}): Promise<SideListing> {
    return listDatastore(this.ds, root, maxDepth, { ...options, withDamaged: true });
  }

  async open(ref: SnapshotRef, options: OpOptions = {}): Promise<SourceSnapshot> {
    const manifest = await this.ds.readManifest(ref, options);
    const source = datastoreSource(this.ds, ref);
    return {
      manifest,
      readFile: (filename, o = options) => source.readFile(filename, o),
      // Read as stored: the receiver checks the CRC (and more), a second check here would only cost time.
      chunkBlobs: (digests, o = options) => prefetch(digests, 4, async (digest) => ({ digest, blob: await this.ds.chunks.rawBlob(digest, o) })),
      close: async () => {},
    };
  }

  async createNamespace(ns: Namespace, options: OpOptions = {}): Promise<void> {
    if (ns.length > 0) await this.ds.createNamespace(ns, { ...options, parents: true });
  }

  async begin(ref: SnapshotRef, input: BeginInput, options: OpOptions = {}): Promise<TargetSnapshot> {
    const upload = await SnapshotUpload.begin(this.ds, ref, { owner: input.owner, keyFingerprint: input.keyFingerprint, verifyChunks: true, pool: this.#pool?.(), amend: input.amend === true, ...(options.signal ? { signal: options.signal } : {}) });
    // Inserts under way, which finish waits for: it may be called before they are done.
    const pending = new Set<Promise<unknown>>();
    let failed: { error: unknown } | undefined;
    return {
      // The sync job acts for the server itself: any chunk the datastore holds may be referenced.
      present: async (digests) => new Set(await upload.adopt(digests, () => true)),
      insertChunk: async (digest, blob) => {
        const p = upload.insertChunk(digest, blob);
        pending.add(p);
        try {
          await p;
        } catch (error) {
          failed ??= { error };
          throw error;
        } finally {
          pending.delete(p);
        }
      },
      finish: async (files, manifest) => {
        // A failed insert fails the snapshot: nothing is committed over a chunk that is not there.
        await Promise.allSettled([...pending]);
        if (failed) throw failed.error;
        return upload.finish(files, manifest);
      },
      abort: () => upload.abort(),
    };
  }

  forget(ref: SnapshotRef, options: OpOptions = {}): Promise<void> {
    return this.ds.forgetSnapshot(ref, options);
  }

  removeGroup(group: GroupRef, options: OpOptions = {}): Promise<void> {
    return this.ds.removeGroup(group, options);
  }

  removeNamespace(ns: Namespace, options: OpOptions = {}): Promise<void> {
    return this.ds.removeNamespace(ns, options);
  }

  async setNotes(ref: SnapshotRef, notes: string | undefined, options: OpOptions = {}): Promise<void> {
    await this.ds.updateUnprotected(
      ref,
      (u) => {
        const { notes: _old, ...rest } = u;
        return notes === undefined ? rest : { ...rest, notes };
      },
      options,
    );
  }

  async checkChunks(digests: readonly string[], options: OpOptions = {}): Promise<string[]> {
    const reasons = await mapConcurrent(digests, 8, (d) => this.ds.chunks.check(d, options));
    const bad = digests.filter((_, i) => reasons[i] !== undefined);
    for (const d of bad) await this.ds.chunks.markBad(d, options);
    return bad;
  }

  async close(): Promise<void> {}
}
