import { createHash, randomBytes } from 'node:crypto';
import { link, open, type FileHandle, readdir, rename, rm, stat, statfs, unlink, utimes, rmdir } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { directRefused, fsyncDir, makeDirs, openDirect, readDirect, readInto, throwIfAborted, writeAll, writeDirect } from '../../lib/index.ts';
import {
  assertPrefix,
  sourceChunks,
  StorageError,
  type BackendInfo,
  type ObjectInfo,
  type OpOptions,
  type ReadOptions,
  type SpaceInfo,
  type StorageBackend,
  type WriteOptions,
  type WriteSource,
  type ThreadStore,
} from '../backend.ts';
import { assertRoot, mapError, objectPath, rootIdentity, threadLocation, TEMP_MARKER, writeError, type RootIdentity } from './local-files.ts';

export interface LocalBackendOptions {
  root: string;
  /** Test hook: an error to raise before the data of a write reaches the disk (to inject ENOSPC, EIO, …). */
  injectWriteError?: (key: string) => NodeJS.ErrnoException | undefined;
}

/**
 * Objects as files under a root directory. Writes go to a temporary file in the target directory, are
 * fsynced, then renamed (or hard-linked for `ifNotExists`, which fails atomically on an existing name), and
 * the directory is fsynced, so a crash leaves the old object, the new one, or a temporary file that listing
 * ignores and `cleanTemporary` removes.
 */
export class LocalBackend implements StorageBackend {
  readonly info: BackendInfo;
  readonly #root: string;
  readonly #inject: LocalBackendOptions['injectWriteError'];
  /** The root as it was when made (see assertRoot); taken on the first write when it did not exist yet. */
  #identity: RootIdentity | undefined;
  /** False once the root's file system refused direct I/O. */
  #direct = true;

  constructor(options: LocalBackendOptions) {
    this.#root = options.root;
    this.#inject = options.injectWriteError;
    this.#identity = rootIdentity(options.root);
    this.info = { scheme: 'local', location: options.root, capabilities: { atomicRename: true, conditionalCreate: true, maxConnections: 64 } };
  }

  /** Whole objects stored from a worker thread (thread-store.ts); not with a test hook, which a thread cannot call. */
  get threadStore(): ThreadStore | undefined {
    return this.#inject ? undefined : { module: new URL('./thread-store.ts', import.meta.url).href, location: threadLocation(this.#root, this.#identity) };
  }

  #path(key: string): string {
    return objectPath(this.#root, key);
  }

  async stat(key: string, options: OpOptions = {}): Promise<ObjectInfo | undefined> {
    throwIfAborted(options.signal);
    try {
      const st = await stat(this.#path(key));
      if (!st.isFile()) return undefined;
      return { key, size: st.size, mtimeMs: st.mtimeMs };
    } catch (error) {
      const mapped = mapError(error, 'stat', key);
      if (mapped instanceof StorageError && mapped.kind === 'not-found') return undefined;
      throw mapped;
    }
  }

  async *list(prefix: string, options: OpOptions = {}): AsyncIterable<ObjectInfo> {
    assertPrefix(prefix);
    const start = prefix === '' ? this.#root : join(this.#root, ...prefix.slice(0, -1).split('/'));
    const stack = [start];
    while (stack.length > 0) {
      throwIfAborted(options.signal);
      const dir = stack.pop() as string;
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        throw mapError(error, 'list', prefix);
      }
      for (const entry of entries) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) {
          stack.push(full);
        } else if (entry.isFile() && !entry.name.includes(TEMP_MARKER)) {
          let st;
          try {
            st = await stat(full);
          } catch {
            continue; // deleted while listing
          }
          yield { key: relative(this.#root, full).split(sep).join('/'), size: st.size, mtimeMs: st.mtimeMs };
        }
      }
    }
  }

  async read(key: string, options: ReadOptions = {}): Promise<Buffer> {
    throwIfAborted(options.signal);
    const path = this.#path(key);
    try {
      const range = options.range;
      if (range && !(range.start >= 0 && range.end >= range.start)) throw new RangeError(`Invalid range [${range.start}, ${range.end}) for "${key}"`);
      // A whole cold object from the device, as it was written (lib/direct-io.ts), where the file system allows it.
      if (options.cold && !range && this.#direct && !this.#inject) {
        try {
          return await readDirect(path);
        } catch (error) {
          if (!directRefused(error)) throw error;
          this.#direct = false;
        }
      }
      const handle = await open(path, 'r');
      try {
        // The whole object is as large as it is when opened (objects are replaced by rename, never changed in
        // place): one read of that size rather than readFile's pieces of 512 KiB, each a call of the thread pool.
        const length = range ? range.end - range.start : (await handle.stat()).size;
        const buffer = Buffer.allocUnsafeSlow(length);
        const filled = await readInto(handle, buffer, range?.start ?? 0);
        return filled === length ? buffer : buffer.subarray(0, filled);
      } finally {
        await handle.close();
      }
    } catch (error) {
      throw mapError(error, 'read', key);
    }
  }

