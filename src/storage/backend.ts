// The error types alone: a worker thread that stores objects (ThreadStore) loads this module.
import { IbsError, type ErrorCode } from '../core/errors.ts';

/**
 * The contract every place that holds a datastore's bytes fulfils. Keys are relative, "/"-separated paths
 * ("host/web1/2026-…Z/index.json", ".chunks/ab12/ab12…"); see `assertKey`. Every method:
 * - takes `{ signal }` and stops before its next side effect once the signal is aborted;
 * - fails only with `StorageError` (kind not-found, exists, denied, transient, unsupported, no-space, corrupt)
 *   for conditions callers handle; `transient` is the only kind worth retrying;
 * - may be called concurrently from many callers, on the same key too.
 */
export interface StorageBackend {
  readonly info: BackendInfo;

  /**
   * Present when whole objects can also be stored synchronously from a worker thread (a thread that already
   * holds the bytes, such as the one that checked a chunk, stores it without handing it back): see ThreadStore.
   * Wrappers pass it on. A store made that way is what `write` would make; a caller that meets a failure there
   * uses `write` instead, for its retries and error kinds.
   */
  readonly threadStore?: ThreadStore | undefined;

  /** Size and modification time of `key`, or undefined when it does not exist. Idempotent. */
  stat(key: string, options?: OpOptions): Promise<ObjectInfo | undefined>;

  /**
   * Every object whose key starts with `prefix` (a "/"-terminated folder or ""), each exactly once, in no
   * particular order. Objects written or deleted while listing may or may not appear; partial writes never do.
   */
  list(prefix: string, options?: OpOptions): AsyncIterable<ObjectInfo>;

  /**
   * The whole object, or `range` [start, end) of it. not-found when missing; a range beyond the end yields the
   * bytes that exist (a short read is not an error here: callers check lengths). Idempotent. The buffer is the
   * caller's alone (never one the backend keeps or hands out again): the caller may change or free it.
   */
  read(key: string, options?: ReadOptions): Promise<Buffer>;

  /**
   * Stores `source` under `key` atomically: readers see the old object or the complete new one, never a part.
   * `source` is replayable (a function is called again on retry). With `ifNotExists` an existing key fails
   * with `exists` and is left alone. With `expectedSha256` the bytes are hashed on the way and, on mismatch,
   * the write fails with `corrupt` and leaves nothing behind. Durable once it resolves. The backend keeps no
   * reference to the source's bytes once the promise settles: the caller may change or free them.
   */
  write(key: string, source: WriteSource, options?: WriteOptions): Promise<void>;

  /** Sets the modification time of an existing object to now (GC uses it); not-found when missing. */
  touch(key: string, options?: OpOptions): Promise<void>;

  /** Removes `key`; a missing key is success. Idempotent. */
  delete(key: string, options?: OpOptions): Promise<void>;

  /** Capacity and free space where the backend can tell; undefined where it cannot (object storage). */
  space(options?: OpOptions): Promise<SpaceInfo | undefined>;

  /**
   * Optional: removes leftovers of writes interrupted by a crash that are older than `olderThanMs`, where a
   * backend can have such leftovers (temporary files). Returns how many it removed.
   */
  cleanTemporary?(olderThanMs: number, options?: OpOptions): Promise<number>;

  /** Releases connections and handles; the backend is unusable afterwards. */
  close(): Promise<void>;
}

export interface BackendInfo {
  /** "local", "memory", "s3", … */
  scheme: string;
  /** Where the bytes live, with any secret removed; safe to log. */
  location: string;
  capabilities: {
    /** Rename replaces atomically; conditional create is honoured. */
    atomicRename: boolean;
    conditionalCreate: boolean;
    maxConnections: number;
  };
}

/** Where a worker thread finds a backend's synchronous store: `module` (a URL) exports `putSync` (ThreadStoreModule), called with `location`. */
export interface ThreadStore {
  module: string;
  location: string;
}

