import { decodeIndex, indexChunks, snapshotPath } from '../core/index.ts';
import type { OpOptions } from '../storage/index.ts';
import type { Datastore } from './datastore.ts';

export interface DatastoreStats {
  snapshots: number;
  groups: number;
  namespaces: number;
  chunks: number;
  /** Sum of the archive sizes of all snapshots (what restores would produce). */
  logicalBytes: number;
  /** Bytes of all chunk blobs (after dedup and compression). */
  storedBytes: number;
  dedupFactor: number;
  space?: { totalBytes: number; freeBytes: number; totalInodes?: number; freeInodes?: number };
}

export async function datastoreStats(ds: Datastore, options: OpOptions = {}): Promise<DatastoreStats> {
  const snapshots = await ds.listSnapshots({ ns: [], recursive: true }, options);
  const groups = new Set(snapshots.map((s) => `${s.ref.ns.join('/')}:${s.ref.type}/${s.ref.id}`));
  let logicalBytes = 0;
  for (const info of snapshots) {
    for (const file of info.manifest.files) {
      if (!/\.(didx|fidx)$/.test(file.filename)) continue;
      try {
        const index = decodeIndex(await ds.backend.read(`${snapshotPath(info.ref)}${file.filename}`, options), file.filename);
        logicalBytes += indexChunks(index).reduce((n, s) => n + (s.end - s.start), 0);
      } catch {
        /* damaged index: verify reports it */
      }
    }
  }
  let chunks = 0;
  let storedBytes = 0;
  for await (const chunk of ds.chunks.list(options)) {
    chunks++;
    storedBytes += chunk.size;
  }
  const space = await ds.backend.space(options);
  return {
    snapshots: snapshots.length,
    groups: groups.size,
    namespaces: (await ds.listNamespaces([], options)).length,
    chunks,
    logicalBytes,
    storedBytes,
    dedupFactor: storedBytes > 0 ? logicalBytes / storedBytes : 0,
    ...(space ? { space } : {}),
  };
}
