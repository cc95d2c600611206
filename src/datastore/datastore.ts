import { randomUUID } from 'node:crypto';
import {
  BACKUP_TYPES,
  IbsError,
  MANIFEST_NAME,
  MAX_NAMESPACE_DEPTH,
  encodeManifest,
  formatGroup,
  formatNamespace,
  formatSnapshot,
  groupPath,
  namespacePath,
  parseManifest,
  parseSnapshotPath,
  sameGroup,
  snapshotPath,
  type GroupRef,
  type Manifest,
  type Namespace,
  type SnapshotRef,
  type Unprotected,
} from '../core/index.ts';
import { deletePrefix, isStorageError, type OpOptions, type StorageBackend } from '../storage/index.ts';
import { ChunkStore } from './chunk-store.ts';
import { readLeases } from './writer-lease.ts';

export const DATASTORE_MARKER = '.ibs-datastore';
export const QUARANTINE_KEY = '.quarantine';
export const NAMESPACE_MARKER = '.namespace';
export const PROTECTED_MARKER = '.protected';
export const OWNER_FILE = 'owner';
export const FORMAT_VERSION = 1;

export interface DatastoreMarker {
  format: number;
  id: string;
  created: string;
}

/** A snapshot whose manifest is there but does not read (CORRUPT): listed apart, for whoever asks for them. */
export interface DamagedSnapshot {
  ref: SnapshotRef;
  protected: boolean;
  reason: string;
}

/** Appended to the error of a manifest that does not read: what an operator can do about it. */
const UNREADABLE_HINT = 'the snapshot cannot be read: "snapshot forget" removes it, and a replica\'s copy can be synced back';

export interface SnapshotInfo {
  ref: SnapshotRef;
  manifest: Manifest;
  protected: boolean;
  /** Bytes of the snapshot's own files (indexes, blobs, manifest), not of its chunks. */
  metaSize: number;
}

/**
 * A datastore on any StorageBackend: the marker, namespaces, groups and snapshots, quarantine state. Snapshot
 * listing follows invariant 1: a snapshot exists iff its manifest (`index.json`) exists.
 */
export class Datastore {
  readonly backend: StorageBackend;
  readonly chunks: ChunkStore;
  readonly marker: DatastoreMarker;

  private constructor(backend: StorageBackend, marker: DatastoreMarker) {
    this.backend = backend;
    this.chunks = new ChunkStore(backend);
    this.marker = marker;
  }

  /** Initialises an empty location as a datastore. EXISTS when anything is already there. */
  static async create(backend: StorageBackend, options: OpOptions = {}): Promise<Datastore> {
    for await (const entry of backend.list('', options)) {
      throw new IbsError('EXISTS', `Cannot create a datastore at ${backend.info.location}: it is not empty (found "${entry.key}")`);
    }
    const marker: DatastoreMarker = { format: FORMAT_VERSION, id: randomUUID(), created: new Date().toISOString() };
    await backend.write(DATASTORE_MARKER, Buffer.from(`${JSON.stringify(marker)}\n`), { ...options, ifNotExists: true });
    return new Datastore(backend, marker);
  }

  static async open(backend: StorageBackend, options: OpOptions = {}): Promise<Datastore> {
    let raw: Buffer;
    try {
      raw = await backend.read(DATASTORE_MARKER, options);
    } catch (error) {
      if (isStorageError(error, 'not-found')) {
        throw new IbsError('NOT_FOUND', `No ironcore-backup datastore at ${backend.info.location} (missing ${DATASTORE_MARKER})`);
      }
      throw error;
    }
    let marker: DatastoreMarker;
    try {
      marker = JSON.parse(raw.toString('utf8')) as DatastoreMarker;
    } catch {
      throw new IbsError('CORRUPT', `Datastore marker at ${backend.info.location} is not JSON`);
    }
    if (marker.format !== FORMAT_VERSION) {
      throw new IbsError('UNSUPPORTED', `Datastore at ${backend.info.location} has format ${marker.format}; this version reads format ${FORMAT_VERSION}`);
    }
    return new Datastore(backend, marker);
  }

