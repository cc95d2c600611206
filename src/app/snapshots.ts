import {
  archiveNamesOf,
  IbsError,
  formatBackupTime,
  formatGroup,
  formatNamespace,
  formatSnapshot,
  manifestCryptMode,
  parseGroup,
  parseNamespace,
  parseSnapshot,
  type CryptKey,
  type Namespace,
} from '../core/index.ts';
import { SnapshotReader, type DamagedSnapshot } from '../datastore/index.ts';
import { readCatalog } from './backup.ts';
import { withDatastore, type AppContext } from './context.ts';

export interface SnapshotRow {
  snapshot: string;
  namespace: string;
  group: string;
  time: string;
  files: string[];
  /** What `backup restore` takes (NAME.tar, NAME.img): the files less the internal split of file archives. */
  archives: string[];
  size: number;
  encrypted: boolean;
  protected: boolean;
  verifyState: string;
  notes?: string;
  /** Why the snapshot cannot be read (its manifest is damaged); its other fields are then empty. */
  damaged?: string;
}

export async function listSnapshots(ctx: AppContext, input: { store: string; ns?: string; group?: string; recursive?: boolean }): Promise<SnapshotRow[]> {
  const ns = parseNamespace(input.ns ?? '');
  const group = input.group !== undefined ? parseGroup(input.group, ns) : undefined;
  return withDatastore(ctx, input.store, async (ds) => {
    await ds.assertNamespace(ns);
    // A snapshot whose manifest does not read is listed as damaged (and can then be forgotten) rather than
    // hiding every other one behind its error.
    const damaged: DamagedSnapshot[] = [];
    const snaps = await ds.listSnapshots({ ns, recursive: input.recursive ?? false, ...(group ? { group } : {}) }, { signal: ctx.signal, damaged });
    const rows: SnapshotRow[] = snaps.map((s) => ({
      snapshot: formatSnapshot(s.ref),
      namespace: formatNamespace(s.ref.ns),
      group: formatGroup(s.ref),
      time: formatBackupTime(s.ref.time),
      files: s.manifest.files.map((f) => f.filename),
      archives: archiveNamesOf(s.manifest.files),
      size: s.manifest.files.reduce((n, f) => n + (f.archiveSize ?? 0), 0),
      encrypted: manifestCryptMode(s.manifest) !== 'none',
      protected: s.protected,
      verifyState: s.manifest.unprotected.verifyState?.state ?? 'none',
      ...(s.manifest.unprotected.notes ? { notes: s.manifest.unprotected.notes } : {}),
    }));
    if (damaged.length === 0) return rows;
    for (const d of damaged) {
      rows.push({ snapshot: formatSnapshot(d.ref), namespace: formatNamespace(d.ref.ns), group: formatGroup(d.ref), time: formatBackupTime(d.ref.time), files: [], archives: [], size: 0, encrypted: false, protected: d.protected, verifyState: 'damaged', damaged: d.reason });
    }
    // In the listing's order: by namespace and group, newest first.
    const order = (x: SnapshotRow): string => `${x.namespace}\0${x.group}`;
    return rows.sort((a, b) => (order(a) === order(b) ? (a.time < b.time ? 1 : a.time > b.time ? -1 : 0) : order(a) < order(b) ? -1 : 1));
  });
}

export async function listGroups(ctx: AppContext, input: { store: string; ns?: string }): Promise<Array<{ group: string; snapshots: number; last: string; owner: string }>> {
  const ns = parseNamespace(input.ns ?? '');
  return withDatastore(ctx, input.store, async (ds) => {
    await ds.assertNamespace(ns);
    const groups = await ds.listGroups(ns, { signal: ctx.signal });
    return groups.map((g) => ({ group: formatGroup(g.group), snapshots: g.count, last: formatBackupTime(g.last), owner: g.owner ?? '' }));
  });
}

