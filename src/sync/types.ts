import type { GroupRef, Manifest, ManifestFile, Namespace, SnapshotRef } from '../core/index.ts';

/** Options every side operation takes (the storage layer's OpOptions have the same shape). */
export interface OpOptions {
  signal?: AbortSignal | undefined;
}

/** A snapshot as a sync side lists it: enough to plan without opening it. */
export interface SideSnapshot {
  ref: SnapshotRef;
  manifest: Manifest;
  protected: boolean;
}

/** What one side holds under a namespace root: its namespaces (root included) and snapshots, and group owners. */
export interface SideListing {
  namespaces: Namespace[];
  snapshots: SideSnapshot[];
  /** "ns\0type/id" -> owner. */
  owners: Map<string, string>;
  /**
   * Snapshots whose manifest does not read, with why (a server's listing carries them only when asked). On a
   * source: never copied, and never taken for vanished (their copies on the other side stay). On a target: a
   * copy to replace from the source (with --resync-corrupt, or by repair), or to remove when it vanished.
   * `protected` is unknown (absent) from servers of earlier versions.
   */
  damaged?: Array<{ ref: SnapshotRef; reason: string; protected?: boolean }>;
}

export function groupKey(g: GroupRef): string {
  return `${g.ns.join('/')}\0${g.type}/${g.id}`;
}

/** Either side of a sync: a datastore on any backend, or a datastore on a server behind the API. */
export interface SyncSide {
  /** For logs and errors: "datastore store1", "remote primary, store ibs-primary". */
  readonly label: string;
  /** Namespaces under `root` down to `maxDepth` levels below it, with their snapshots. */
  list(root: Namespace, maxDepth: number | undefined, options?: OpOptions): Promise<SideListing>;
}

/** One snapshot being read from a source. */
export interface SourceSnapshot {
  readonly manifest: Manifest;
  /** A file of the snapshot (index or blob); the engine checks it against the manifest. */
  readFile(filename: string, options?: OpOptions): Promise<Buffer>;
  /**
   * The stored blobs of `digests`, fetched in batches with several in flight; yields each once, in any order.
   * A chunk the source cannot serve throws. `sizeOf` gives a chunk's plaintext size where known: its blob is
   * at most that (and a header), so a source can bound the bytes of a batch before fetching it.
   */
  chunkBlobs(digests: readonly string[], options?: OpOptions & { sizeOf?: (digest: string) => number | undefined }): AsyncIterable<{ digest: string; blob: Buffer }>;
  close(): Promise<void>;
}

export interface SyncSource extends SyncSide {
  open(ref: SnapshotRef, options?: OpOptions): Promise<SourceSnapshot>;
}

/** One snapshot being written to a target: nothing is visible until `commit` writes the manifest. */
export interface TargetSnapshot {
  /** Of `digests`, those the target already holds and this writer may reference (asked in batches). */
  present(digests: readonly string[], options?: OpOptions): Promise<Set<string>>;
  /**
   * Stores one chunk; the target checks it (CRC, and the digest of plaintext chunks) before storing. The target
   * may take over `blob` (move it to a thread): the caller must not use it afterwards.
   */
  insertChunk(digest: string, blob: Buffer): Promise<void>;
  /**
   * Bytes of chunks worth having in flight to this target at normal I/O weight (default 16 MiB): a target
   * across a link wants enough to cover its round trips.
   */
  readonly window?: number;
  /**
   * Ends the snapshot once every chunk handed to insertChunk is stored (it may be called while inserts are
   * still under way, so that a target across a link need not wait for their answers first). Every chunk this
   * writer newly stored is read back and compared with what was checked on receipt; when all pass, the files
   * are stored and the manifest written last, and the answer is empty. Otherwise nothing is committed and the
   * failed digests are returned, already moved aside: insert them again, then finish again.
   */
  finish(files: ReadonlyArray<{ file: ManifestFile; data: Buffer }>, manifest: Manifest): Promise<string[]>;
  abort(): Promise<void>;
}

export interface BeginInput {
  owner: string;
  keyFingerprint: string | null;
  amend?: boolean;
  /**
   * The chunks the snapshot references, which `present` will be asked about: a target across a link may ask
   * about them along with opening the snapshot, a round trip sooner.
   */
  chunks?: readonly string[];
}

export interface SyncTarget extends SyncSide {
  /** Creates a namespace (and missing parents). */
  createNamespace(ns: Namespace, options?: OpOptions): Promise<void>;
  /**
   * Starts writing a snapshot into a group owned by `owner` (pull) or by the remote identity (push). With
   * `amend` an existing copy is replaced only at commit (it may gain files; a file it has with other content is
   * refused with EXISTS), and stays as it was when the copy fails.
   */
  begin(ref: SnapshotRef, input: BeginInput, options?: OpOptions): Promise<TargetSnapshot>;
  forget(ref: SnapshotRef, options?: OpOptions): Promise<void>;
  /** Removes an empty namespace (fails when it still holds anything). */
  removeNamespace(ns: Namespace, options?: OpOptions): Promise<void>;
  /** Sets (or clears) the notes of a snapshot. */
  setNotes(ref: SnapshotRef, notes: string | undefined, options?: OpOptions): Promise<void>;
  /** Removes a group that has no snapshots left. */
  removeGroup(group: GroupRef, options?: OpOptions): Promise<void>;
  /** Checks the given chunks as stored; returns those missing or damaged (damaged ones are moved aside). */
  checkChunks(digests: readonly string[], options?: OpOptions): Promise<string[]>;
  close(): Promise<void>;
}
