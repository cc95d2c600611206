import { lstat, open, opendir, readlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { IbsError } from '../core/index.ts';
import { throwIfAborted } from '../lib/index.ts';
import { compileExcludes } from './glob.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarEntry } from './tar-format.ts';
import type { CatalogEntry } from './catalog.ts';

const READ_BLOCK = 1024 * 1024;

export interface TarCreateOptions {
  excludes?: readonly string[];
  signal?: AbortSignal | undefined;
  /** Warnings (file changed while read, unsupported file type, unreadable entry) go here. */
  onWarning?: (message: string) => void;
  /** Called as file data is read, for progress. */
  onBytes?: (bytes: number) => void;
}

export interface TarCreateResult {
  catalog: CatalogEntry[];
  files: number;
  bytes: number;
}

/**
 * Streams the tree under `root` as a POSIX pax tar (entries relative to root, directories before their
 * contents, names sorted so that unchanged trees give identical streams and dedup well). Regular files,
 * directories, symlinks and hard links are archived with mode, owner and mtime; sockets, FIFOs and devices are
 * skipped with a warning. `result` is filled when the stream ends.
 */
export function createTarStream(root: string, options: TarCreateOptions = {}): { stream: AsyncGenerator<Buffer>; result: TarCreateResult } {
  const result: TarCreateResult = { catalog: [], files: 0, bytes: 0 };
  const excluded = compileExcludes(options.excludes ?? []);
  const warn = options.onWarning ?? (() => {});
  const seenInodes = new Map<string, string>();
  let offset = 0;

  async function* emitEntry(entry: TarEntry, handle?: FileHandle): AsyncGenerator<Buffer> {
    const header = encodeHeader(entry);
    const start = offset;
    offset += header.length;
    yield header;
    if (handle && entry.size > 0) {
      let remaining = entry.size;
      try {
        while (remaining > 0) {
          throwIfAborted(options.signal);
          const buffer = Buffer.allocUnsafe(Math.min(READ_BLOCK, remaining));
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
          if (bytesRead === 0) {
            warn(`${entry.path}: file shrank while being read; padded with zeros to ${entry.size} bytes`);
            buffer.fill(0);
            const filler = Math.min(buffer.length, remaining);
            remaining -= filler;
            offset += filler;
            yield buffer.subarray(0, filler);
            continue;
          }
          remaining -= bytesRead;
          offset += bytesRead;
          options.onBytes?.(bytesRead);
          yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
        }
        const extra = Buffer.alloc(1);
        if ((await handle.read(extra, 0, 1, null)).bytesRead > 0) warn(`${entry.path}: file grew while being read; archived its first ${entry.size} bytes`);
      } catch (error) {
        if ((error as Error).name === 'AbortError') throw error;
        // The header is already out: the stream cannot go on consistently.
        throw new IbsError('INVALID_ARGUMENT', `Reading "${entry.path}" failed midway: ${(error as Error).message}`, { cause: error });
      }
      const pad = padding(entry.size);
      if (pad > 0) {
        offset += pad;
        yield Buffer.alloc(pad);
      }
      result.bytes += entry.size;
    }
    result.files++;
    result.catalog.push({
      path: entry.path,
      type: entry.type,
      size: entry.type === 'file' ? entry.size : 0,
      mtime: entry.mtime,
      mode: entry.mode,
      start,
      end: offset,
      ...(entry.type === 'hardlink' ? { link: entry.linkname } : {}),
    });
  }

  async function* walk(dir: string, rel: string): AsyncGenerator<Buffer> {
    throwIfAborted(options.signal);
    let names: string[];
    try {
      const handle = await opendir(dir);
      names = [];
      for await (const d of handle) names.push(d.name);
    } catch (error) {
      if (rel === '') throw new IbsError('INVALID_ARGUMENT', `Cannot read directory "${dir}": ${(error as Error).message}`, { cause: error });
      warn(`${rel}: cannot read directory (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); skipped`);
      return;
    }
    names.sort();
    for (const name of names) {
      const full = join(dir, name);
      const path = rel === '' ? name : `${rel}/${name}`;
      let st;
      try {
        st = await lstat(full, { bigint: true });
      } catch (error) {
        warn(`${path}: cannot stat (${(error as NodeJS.ErrnoException).code}); skipped`);
        continue;
      }
      const isDir = st.isDirectory();
      if (excluded(path, isDir)) continue;
      const base = {
        path,
        mode: Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtime: Number(st.mtimeNs / 1_000_000_000n),
        mtimeNs: Number(st.mtimeNs % 1_000_000_000n),
        size: 0,
        linkname: '',
      };
      if (isDir) {
        yield* emitEntry({ ...base, type: 'dir' });
        yield* walk(full, path);
      } else if (st.isSymbolicLink()) {
        yield* emitEntry({ ...base, type: 'symlink', linkname: await readlink(full) });
      } else if (st.isFile()) {
        const inode = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1n ? seenInodes.get(inode) : undefined;
        if (first !== undefined) {
          yield* emitEntry({ ...base, type: 'hardlink', linkname: first });
          continue;
        }
        let handle: FileHandle;
        try {
          handle = await open(full, 'r');
        } catch (error) {
          warn(`${path}: cannot open (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); skipped`);
          continue;
        }
        if (st.nlink > 1n) seenInodes.set(inode, path);
        try {
          yield* emitEntry({ ...base, type: 'file', size: Number(st.size) }, handle);
        } finally {
          await handle.close();
        }
      } else {
        warn(`${path}: ${st.isFIFO() ? 'FIFO' : st.isSocket() ? 'socket' : 'device node'} not supported; skipped`);
      }
    }
  }

  async function* stream(): AsyncGenerator<Buffer> {
    let st;
    try {
      st = await lstat(root);
    } catch (error) {
      throw new IbsError('NOT_FOUND', `Cannot back up "${root}": ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (error as Error).message}`);
    }
    if (!st.isDirectory()) throw new IbsError('INVALID_ARGUMENT', `Cannot back up "${root}" as a file archive: it is not a directory (use NAME.img for an image)`);
    yield* walk(root, '');
    offset += END_OF_ARCHIVE.length;
    yield END_OF_ARCHIVE;
  }

  return { stream: stream(), result };
}