  // ---- quarantine -------------------------------------------------------------------------------------

  /**
   * Why the datastore is quarantined, or undefined when it is not. A quarantine file that does not read
   * (damaged, edited) still quarantines it: its reason then says so and how to clear it.
   */
  async quarantineState(options: OpOptions = {}): Promise<{ reason: string; since: string } | undefined> {
    let raw: Buffer;
    try {
      raw = await this.backend.read(QUARANTINE_KEY, options);
    } catch (error) {
      if (isStorageError(error, 'not-found')) return undefined;
      throw error;
    }
    let state: unknown;
    try {
      state = JSON.parse(raw.toString('utf8'));
    } catch {
      state = undefined;
    }
    const { reason, since } = (state ?? {}) as { reason?: unknown; since?: unknown };
    if (typeof reason === 'string' && typeof since === 'string') return { reason, since };
    return { reason: `its quarantine file (${QUARANTINE_KEY} in ${this.backend.info.location}) does not read; "datastore unquarantine" clears it`, since: '' };
  }

  async quarantine(reason: string, options: OpOptions = {}): Promise<void> {
    if (reason.trim() === '') throw new IbsError('INVALID_ARGUMENT', 'A quarantine needs a reason: expected a non-empty --reason');
    await this.backend.write(QUARANTINE_KEY, Buffer.from(JSON.stringify({ reason, since: new Date().toISOString() })), options);
  }

  async unquarantine(options: OpOptions = {}): Promise<void> {
    await this.backend.delete(QUARANTINE_KEY, options);
  }

  /** Throws QUARANTINED (with the reason) when writes are refused; `what` names the refused operation. */
  async assertWritable(what: string, options: OpOptions = {}): Promise<void> {
    const state = await this.quarantineState(options);
    if (state) throw new IbsError('QUARANTINED', `Cannot ${what}: the datastore is quarantined${state.since ? ` since ${state.since}` : ''} (${state.reason}); run "datastore unquarantine" once the cause is resolved`);
  }

  // ---- namespaces -------------------------------------------------------------------------------------

  async namespaceExists(ns: Namespace, options: OpOptions = {}): Promise<boolean> {
    if (ns.length === 0) return true;
    return (await this.backend.stat(`${namespacePath(ns)}${NAMESPACE_MARKER}`, options)) !== undefined;
  }

  async assertNamespace(ns: Namespace, options: OpOptions = {}): Promise<void> {
    if (!(await this.namespaceExists(ns, options))) {
      throw new IbsError('NOT_FOUND', `Namespace "${formatNamespace(ns)}" does not exist (create it with "namespace create")`);
    }
  }

  async createNamespace(ns: Namespace, options: OpOptions & { parents?: boolean } = {}): Promise<void> {
    if (ns.length === 0) throw new IbsError('INVALID_ARGUMENT', 'The root namespace always exists: expected a namespace name');
    if (ns.length > MAX_NAMESPACE_DEPTH) throw new IbsError('INVALID_ARGUMENT', `Namespace "${formatNamespace(ns)}" is ${ns.length} levels deep: at most ${MAX_NAMESPACE_DEPTH} allowed`);
    await this.assertWritable('create a namespace', options);
    const parent = ns.slice(0, -1);
    if (!(await this.namespaceExists(parent, options))) {
      if (!options.parents) throw new IbsError('NOT_FOUND', `Parent namespace "${formatNamespace(parent)}" of "${formatNamespace(ns)}" does not exist`);
      await this.createNamespace(parent, options);
    }
    try {
      await this.backend.write(`${namespacePath(ns)}${NAMESPACE_MARKER}`, Buffer.from(''), { ...options, ifNotExists: true });
    } catch (error) {
      if (isStorageError(error, 'exists')) {
        if (options.parents) return;
        throw new IbsError('EXISTS', `Namespace "${formatNamespace(ns)}" already exists`);
      }
      throw error;
    }
  }