export interface ThreadStoreModule {
  /**
   * Stores `data` under `key` unless an object is there already, which is then touched (its modification time
   * set to now) instead: as `write(key, data, { ifNotExists: true })` and, on exists, `touch`. Durable when it
   * returns. With `readBack` a new object is read back and `same` tells whether it is byte for byte `data`.
   * Fails with StorageError, and then leaves nothing behind. Synchronous: for a worker thread only.
   */
  putSync(location: string, key: string, data: Uint8Array, options: { readBack: boolean }): { existed: boolean; same?: boolean };
}

export interface ObjectInfo {
  key: string;
  size: number;
  mtimeMs: number;
}

export interface SpaceInfo {
  totalBytes: number;
  freeBytes: number;
  totalInodes?: number;
  freeInodes?: number;
}

export interface OpOptions {
  signal?: AbortSignal | undefined;
}

export interface ReadOptions extends OpOptions {
  range?: { start: number; end: number };
  /**
   * A hint: the object is read once and cold (a chunk, for a restore, a verify or a sync), so the backend may
   * read it past its caches (the local one: direct I/O, as it wrote it). The bytes are the same either way.
   */
  cold?: boolean;
}

export interface WriteOptions extends OpOptions {
  ifNotExists?: boolean;
  expectedSha256?: string;
}

/** Bytes, or a function returning a fresh iterable of bytes each time it is called. */
export type WriteSource = Uint8Array | (() => AsyncIterable<Uint8Array>);

export const STORAGE_ERROR_KINDS = ['not-found', 'exists', 'denied', 'transient', 'unsupported', 'no-space', 'corrupt'] as const;
export type StorageErrorKind = (typeof STORAGE_ERROR_KINDS)[number];

const KIND_CODES: Record<StorageErrorKind, ErrorCode> = {
  'not-found': 'NOT_FOUND',
  exists: 'EXISTS',
  denied: 'PERMISSION_DENIED',
  transient: 'UNAVAILABLE',
  unsupported: 'UNSUPPORTED',
  'no-space': 'NO_SPACE',
  corrupt: 'CORRUPT',
};

export class StorageError extends IbsError {
  readonly kind: StorageErrorKind;

  constructor(kind: StorageErrorKind, message: string, options: { cause?: unknown } = {}) {
    super(KIND_CODES[kind], message, options);
    this.name = 'StorageError';
    this.kind = kind;
  }
}

export function isStorageError(error: unknown, kind?: StorageErrorKind): error is StorageError {
  return error instanceof StorageError && (kind === undefined || error.kind === kind);
}

const SEGMENT_RE = /^[A-Za-z0-9_.:+=@-][A-Za-z0-9_.:+=@ -]*$/;

/** Keys are relative "/"-separated paths of non-empty segments without "." / ".." or control characters. */
export function assertKey(key: string): string {
  const segments = key.split('/');
  if (key.length === 0 || key.length > 1024 || segments.some((s) => s === '' || s === '.' || s === '..' || s.length > 255 || !SEGMENT_RE.test(s))) {
    throw new RangeError(`Invalid storage key ${JSON.stringify(key)}: expected a relative "/"-separated path without "." or ".." segments`);
  }
  return key;
}

/** Prefixes are "" or a key followed by "/". */
export function assertPrefix(prefix: string): string {
  if (prefix !== '') {
    if (!prefix.endsWith('/')) throw new RangeError(`Invalid storage prefix ${JSON.stringify(prefix)}: expected "" or a path ending in "/"`);
    assertKey(prefix.slice(0, -1));
  }
  return prefix;
}

export async function* sourceChunks(source: WriteSource): AsyncIterable<Uint8Array> {
  if (source instanceof Uint8Array) yield source;
  else yield* source();
}

/** Removes every object under `prefix`; used to drop a snapshot or group on any backend. */
export async function deletePrefix(backend: StorageBackend, prefix: string, options: OpOptions = {}): Promise<number> {
  const keys: string[] = [];
  for await (const entry of backend.list(prefix, options)) keys.push(entry.key);
  for (const key of keys) await backend.delete(key, options);
  return keys.length;
}
