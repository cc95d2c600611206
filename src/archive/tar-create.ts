import fs, { type BigIntStats } from 'node:fs';
import { join } from 'node:path';
import { IbsError } from '../core/index.ts';
import { release, throwIfAborted } from '../lib/index.ts';
import { compileExcludes } from './glob.ts';
import { encodeHeader, END_OF_ARCHIVE, headerLength, padding, type TarEntry } from './tar-format.ts';
import { CatalogBuilder, type CatalogEntry, type CatalogIndex, type CatalogPieces } from './catalog.ts';
import { Thread } from './thread.ts';

const READ_BLOCK = 1024 * 1024;
/** Files up to this size are read whole, in one record with their header. */
const SMALL_FILE = 1024 * 1024;

export interface TarCreateOptions {
  excludes?: readonly string[];
  /**
   * The catalog of the same archive in the previous snapshot. Entries whose metadata is unchanged (type,
   * size, mtime, mode, owner, link target, and for files ctime and inode) are not read: the stream carries a
   * reference to their byte range in the previous archive instead (`CopySegment`).
   */
  previous?: CatalogIndex | undefined;
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

/** An entry found by the walk; unchanged ones (`same`) are not read again. */
interface Pending {
  entry: TarEntry;
  full: string;
  same?: CatalogEntry;
  ctime?: string;
  inode?: string;
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
}

/** A small file laid out as its archive record: header, data, zero padding. */
interface SmallRecord {
  record: Buffer;
  headerLength: number;
  /** Bytes the file gave, up to its stat-ed size plus one (more means it grew). */
  read: number;
}

/**
 * Reads a small file whole into the record it becomes (header, then data, then room for the padding), so that
 * the stream does not copy it again; asks one byte more than its stat-ed size, to notice growth (that byte
 * lands in the padding, or in one spare byte).
 */
function readSmall(full: string, size: number, header: Buffer): SmallRecord | { error: string } {
  let fd: number;
  try {
    fd = fs.openSync(full, 'r');
  } catch (error) {
    return { error: `cannot open (${errorCode(error)})` };
  }
  try {
    // A buffer of its own (not a slice of Node's pool, even when small), so that it can be freed once consumed;
    // the header is copied into it and freed (its length is read first: a freed buffer reads as empty).
    const headerLength = header.length;
    const record = Buffer.allocUnsafeSlow(headerLength + size + Math.max(1, padding(size)));
    header.copy(record, 0);
    release(header);
    const end = headerLength + size + 1;
    let filled = headerLength;
    for (let n = -1; n !== 0 && filled < end; filled += n) n = fs.readSync(fd, record, filled, end - filled, null);
    return { record, headerLength, read: filled - headerLength };
  } catch (error) {
    return { error: `cannot read (${errorCode(error)})` };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Streams the tree under `root` as a POSIX pax tar (entries relative to root, directories before their
 * contents, names sorted so that unchanged trees give identical streams and dedup well). Regular files,
 * directories, symlinks and hard links are archived with mode, owner and mtime; sockets, FIFOs and devices are
 * skipped with a warning, as are files that cannot be opened. `result` is filled when the stream ends. Every
 * buffer the stream yields is made for it and kept by nobody else: the consumer may free it once done.
 *
 * The file system calls are synchronous: they block the calling thread, so a program that has other work
 * runs this on a thread of its own (`createTarStreamInWorker`). Measured on a source tree of 83,731 entries
 * (1.3 GB), on such a thread: a backup took 11 s with synchronous calls and 14-16 s with asynchronous
 * ones (each call a hand-off to the thread pool and back); from a cold cache both took 15 s.
 */
export function createTarStream(root: string, options: TarCreateOptions = {}): { stream: Generator<TarPiece>; result: TarCreateResult } {
  const catalog = new CatalogBuilder();
  const result: TarCreateResult = { catalog, files: 0, bytes: 0 };
  const excluded = compileExcludes(options.excludes ?? []);
  const warn = options.onWarning ?? (() => {});
  const seenInodes = new Map<string, string>();
  const previous = options.previous;
  let offset = 0;

  /**
   * The previous catalog entry when this entry's record would be byte-identical to its record: same metadata,
   * for files same ctime and inode, and a record of the length this entry's would have (its header's length is
   * computed, not encoded: encoding every header took a sixth of an unchanged backup's time).
   */
  function unchanged(entry: TarEntry, extra: { ctime?: string; inode?: string }): CatalogEntry | undefined {
    const prev = previous?.get(entry.path);
    if (!prev || prev.type !== entry.type || prev.size !== (entry.type === 'file' ? entry.size : 0) || prev.mode !== entry.mode) return undefined;
    if (prev.mtime !== entry.mtime || prev.mtimeNs !== entry.mtimeNs || prev.uid !== entry.uid || prev.gid !== entry.gid) return undefined;
    if ((entry.type === 'symlink' || entry.type === 'hardlink') && prev.link !== entry.linkname) return undefined;
    if (entry.type === 'file' && (prev.ctime === undefined || prev.ctime !== extra.ctime || prev.inode !== extra.inode)) return undefined;
    const length = headerLength(entry) + (entry.type === 'file' ? entry.size + padding(entry.size) : 0);
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

  /** Entries in archive order. */
  function* walk(dir: string, rel: string): Generator<Pending> {
    throwIfAborted(options.signal);
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch (error) {
      if (rel === '') throw new IbsError('INVALID_ARGUMENT', `Cannot read directory "${dir}": ${(error as Error).message}`, { cause: error });
      warn(`${rel}: cannot read directory (${errorCode(error)}); skipped`);
      return;
    }
    for (const name of names) {
      const full = join(dir, name);
      const path = rel === '' ? name : `${rel}/${name}`;
      let st: BigIntStats;
      try {
        st = fs.lstatSync(full, { bigint: true });
      } catch (error) {
        warn(`${path}: cannot stat (${errorCode(error)}); skipped`);
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
          const entry: TarEntry = { ...base, type: 'symlink', linkname: fs.readlinkSync(full) };
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
        const entry: TarEntry = { ...base, type: 'file', size: Number(st.size) };
        const extra = { ctime: `${st.ctimeNs / 1_000_000_000n}.${String(st.ctimeNs % 1_000_000_000n).padStart(9, '0')}`, inode };
        const same = unchanged(entry, extra);
        yield { entry, full, ...extra, ...(same ? { same } : {}) };
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

  function* emitSmall(entry: TarEntry, full: string): Generator<Buffer> {
    const small = readSmall(full, entry.size, encodeHeader(entry));
    if ('error' in small) {
      warn(`${entry.path}: ${small.error}; skipped`);
      return;
    }
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

  function* emitLarge(entry: TarEntry, full: string): Generator<Buffer> {
    let fd: number;
    try {
      fd = fs.openSync(full, 'r');
    } catch (error) {
      warn(`${entry.path}: cannot open (${errorCode(error)}); skipped`);
      return;
    }
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
          bytesRead = fs.readSync(fd, buffer, 0, buffer.length, null);
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
      if (fs.readSync(fd, Buffer.alloc(1), 0, 1, null) > 0) warn(`${entry.path}: file grew while being read; archived its first ${entry.size} bytes`);
    } finally {
      fs.closeSync(fd);
    }
    const pad = padding(entry.size);
    if (pad > 0) {
      offset += pad;
      yield Buffer.alloc(pad);
    }
  }

  function* emit(p: Pending): Generator<TarPiece> {
    const { entry } = p;
    const start = offset;
    if (p.same) {
      offset += p.same.end - p.same.start;
      if (entry.type === 'file') {
        result.bytes += entry.size;
        options.onBytes?.(entry.size);
      }
      yield { copyFrom: { start: p.same.start, end: p.same.end } };
    } else if (entry.type === 'file') {
      yield* entry.size <= SMALL_FILE ? emitSmall(entry, p.full) : emitLarge(entry, p.full);
      // Nothing was written: the file could not be opened (warned).
      if (offset === start) return;
    } else {
      const header = encodeHeader(entry);
      offset += header.length;
      yield header;
    }
    record(entry, start, { ctime: p.ctime, inode: p.inode });
  }

  /**
   * Merges references to adjacent ranges of the previous archive into one, and ends the archive. When the
   * stream ends on a range that ends where the previous archive's entries did, the end-of-archive marker is
   * taken from the previous archive too, so that its last chunk is reused like the others.
   */
  function* merged(source: Generator<TarPiece>): Generator<TarPiece> {
    let run: { start: number; end: number } | undefined;
    for (const piece of source) {
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
    if (run && run.end === previous?.end) {
      run.end += END_OF_ARCHIVE.length;
      yield { copyFrom: run };
      return;
    }
    if (run) yield { copyFrom: run };
    yield Buffer.from(END_OF_ARCHIVE);
  }

  function* entries(): Generator<TarPiece> {
    let st;
    try {
      st = fs.lstatSync(root);
    } catch (error) {
      throw new IbsError('NOT_FOUND', `Cannot back up "${root}": ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (error as Error).message}`);
    }
    if (!st.isDirectory()) throw new IbsError('INVALID_ARGUMENT', `Cannot back up "${root}" as a file archive: it is not a directory (use NAME.img for an image)`);
    for (const p of walk(root, '')) yield* emit(p);
  }

  return { stream: merged(entries()), result };
}

/** What `createTarStreamInWorker` gives its thread. */
export interface TarWorkerData {
  root: string;
  excludes: readonly string[];
  /** The previous snapshot's catalog of the same archive, as stored (JSON lines). */
  previousCatalog?: Uint8Array | undefined;
}

/** What the thread sends back: batches of the stream, warnings, then the end (or a `ThreadError`). */
export type TarWorkerMessage =
  | { type: 'pieces'; pieces: Array<Uint8Array | CopySegment>; bytes: number; weight: number }
  | { type: 'warning'; message: string }
  | { type: 'end'; files: number; bytes: number; count: number; catalog: Uint8Array[] };

/**
 * `createTarStream` run on a thread of its own: the same stream, in a few large buffers. A backup of a source
 * tree spends most of its time on work per file (stat, open, read, close, headers, catalog); on the calling
 * thread, that work and the chunking took turns. `previousCatalog` is the previous catalog as stored (indexed by
 * the thread; lines that do not parse mean their files are read again). Warnings and progress come back as the thread makes
 * them; an abort of `signal`, or the consumer stopping early, ends the thread.
 */
export function createTarStreamInWorker(
  root: string,
  options: Omit<TarCreateOptions, 'previous'> & { previousCatalog?: Uint8Array | undefined } = {},
): { stream: AsyncGenerator<TarPiece>; result: TarCreateResult } {
  const result: TarCreateResult = { catalog: { count: 0, pieces: () => [] }, files: 0, bytes: 0 };
  async function* stream(): AsyncGenerator<TarPiece> {
    const data: TarWorkerData = { root, excludes: options.excludes ?? [], previousCatalog: options.previousCatalog };
    const inbox: Array<Exclude<TarWorkerMessage, { type: 'warning' }>> = [];
    const thread = new Thread<TarWorkerMessage>('./tar-worker.ts', data, `The thread reading "${root}"`, options.signal, (m) => {
      if (m.type === 'warning') options.onWarning?.(m.message);
      else inbox.push(m);
    });
    try {
      for (;;) {
        await thread.until(() => inbox.length > 0);
        const m = inbox.shift() as (typeof inbox)[number];
        if (m.type === 'end') {
          const pieces = m.catalog.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength));
          result.catalog = { count: m.count, pieces: () => pieces };
          result.files = m.files;
          result.bytes = m.bytes;
          return;
        }
        if (m.bytes > 0) options.onBytes?.(m.bytes);
        for (const piece of m.pieces) yield piece instanceof Uint8Array ? Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength) : piece;
        thread.post({ ack: m.weight });
      }
    } finally {
      await thread.close();
    }
  }
  return { stream: stream(), result };
}