export async function showSnapshot(ctx: AppContext, input: { store: string; ns?: string; snapshot: string; listFiles?: boolean; key?: CryptKey | undefined }): Promise<Record<string, unknown>> {
  const ref = parseSnapshot(input.snapshot, parseNamespace(input.ns ?? ''));
  return withDatastore(ctx, input.store, async (ds) => {
    const info = await ds.snapshotInfo(ref);
    const out: Record<string, unknown> = {
      snapshot: formatSnapshot(ref),
      protected: info.protected,
      owner: (await ds.getOwner(ref)) ?? '',
      manifest: info.manifest,
    };
    if (input.listFiles) {
      const reader = await SnapshotReader.open(ds, ref, { key: input.key });
      const catalogs: Record<string, unknown[]> = {};
      if (reader.encrypted && !input.key) throw new IbsError('WRONG_KEY', `Snapshot ${formatSnapshot(ref)} is encrypted with key ${reader.manifest.keyFingerprint}: pass --keyfile to list its files`);
      for (const archive of reader.archiveNames().filter((n) => n.endsWith('.tar'))) {
        catalogs[archive] = (await readCatalog(reader, archive)).map((e) => ({ path: e.path, type: e.type, size: e.size }));
      }
      out.catalogs = catalogs;
    }
    return out;
  });
}

export async function forgetSnapshot(ctx: AppContext, input: { store: string; ns?: string; snapshot: string }): Promise<string> {
  const ref = parseSnapshot(input.snapshot, parseNamespace(input.ns ?? ''));
  return withDatastore(ctx, input.store, async (ds) => {
    await ds.assertWritable('forget a snapshot');
    await ds.forgetSnapshot(ref, { signal: ctx.signal });
    return formatSnapshot(ref);
  });
}

export async function protectSnapshot(ctx: AppContext, input: { store: string; ns?: string; snapshot: string; protect: boolean }): Promise<void> {
  const ref = parseSnapshot(input.snapshot, parseNamespace(input.ns ?? ''));
  await withDatastore(ctx, input.store, (ds) => ds.setProtected(ref, input.protect));
}

export async function snapshotNotes(ctx: AppContext, input: { store: string; ns?: string; snapshot: string; set?: string }): Promise<string> {
  const ref = parseSnapshot(input.snapshot, parseNamespace(input.ns ?? ''));
  if (input.set !== undefined && input.set.length > 64 * 1024) throw new IbsError('INVALID_ARGUMENT', `Notes of ${input.set.length} characters: at most 65536 allowed`);
  return withDatastore(ctx, input.store, async (ds) => {
    if (input.set === undefined) return (await ds.readManifest(ref)).unprotected.notes ?? '';
    const notes = input.set;
    await ds.updateUnprotected(ref, (u) => ({ ...u, notes }));
    return notes;
  });
}

export async function createNamespace(ctx: AppContext, input: { store: string; ns: string; parents?: boolean }): Promise<string> {
  const ns = parseNamespace(input.ns);
  await withDatastore(ctx, input.store, (ds) => ds.createNamespace(ns, { parents: input.parents ?? false }));
  return formatNamespace(ns);
}

export async function listNamespaces(ctx: AppContext, input: { store: string; parent?: string; maxDepth?: number }): Promise<string[]> {
  const parent: Namespace = parseNamespace(input.parent ?? '');
  return withDatastore(ctx, input.store, async (ds) => {
    await ds.assertNamespace(parent);
    return (await ds.listNamespaces(parent, input.maxDepth !== undefined ? { maxDepth: input.maxDepth } : {})).map(formatNamespace);
  });
}

export async function removeNamespace(ctx: AppContext, input: { store: string; ns: string; deleteGroups?: boolean }): Promise<void> {
  const ns = parseNamespace(input.ns);
  await withDatastore(ctx, input.store, (ds) => ds.removeNamespace(ns, { deleteGroups: input.deleteGroups ?? false }));
}