  /** Namespaces below `parent` (not including it), at most `maxDepth` levels below, sorted. */
  async listNamespaces(parent: Namespace = [], options: OpOptions & { maxDepth?: number } = {}): Promise<Namespace[]> {
    const maxDepth = options.maxDepth ?? MAX_NAMESPACE_DEPTH;
    const out: Namespace[] = [];
    const prefix = `${namespacePath(parent)}ns/`;
    for await (const entry of this.backend.list(prefix, options)) {
      if (!entry.key.endsWith(`/${NAMESPACE_MARKER}`)) continue;
      const parts = entry.key.slice(0, -NAMESPACE_MARKER.length - 1).split('/');
      if (parts.length % 2 !== 0) continue;
      const ns: string[] = [];
      let valid = true;
      for (let i = 0; i < parts.length; i += 2) {
        if (parts[i] !== 'ns') valid = false;
        ns.push(parts[i + 1] as string);
      }
      if (valid && ns.length > parent.length && ns.length - parent.length <= maxDepth) out.push(ns);
    }
    return out.sort((a, b) => formatNamespace(a).localeCompare(formatNamespace(b)));
  }

  /** Removes a namespace; with `deleteGroups` its groups and child namespaces too, else it must be empty. */
  async removeNamespace(ns: Namespace, options: OpOptions & { deleteGroups?: boolean } = {}): Promise<void> {
    if (ns.length === 0) throw new IbsError('INVALID_ARGUMENT', 'The root namespace cannot be removed');
    await this.assertNamespace(ns, options);
    await this.assertWritable('remove a namespace', options);
    const snapshots = await this.listSnapshots({ ns, recursive: true }, options);
    const children = await this.listNamespaces(ns, options);
    if (!options.deleteGroups && (snapshots.length > 0 || children.length > 0)) {
      throw new IbsError('BUSY', `Namespace "${formatNamespace(ns)}" holds ${snapshots.length} snapshots and ${children.length} namespaces: remove them first or pass --delete-groups`);
    }
    const protectedOnes = snapshots.filter((s) => s.protected);
    if (protectedOnes.length > 0) {
      throw new IbsError('BUSY', `Namespace "${formatNamespace(ns)}" holds protected snapshot ${formatSnapshot(protectedOnes[0]!.ref)}: unprotect it first`);
    }
    for (const snap of snapshots) await this.forgetSnapshot(snap.ref, options);
    await deletePrefix(this.backend, namespacePath(ns), options);
  }

  // ---- groups and snapshots ---------------------------------------------------------------------------