  async write(key: string, source: WriteSource, options: WriteOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const path = this.#path(key);
    const dir = dirname(path);
    const temp = `${path}${TEMP_MARKER}${randomBytes(6).toString('hex')}`;
    try {
      // A whole object goes to the device directly (lib/direct-io.ts) where the file system allows it: the
      // file is fsynced at once anyway. A test hook that injects errors between pieces takes the usual way.
      const whole = source instanceof Uint8Array && !this.#inject ? source : undefined;
      if (whole && options.expectedSha256) this.#assertSha256(key, createHash('sha256').update(whole).digest('hex'), options.expectedSha256);
      let { handle, direct } = await this.#create(temp, dir, key, whole !== undefined);
      try {
        if (whole && direct && !(await this.#fillDirect(handle, whole))) {
          // Refused once open (alignment): this root is written the usual way from now on.
          await handle.close();
          await rm(temp, { force: true });
          ({ handle, direct } = await this.#create(temp, dir, key, false));
        }
        if (!direct) {
          const hash = options.expectedSha256 && !whole ? createHash('sha256') : undefined;
          for await (const piece of sourceChunks(source)) {
            throwIfAborted(options.signal);
            const injected = this.#inject?.(key);
            if (injected) throw injected;
            hash?.update(piece);
            await writeAll(handle, piece);
          }
          if (hash) this.#assertSha256(key, hash.digest('hex'), options.expectedSha256);
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      throwIfAborted(options.signal);
      if (options.ifNotExists) {
        await link(temp, path);
        await unlink(temp);
      } else {
        await rename(temp, path);
      }
      await fsyncDir(dir);
    } catch (error) {
      await rm(temp, { force: true }).catch(() => {});
      throw writeError(error, this.#root, this.#identity, key);
    }
  }

  #assertSha256(key: string, actual: string, expected: string | undefined): void {
    if (expected !== undefined && actual !== expected) throw new StorageError('corrupt', `write "${key}": content has SHA-256 ${actual}, expected ${expected}`);
  }

  /** Writes a whole object to a file opened for direct I/O; false when the file system refused the write. */
  async #fillDirect(handle: FileHandle, data: Uint8Array): Promise<boolean> {
    try {
      await writeDirect(handle, data);
      return true;
    } catch (error) {
      if (!directRefused(error)) throw error;
      this.#direct = false;
      return false;
    }
  }

  /** Creates the file `temp` in `dir`, creating `dir` (and its parents, durably) only when it is missing and the root is still itself. */
  async #create(temp: string, dir: string, key: string, direct: boolean): Promise<{ handle: FileHandle; direct: boolean }> {
    try {
      return await this.#open(temp, direct);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    assertRoot(this.#root, this.#identity, 'write', key);
    const created = await makeDirs(dir);
    if (created !== undefined) await fsyncDir(dirname(created));
    this.#identity ??= rootIdentity(this.#root);
    return this.#open(temp, direct);
  }

  /** Opens `temp` exclusively: for direct I/O when asked and this root's file system has not refused it. */
  async #open(temp: string, direct: boolean): Promise<{ handle: FileHandle; direct: boolean }> {
    if (direct && this.#direct) {
      try {
        return { handle: await openDirect(temp, 0o644), direct: true };
      } catch (error) {
        if (!directRefused(error)) throw error;
        this.#direct = false;
      }
    }
    return { handle: await open(temp, 'wx', 0o644), direct: false };
  }

  async touch(key: string, options: OpOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const now = new Date();
    try {
      await utimes(this.#path(key), now, now);
    } catch (error) {
      throw mapError(error, 'touch', key);
    }
  }

  async delete(key: string, options: OpOptions = {}): Promise<void> {
    throwIfAborted(options.signal);
    const path = this.#path(key);
    try {
      await unlink(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw mapError(error, 'delete', key);
    }
    // Drop directories left empty so that removed snapshots and groups do not linger as folders.
    let dir = dirname(path);
    while (dir.startsWith(this.#root) && dir !== this.#root && !dir.endsWith(`${sep}.chunks`) && !/\.chunks\/[0-9a-f]{4}$/.test(dir)) {
      try {
        await rmdir(dir);
      } catch {
        break;
      }
      dir = dirname(dir);
    }
  }

  async space(options: OpOptions = {}): Promise<SpaceInfo> {
    throwIfAborted(options.signal);
    const st = await statfs(this.#root);
    return { totalBytes: st.blocks * st.bsize, freeBytes: st.bavail * st.bsize, totalInodes: st.files, freeInodes: st.ffree };
  }

  /** Removes temporary files older than `olderThanMs` left behind by crashed writers; returns how many. */
  async cleanTemporary(olderThanMs: number, options: OpOptions = {}): Promise<number> {
    let removed = 0;
    const stack = [this.#root];
    while (stack.length > 0) {
      throwIfAborted(options.signal);
      const dir = stack.pop() as string;
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const entry of entries) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) stack.push(full);
        else if (entry.name.includes(TEMP_MARKER)) {
          const st = await stat(full).catch(() => undefined);
          if (st && Date.now() - st.mtimeMs > olderThanMs) {
            await rm(full, { force: true });
            removed++;
          }
        }
      }
    }
    return removed;
  }

  async close(): Promise<void> {}
}
