import { lstat, open, readdir, readlink, type FileHandle } from 'node:fs/promises';
import fs, { type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { IbsError } from '../core/index.ts';
import { mapConcurrent, release, throwIfAborted } from '../lib/index.ts';
import { compileExcludes } from './glob.ts';
import { encodeHeader, END_OF_ARCHIVE, padding, type TarEntry } from './tar-format.ts';
import { CatalogBuilder, type CatalogEntry, type CatalogPieces } from './catalog.ts';

const READ_BLOCK = 1024 * 1024;
/** Files up to this size are read whole, ahead of the stream, many at a time. */
const SMALL_FILE = 1024 * 1024;
const READ_AHEAD_FILES = 64;
const READ_AHEAD_BYTES = 16 * 1024 * 1024;
const STAT_CONCURRENCY = 32;

export interface TarCreateOptions {
  excludes?: readonly string[];
  /**
   * The catalog of the same archive in the previous snapshot. Entries whose metadata is unchanged (type,
   * size, mtime, mode, owner, link target, and for files ctime and inode) are not read: the stream carries a
   * reference to their byte range in the previous archive instead (`CopySegment`).
   */
  previous?: readonly CatalogEntry[] | undefined;
  signal?: AbortSignal | undefined;
  /** Warnings (file changed while read, unsupported file type, unreadable entry) go here. */
  onWarning?: (message: string) => void;
  /** Called as file data is read, for progress. */
  onBytes?: (bytes: number) => void;
}

export interface TarCreateResult {
  /** The catalog of what was archived, filled as the stream is read. */
  catalog: CatalogPieces;
  files: number;
  bytes: number;
}

/** Bytes [start, end) of the previous snapshot's archive, identical to what this stream would carry here. */
export interface CopySegment {
  copyFrom: { start: number; end: number };
}

export type TarPiece = Buffer | CopySegment;

/** An entry found by the walk; regular files carry their data (read ahead), or are unchanged (`same`). */
interface Pending {
  entry: TarEntry;
  full: string;
  data?: Promise<SmallRecord | { error: string }>;
  same?: CatalogEntry;
  ctime?: string;
  inode?: string;
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}

/** A small file read ahead, already laid out as its archive record: header, data, zero padding. */
interface SmallRecord {
  record: Buffer;
  headerLength: number;
  /** Bytes the file gave, up to its stat-ed size plus one (more means it grew). */
  read: number;
}

/**
 * Reads a small file whole into the record it becomes (header, then data, then room for the padding), so that
 * the stream does not copy it again; asks one byte more than its stat-ed size, to notice growth (that byte
 * lands in the padding, or in one spare byte). Uses plain descriptors rather than FileHandle objects: for
 * thousands of small files their creation and cleanup cost shows.
 */
function readSmall(full: string, size: number, header: Buffer): Promise<SmallRecord | { error: string }> {
  return new Promise((resolve) => {
    fs.open(full, 'r', (openError, fd) => {
      if (openError) {
        resolve({ error: `cannot open (${errorCode(openError)})` });
        return;
      }
      // A buffer of its own (not a slice of Node's pool, even when small), so that it can be freed once chunked;
      // the header is copied into it and freed (its length is read first: a freed buffer reads as empty).
      const headerLength = header.length;
      const record = Buffer.allocUnsafeSlow(headerLength + size + Math.max(1, padding(size)));
      header.copy(record, 0);
      release(header);
      const end = headerLength + size + 1;
      let filled = headerLength;
      const step = (): void => {
        fs.read(fd, record, filled, end - filled, null, (readError, bytesRead) => {
          if (readError || bytesRead === 0 || filled + bytesRead === end) {
            if (!readError) filled += bytesRead;
            fs.close(fd, () => resolve(readError ? { error: `cannot read (${errorCode(readError)})` } : { record, headerLength, read: filled - headerLength }));
            return;
          }
          filled += bytesRead;
          step();
        });
      };
      step();
    });
  });
}

/**
 * Streams the tree under `root` as a POSIX pax tar (entries relative to root, directories before their
 * contents, names sorted so that unchanged trees give identical streams and dedup well). Regular files,
 * directories, symlinks and hard links are archived with mode, owner and mtime; sockets, FIFOs and devices are
 * skipped with a warning, as are files that cannot be opened. Small files are read ahead concurrently, so the
 * stream is not held up by one open/read/close after another. `result` is filled when the stream ends. Every
 * buffer the stream yields is made for it and kept by nobody else: the consumer may free it once done.
 */
export function createTarStream(root: string, options: TarCreateOptions = {}): { stream: AsyncGenerator<TarPiece>; result: TarCreateResult } {
  const catalog = new CatalogBuilder();
  const result: TarCreateResult = { catalog, files: 0, bytes: 0 };
  const excluded = compileExcludes(options.excludes ?? []);
  const warn = options.onWarning ?? (() => {});
  const seenInodes = new Map<string, string>();
  const previous = new Map((options.previous ?? []).map((e) => [e.path, e]));
  // Where the previous archive's entries end and its end-of-archive marker starts.
  let previousEnd = 0;
  for (const e of options.previous ?? []) previousEnd = Math.max(previousEnd, e.end);
  let offset = 0;

  /** The previous catalog entry when this entry's header and data would be byte-identical to it. */
  function unchanged(entry: TarEntry, extra: { ctime?: string; inode?: string }): CatalogEntry | undefined {
    const prev = previous.get(entry.path);
    if (!prev || prev.type !== entry.type || prev.size !== (entry.type === 'file' ? entry.size : 0) || prev.mode !== entry.mode) return undefined;
    if (prev.mtime !== entry.mtime || prev.mtimeNs !== entry.mtimeNs || prev.uid !== entry.uid || prev.gid !== entry.gid) return undefined;
    if ((entry.type === 'symlink' || entry.type === 'hardlink') && prev.link !== entry.linkname) return undefined;
    if (entry.type === 'file' && (prev.ctime === undefined || prev.ctime !== extra.ctime || prev.inode !== extra.inode)) return undefined;
    const length = encodeHeader(entry).length + (entry.type === 'file' ? entry.size + padding(entry.size) : 0);
    return prev.end - prev.start === length ? prev : undefined;
  }

  function toEntry(path: string, st: BigIntStats): Omit<TarEntry, 'type'> {
    return {
      path,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtime: Number(st.mtimeNs / 1_000_000_000n),
      mtimeNs: Number(st.mtimeNs % 1_000_000_000n),
      size: 0,
      linkname: '',
    };
  }

  /** Entries in archive order, stat-ed many at a time per directory. */
  async function* walk(dir: string, rel: string): AsyncGenerator<Pending> {
    throwIfAborted(options.signal);
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (error) {
      if (rel === '') throw new IbsError('INVALID_ARGUMENT', `Cannot read directory "${dir}": ${(error as Error).message}`, { cause: error });
      warn(`${rel}: cannot read directory (${errorCode(error)}); skipped`);
      return;
    }
    const stats = await mapConcurrent(names, STAT_CONCURRENCY, async (name) => {
      try {
        return await lstat(join(dir, name), { bigint: true });
      } catch (error) {
        return { error: errorCode(error) };
      }
    });
    for (const [i, name] of names.entries()) {
      const full = join(dir, name);
      const path = rel === '' ? name : `${rel}/${name}`;
      const st = stats[i] as BigIntStats | { error: string };
      if ('error' in st) {
        warn(`${path}: cannot stat (${st.error}); skipped`);
        continue;
      }
      const isDir = st.isDirectory();
      if (excluded(path, isDir)) continue;
      const base = toEntry(path, st);
      if (isDir) {
        const entry: TarEntry = { ...base, type: 'dir' };
        const same = unchanged(entry, {});
        yield { entry, full, ...(same ? { same } : {}) };
        yield* walk(full, path);
      } else if (st.isSymbolicLink()) {
        try {
          const entry: TarEntry = { ...base, type: 'symlink', linkname: await readlink(full) };
          const same = unchanged(entry, {});
          yield { entry, full, ...(same ? { same } : {}) };
        } catch (error) {
          warn(`${path}: cannot read link (${errorCode(error)}); skipped`);
        }
      } else if (st.isFile()) {
        const inode = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1n ? seenInodes.get(inode) : undefined;
        if (first !== undefined) {
          const entry: TarEntry = { ...base, type: 'hardlink', linkname: first };
          const same = unchanged(entry, {});
          yield { entry, full, ...(same ? { same } : {}) };
          continue;
        }
        if (st.nlink > 1n) seenInodes.set(inode, path);
        const size = Number(st.size);
        const entry: TarEntry = { ...base, type: 'file', size };
        const extra = { ctime: `${st.ctimeNs / 1_000_000_000n}.${String(st.ctimeNs % 1_000_000_000n).padStart(9, '0')}`, inode };
        const same = unchanged(entry, extra);
        if (same) yield { entry, full, same, ...extra };
        else yield { entry, full, ...extra, ...(size <= SMALL_FILE ? { data: readSmall(full, size, encodeHeader(entry)) } : {}) };
      } else {
        warn(`${path}: ${st.isFIFO() ? 'FIFO' : st.isSocket() ? 'socket' : 'device node'} not supported; skipped`);
      }
    }
  }

  function record(entry: TarEntry, start: number, extra: { ctime?: string | undefined; inode?: string | undefined } = {}): void {
    result.files++;
    catalog.add({
      path: entry.path,
      type: entry.type,
      size: entry.type === 'file' ? entry.size : 0,
      mtime: entry.mtime,
      mtimeNs: entry.mtimeNs,
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      start,
      end: offset,
      ...(entry.type === 'hardlink' || entry.type === 'symlink' ? { link: entry.linkname } : {}),
      ...(extra.ctime !== undefined ? { ctime: extra.ctime, inode: extra.inode } : {}),
    });
  }

  function* emitData(entry: TarEntry, small: SmallRecord): Generator<Buffer> {
    const { record, headerLength, read } = small;
    const dataEnd = headerLength + entry.size;
    if (read > entry.size) warn(`${entry.path}: file grew while being read; archived its first ${entry.size} bytes`);
    else if (read < entry.size) {
      warn(`${entry.path}: file shrank while being read; padded with zeros to ${entry.size} bytes`);
      record.fill(0, headerLength + read, dataEnd);
    }
    const end = dataEnd + padding(entry.size);
    record.fill(0, dataEnd, end);
    offset += end;
    options.onBytes?.(entry.size);
    result.bytes += entry.size;
    yield record.subarray(0, end);
  }

  async function* emitLarge(entry: TarEntry, full: string, extra: { ctime?: string | undefined; inode?: string | undefined }): AsyncGenerator<Buffer> {
    let handle: FileHandle;
    try {
      handle = await open(full, 'r');
    } catch (error) {
      warn(`${entry.path}: cannot open (${errorCode(error)}); skipped`);
      return;
    }
    const start = offset;
    try {
      const header = encodeHeader(entry);
      offset += header.length;
      yield header;
      let remaining = entry.size;
      while (remaining > 0) {
        throwIfAborted(options.signal);
        const buffer = Buffer.allocUnsafe(Math.min(READ_BLOCK, remaining));
        let bytesRead: number;
        try {
          ({ bytesRead } = await handle.read(buffer, 0, buffer.length, null));
        } catch (error) {
          // The header is already out: the stream cannot go on consistently.
          throw new IbsError('INVALID_ARGUMENT', `Reading "${entry.path}" failed midway: ${(error as Error).message}`, { cause: error });
        }
        if (bytesRead === 0) {
          warn(`${entry.path}: file shrank while being read; padded with zeros to ${entry.size} bytes`);
          const filler = Buffer.alloc(remaining);
          offset += filler.length;
          remaining = 0;
          yield filler;
          break;
        }
        remaining -= bytesRead;
        offset += bytesRead;
        result.bytes += bytesRead;
        options.onBytes?.(bytesRead);
        yield bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead);
      }
      if ((await handle.read(Buffer.alloc(1), 0, 1, null)).bytesRead > 0) warn(`${entry.path}: file grew while being read; archived its first ${entry.size} bytes`);
    } finally {
      await handle.close();
    }
    const pad = padding(entry.size);
    if (pad > 0) {
      offset += pad;
      yield Buffer.alloc(pad);
    }
    record(entry, start, extra);
  }

  async function* emit(p: Pending): AsyncGenerator<TarPiece> {
    const { entry } = p;
    const extra = { ctime: p.ctime, inode: p.inode };
    if (p.same) {
      const start = offset;
      offset += p.same.end - p.same.start;
      if (entry.type === 'file') {
        result.bytes += entry.size;
        options.onBytes?.(entry.size);
      }
      yield { copyFrom: { start: p.same.start, end: p.same.end } };
      record(entry, start, extra);
    } else if (entry.type === 'file' && p.data) {
      const data = await p.data;
      if ('error' in data) {
        warn(`${entry.path}: ${data.error}; skipped`);
        return;
      }
      const start = offset;
      yield* emitData(entry, data);
      record(entry, start, extra);
    } else if (entry.type === 'file') {
      yield* emitLarge(entry, p.full, extra);
    } else {
      const start = offset;
      const header = encodeHeader(entry);
      offset += header.length;
      yield header;
      record(entry, start);
    }
  }

  /**
   * Merges references to adjacent ranges of the previous archive into one, and ends the archive. When the
   * stream ends on a range that ends where the previous archive's entries did, the end-of-archive marker is
   * taken from the previous archive too, so that its last chunk is reused like the others.
   */
  async function* merged(source: AsyncGenerator<TarPiece>): AsyncGenerator<TarPiece> {
    let run: { start: number; end: number } | undefined;
    for await (const piece of source) {
      if (!Buffer.isBuffer(piece)) {
        if (run && run.end === piece.copyFrom.start) run.end = piece.copyFrom.end;
        else {
          if (run) yield { copyFrom: run };
          run = { ...piece.copyFrom };
        }
        continue;
      }
      if (run) {
        yield { copyFrom: run };
        run = undefined;
      }
      yield piece;
    }
    offset += END_OF_ARCHIVE.length;
    if (run && run.end === previousEnd) {
      run.end += END_OF_ARCHIVE.length;
      yield { copyFrom: run };
      return;
    }
    if (run) yield { copyFrom: run };
    yield Buffer.from(END_OF_ARCHIVE);
  }

  async function* entries(): AsyncGenerator<TarPiece> {
    let st;
    try {
      st = await lstat(root);
    } catch (error) {
      throw new IbsError('NOT_FOUND', `Cannot back up "${root}": ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (error as Error).message}`);
    }
    if (!st.isDirectory()) throw new IbsError('INVALID_ARGUMENT', `Cannot back up "${root}" as a file archive: it is not a directory (use NAME.img for an image)`);
    // A window of entries whose small-file reads are already under way.
    const window: Pending[] = [];
    let windowBytes = 0;
    for await (const p of walk(root, '')) {
      window.push(p);
      if (p.data) windowBytes += p.entry.size;
      while (window.length > READ_AHEAD_FILES || windowBytes > READ_AHEAD_BYTES || (window.length > 0 && !window[0]?.data && window[0]?.entry.type === 'file')) {
        const next = window.shift() as Pending;
        if (next.data) windowBytes -= next.entry.size;
        yield* emit(next);
      }
    }
    for (const p of window) yield* emit(p);
  }

  return { stream: merged(entries()), result };
}