  /**
   * Snapshots of a namespace (optionally with its children) or of one group; newest first within a group. A
   * manifest that does not read fails the listing (CORRUPT, naming the snapshot), unless `damaged` is given:
   * such snapshots are then put there instead, and left out of the result. Only callers that show or report
   * them ask so: one that acts on the whole list (garbage collection, prune, sync) must not take a snapshot it
   * cannot read for one that is not there.
   */
  async listSnapshots(scope: { ns: Namespace; recursive?: boolean; group?: GroupRef }, options: OpOptions & { damaged?: DamagedSnapshot[] } = {}): Promise<SnapshotInfo[]> {
    const prefixes = scope.group ? [groupPath(scope.group)] : BACKUP_TYPES.map((t) => `${namespacePath(scope.ns)}${t}/`);
    if (!scope.group && scope.recursive) prefixes.push(`${namespacePath(scope.ns)}ns/`);
    const dirs = new Map<string, { manifest: boolean; protected: boolean; size: number }>();
    for (const prefix of prefixes) {
      for await (const entry of this.backend.list(prefix, options)) {
        const slash = entry.key.lastIndexOf('/');
        const dir = entry.key.slice(0, slash + 1);
        const name = entry.key.slice(slash + 1);
        const state = dirs.get(dir) ?? { manifest: false, protected: false, size: 0 };
        if (name === MANIFEST_NAME) state.manifest = true;
        if (name === PROTECTED_MARKER) state.protected = true;
        state.size += entry.size;
        dirs.set(dir, state);
      }
    }
    const out: SnapshotInfo[] = [];
    for (const [dir, state] of dirs) {
      if (!state.manifest) continue;
      const ref = parseSnapshotPath(dir);
      if (!ref) continue;
      if (scope.group && !sameGroup(ref, scope.group)) continue;
      if (!scope.recursive && formatNamespace(ref.ns) !== formatNamespace(scope.ns)) continue;
      const manifest = await this.readManifest(ref, options).catch((error: unknown) => {
        if (error instanceof IbsError && error.code === 'NOT_FOUND') return undefined; // forgotten meanwhile
        if (!(options.damaged && error instanceof IbsError && error.code === 'CORRUPT')) throw error;
        options.damaged.push({ ref, protected: state.protected, reason: error.message });
        return undefined;
      });
      if (manifest) out.push({ ref, manifest, protected: state.protected, metaSize: state.size });
    }
    return out.sort((a, b) => {
      const ga = `${formatNamespace(a.ref.ns)}\0${formatGroup(a.ref)}`;
      const gb = `${formatNamespace(b.ref.ns)}\0${formatGroup(b.ref)}`;
      return ga === gb ? b.ref.time - a.ref.time : ga < gb ? -1 : 1;
    });
  }

  /** Groups of a namespace with their snapshot count, newest snapshot time and owner. */
  async listGroups(ns: Namespace, options: OpOptions = {}): Promise<Array<{ group: GroupRef; count: number; last: number; owner: string | undefined }>> {
    // Snapshots whose manifest does not read count too: they are there (snapshot list shows them as damaged).
    const damaged: DamagedSnapshot[] = [];
    const snaps = [...(await this.listSnapshots({ ns }, { ...options, damaged })), ...damaged];
    const groups = new Map<string, { group: GroupRef; count: number; last: number; owner: string | undefined }>();
    for (const s of snaps) {
      const key = formatGroup(s.ref);
      const g = groups.get(key) ?? { group: { ns: s.ref.ns, type: s.ref.type, id: s.ref.id }, count: 0, last: 0, owner: undefined };
      g.count++;
      g.last = Math.max(g.last, s.ref.time);
      groups.set(key, g);
    }
    for (const g of groups.values()) g.owner = await this.getOwner(g.group, options);
    return [...groups.values()];
  }

  /** Removes a group that has no snapshots left (its owner file and directory); BUSY when it still has some. */
  async removeGroup(group: GroupRef, options: OpOptions = {}): Promise<void> {
    const left = await this.listSnapshots({ ns: group.ns, group }, options);
    if (left.length > 0) throw new IbsError('BUSY', `Group ${formatGroup(group)} still has ${left.length} snapshot(s)`);
    await deletePrefix(this.backend, groupPath(group), options);
  }

  async getOwner(group: GroupRef, options: OpOptions = {}): Promise<string | undefined> {
    try {
      return (await this.backend.read(`${groupPath(group)}${OWNER_FILE}`, options)).toString('utf8').trim();
    } catch (error) {
      if (isStorageError(error, 'not-found')) return undefined;
      throw error;
    }
  }

  async setOwner(group: GroupRef, owner: string, options: OpOptions = {}): Promise<void> {
    await this.backend.write(`${groupPath(group)}${OWNER_FILE}`, Buffer.from(`${owner}\n`), options);
  }

