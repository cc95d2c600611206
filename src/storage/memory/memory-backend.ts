import { createHash } from 'node:crypto';
import { throwIfAborted } from '../../lib/index.ts';
import {
  assertKey,
  assertPrefix,
  sourceChunks,
  StorageError,
  type BackendInfo,
  type ObjectInfo,
  type OpOptions,
  type ReadOptions,
  type StorageBackend,
  type WriteOptions,
  type WriteSource,
} from '../backend.ts';

export interface MemoryBackendOptions {
  /** Test hook: an error kind to raise while a write's data arrives. */
  injectWriteError?: (key: string) => StorageError | undefined;
}

/** Objects in a Map, for tests and for staging; writes replace the entry in one step (atomic). */
export class MemoryBackend implements StorageBackend {
  readonly info: BackendInfo = {
    scheme: 'memory',
    location: 'memory',
    capabilities: { atomicRename: true, conditionalCreate: true, maxConnections: 1024 },
  };
  readonly #objects = new Map<string, { data: Buffer; mtimeMs: number }>();
  readonly #inject: MemoryBackendOptions['injectWriteError'];
  #closed = false;

  constructor(options: MemoryBackendOptions = {}) {
    this.#inject = options.injectWriteError;
  }

  #check(signal: AbortSignal | undefined): void {
    if (this.#closed) throw new StorageError('transient', 'memory backend is closed');
    throwIfAborted(signal);
  }

  async stat(key: string, options: OpOptions = {}): Promise<ObjectInfo | undefined> {
    this.#check(options.signal);
    const entry = this.#objects.get(assertKey(key));
    return entry ? { key, size: entry.data.length, mtimeMs: entry.mtimeMs } : undefined;
  }

  async *list(prefix: string, options: OpOptions = {}): AsyncIterable<ObjectInfo> {
    assertPrefix(prefix);
    const keys = [...this.#objects.keys()].filter((k) => k.startsWith(prefix));
    for (const key of keys) {
      this.#check(options.signal);
      const entry = this.#objects.get(key);
      if (entry) yield { key, size: entry.data.length, mtimeMs: entry.mtimeMs };
    }
  }

  async read(key: string, options: ReadOptions = {}): Promise<Buffer> {
    this.#check(options.signal);
    const entry = this.#objects.get(assertKey(key));
    if (!entry) throw new StorageError('not-found', `read "${key}": no such object`);
    if (!options.range) return Buffer.from(entry.data);
    const { start, end } = options.range;
    if (!(start >= 0 && end >= start)) throw new RangeError(`Invalid range [${start}, ${end}) for "${key}"`);
    return Buffer.from(entry.data.subarray(start, end));
  }

  async write(key: string, source: WriteSource, options: WriteOptions = {}): Promise<void> {
    this.#check(options.signal);
    assertKey(key);
    if (options.ifNotExists && this.#objects.has(key)) throw new StorageError('exists', `write "${key}": object exists`);
    const pieces: Uint8Array[] = [];
    for await (const piece of sourceChunks(source)) {
      this.#check(options.signal);
      const injected = this.#inject?.(key);
      if (injected) throw injected;
      pieces.push(piece);
    }
    const data = Buffer.concat(pieces);
    if (options.expectedSha256) {
      const actual = createHash('sha256').update(data).digest('hex');
      if (actual !== options.expectedSha256) throw new StorageError('corrupt', `write "${key}": content has SHA-256 ${actual}, expected ${options.expectedSha256}`);
    }
    this.#check(options.signal);
    if (options.ifNotExists && this.#objects.has(key)) throw new StorageError('exists', `write "${key}": object exists`);
    this.#objects.set(key, { data, mtimeMs: Date.now() });
  }

  async touch(key: string, options: OpOptions = {}): Promise<void> {
    this.#check(options.signal);
    const entry = this.#objects.get(assertKey(key));
    if (!entry) throw new StorageError('not-found', `touch "${key}": no such object`);
    entry.mtimeMs = Date.now();
  }

  async delete(key: string, options: OpOptions = {}): Promise<void> {
    this.#check(options.signal);
    this.#objects.delete(assertKey(key));
  }

  async space(): Promise<undefined> {
    return undefined;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  /** Test helper: replace an object's bytes or age it, bypassing the contract. */
  tamper(key: string, change: { data?: Buffer; mtimeMs?: number }): void {
    const entry = this.#objects.get(key);
    if (!entry) throw new RangeError(`no object "${key}"`);
    if (change.data) entry.data = change.data;
    if (change.mtimeMs !== undefined) entry.mtimeMs = change.mtimeMs;
  }
}