  async readManifest(ref: SnapshotRef, options: OpOptions = {}): Promise<Manifest> {
    let raw: Buffer;
    try {
      raw = await this.backend.read(`${snapshotPath(ref)}${MANIFEST_NAME}`, options);
    } catch (error) {
      if (isStorageError(error, 'not-found')) throw new IbsError('NOT_FOUND', `Snapshot ${formatSnapshot(ref)} does not exist`);
      throw error;
    }
    try {
      const manifest = parseManifest(raw, formatSnapshot(ref));
      if (manifest.backupType !== ref.type || manifest.backupId !== ref.id || manifest.backupTime !== ref.time) {
        throw new IbsError('CORRUPT', `Manifest of ${formatSnapshot(ref)} names ${manifest.backupType}/${manifest.backupId} at ${manifest.backupTime}`);
      }
      return manifest;
    } catch (error) {
      if (error instanceof IbsError && error.code === 'CORRUPT') throw new IbsError('CORRUPT', `${error.message}; ${UNREADABLE_HINT}`, { cause: error });
      throw error;
    }
  }

  async snapshotInfo(ref: SnapshotRef, options: OpOptions = {}): Promise<SnapshotInfo> {
    const manifest = await this.readManifest(ref, options);
    const prot = (await this.backend.stat(`${snapshotPath(ref)}${PROTECTED_MARKER}`, options)) !== undefined;
    let metaSize = 0;
    for await (const e of this.backend.list(snapshotPath(ref), options)) metaSize += e.size;
    return { ref, manifest, protected: prot, metaSize };
  }

  /** Rewrites the unprotected part of a manifest (verify state, notes); the signed part is kept as is. */
  async updateUnprotected(ref: SnapshotRef, change: (u: Unprotected) => Unprotected, options: OpOptions = {}): Promise<Manifest> {
    const manifest = await this.readManifest(ref, options);
    const updated: Manifest = { ...manifest, unprotected: change({ ...manifest.unprotected }) };
    await this.backend.write(`${snapshotPath(ref)}${MANIFEST_NAME}`, encodeManifest(updated), options);
    return updated;
  }

  /** NOT_FOUND unless the snapshot exists (its manifest is there, whether or not it reads). */
  async #assertSnapshot(ref: SnapshotRef, options: OpOptions): Promise<void> {
    if (!(await this.backend.stat(`${snapshotPath(ref)}${MANIFEST_NAME}`, options))) throw new IbsError('NOT_FOUND', `Snapshot ${formatSnapshot(ref)} does not exist`);
  }

  async setProtected(ref: SnapshotRef, on: boolean, options: OpOptions = {}): Promise<void> {
    // Not through its manifest: a snapshot whose manifest does not read can be unprotected (and then forgotten).
    await this.#assertSnapshot(ref, options);
    const key = `${snapshotPath(ref)}${PROTECTED_MARKER}`;
    if (on) await this.backend.write(key, Buffer.from(''), options);
    else await this.backend.delete(key, options);
  }

  /**
   * Removes a snapshot: the manifest first (the snapshot disappears in one step), then its other files.
   * Refuses protected snapshots and snapshots that a running writer reuses as its base.
   */
  async forgetSnapshot(ref: SnapshotRef, options: OpOptions = {}): Promise<void> {
    // Not through its manifest: a snapshot whose manifest does not read can be forgotten too.
    await this.#assertSnapshot(ref, options);
    if (await this.backend.stat(`${snapshotPath(ref)}${PROTECTED_MARKER}`, options)) throw new IbsError('BUSY', `Snapshot ${formatSnapshot(ref)} is protected: run "snapshot unprotect" first`);
    const path = snapshotPath(ref);
    const { live } = await readLeases(this.backend);
    const user = live.find((l) => l.base === path);
    if (user) throw new IbsError('BUSY', `Snapshot ${formatSnapshot(ref)} is the base of a running ${user.kind} (pid ${user.pid} on ${user.host}); try again when it ends`);
    await this.backend.delete(`${path}${MANIFEST_NAME}`, options);
    await deletePrefix(this.backend, path, options);
  }
}
