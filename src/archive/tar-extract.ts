import { join, normalize, resolve, sep } from 'node:path';
import fs from 'node:fs';
import { IbsError, fileSystemError } from '../core/index.ts';
import { isWhole, makeDirsSync, movable, throwIfAborted, writeAllSync } from '../lib/index.ts';
import { parseTar, type ParsedEntry } from './tar-parse.ts';
import type { PayloadChunk } from './tar-assemble.ts';
import { Thread } from './thread.ts';

export interface ExtractOptions {
  /** Restore owners (uid/gid); only possible as root. Default: when running as root. */
  owners?: boolean;
  signal?: AbortSignal | undefined;
  onWarning?: (message: string) => void;
  onBytes?: (bytes: number) => void;
}

export interface ExtractResult {
  entries: number;
  bytes: number;
}

/**
 * Creates a new file for writing (exclusive, so that a symlink an earlier entry put at that path is never
 * followed; whatever is there is removed first).
 */
function createFile(path: string, mode: number): number {
  try {
    return fs.openSync(path, 'wx', mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    fs.rmSync(path, { force: true });
    return fs.openSync(path, 'wx', mode);
  }
}

/**
 * An mtime as the seconds Node's utimes functions take. A double cannot hold nanoseconds at today's dates (its
 * step is 238 ns): the nearest one to x.999999999 s is x+1, and one just above a millisecond can fall below
 * it. The middle of the entry's microsecond is passed instead, so that the restored time has the right
 * second, millisecond and microsecond; whole seconds are exact as they are.
 */
function utimeSeconds(mtime: number, mtimeNs: number): number {
  return mtimeNs === 0 ? mtime : mtime + (Math.floor(mtimeNs / 1000) * 1000 + 500) / 1e9;
}

/** The process's umask, from /proc (reading it with process.umask() is deprecated); 0o077 when unknown. */
function currentUmask(): number {
  try {
    const m = /^Umask:\s+([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? parseInt(m[1] as string, 8) : 0o077;
  } catch {
    return 0o077;
  }
}

function safeRelative(path: string): string {
  const norm = normalize(path).replace(/^(\.\/)+/, '');
  if (norm === '' || norm === '.' || norm.startsWith('/') || norm === '..' || norm.startsWith(`..${sep}`) || norm.includes('\0')) {
    throw new IbsError('CORRUPT', `Archive entry "${path}" would be written outside the target directory`);
  }
  return norm;
}

/** Writes the entries of a tar stream under `target` (see `extractEntries`). */
export function extractTar(source: AsyncIterable<Uint8Array>, target: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  return extractEntries(parseTar(source), target, options);
}

/**
 * Writes entries (of a tar stream, or of a catalog and payload) under `target`: files with their data,
 * directories, symlinks, hard links; then modes and mtimes (directories last, deepest first), and owners when
 * root. Entries that would land outside `target`, or below a symlink the archive itself created, are refused.
 *
 * The file system calls are synchronous: they block the calling thread, so a program that has other work
 * runs this on a thread of its own (`extractTarInWorker`, `extractArchiveInWorker`).
 */
export async function extractEntries(entries: AsyncIterable<ParsedEntry>, target: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  const owners = options.owners ?? process.getuid?.() === 0;
  const warn = options.onWarning ?? (() => {});
  const dirs: Array<{ path: string; mode: number; mtime: number; mtimeNs: number; uid: number; gid: number }> = [];
  const symlinks = new Set<string>();
  const result: ExtractResult = { entries: 0, bytes: 0 };
  try {
    makeDirsSync(target);
  } catch (error) {
    throw fileSystemError(error, `Cannot create the restore target "${target}"`);
  }
  // A new file already has the process's owner and group unless a set-group-id directory hands down its group:
  // owners equal to ours need no chown while every directory files land in was made here below a target
  // without that bit (a directory that existed before might have it).
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  let ownDirs = (fs.lstatSync(target).mode & 0o2000) === 0;
  const umask = currentUmask();
  // Paths are joined by hand (path.join and dirname normalise again, for every entry, on the thread that sets
  // a restore's pace): `rel` is normalised already and holds no "." or ".." part.
  const root = resolve(target);
  const prefix = root.endsWith('/') ? root : `${root}/`;
  const madeDirs = new Set<string>([root]);
  for await (const { entry, data, unsupported } of entries) {
    throwIfAborted(options.signal);
    if (unsupported) {
      warn(`${entry.path}: ${unsupported} not supported; skipped`);
      continue;
    }
    const normalized = safeRelative(entry.path);
    const rel = normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
    if (symlinks.size > 0) {
      for (let i = rel.indexOf('/'); i > 0; i = rel.indexOf('/', i + 1)) {
        const parent = rel.slice(0, i);
        if (symlinks.has(parent)) throw new IbsError('CORRUPT', `Archive entry "${entry.path}" lies below the symlink "${parent}"`);
      }
    }
    const full = prefix + rel;
    try {
      const cut = full.lastIndexOf('/');
      const parent = cut === 0 ? '/' : full.slice(0, cut);
      if (!madeDirs.has(parent)) {
        if (makeDirsSync(parent) === undefined) ownDirs = false;
        madeDirs.add(parent);
      }
      const mtime = utimeSeconds(entry.mtime, entry.mtimeNs);
      switch (entry.type) {
        case 'dir':
          if (makeDirsSync(full, 0o700) === undefined) ownDirs = false;
          madeDirs.add(full);
          dirs.push({ path: full, mode: entry.mode, mtime: entry.mtime, mtimeNs: entry.mtimeNs, uid: entry.uid, gid: entry.gid });
          break;
        case 'file': {
          // One descriptor for all of it: create, write, owner, mode, times, close. A file whose mode the umask
          // leaves whole and that has no set-id bits is created with its final permissions (no chmod); otherwise
          // the mode is set after the owner, because chown clears set-id bits.
          const chown = owners && !(ownDirs && entry.uid === uid && entry.gid === gid);
          const plainMode = (entry.mode & 0o7777) === (entry.mode & 0o777 & ~umask);
          const fd = createFile(full, plainMode ? entry.mode & 0o777 : 0o600);
          try {
            for await (const piece of data) {
              throwIfAborted(options.signal);
              writeAllSync(fd, piece);
              result.bytes += piece.length;
              options.onBytes?.(piece.length);
            }
            if (chown) fs.fchownSync(fd, entry.uid, entry.gid);
            if (!plainMode) fs.fchmodSync(fd, entry.mode);
            fs.futimesSync(fd, mtime, mtime);
          } finally {
            fs.closeSync(fd);
          }
          break;
        }
        case 'symlink':
          fs.rmSync(full, { force: true });
          fs.symlinkSync(entry.linkname, full);
          symlinks.add(rel);
          if (owners) fs.lchownSync(full, entry.uid, entry.gid);
          fs.lutimesSync(full, mtime, mtime);
          break;
        case 'hardlink': {
          const linkTarget = join(target, safeRelative(entry.linkname));
          if (!fs.lstatSync(linkTarget, { throwIfNoEntry: false })) {
            warn(`${entry.path}: hard link target "${entry.linkname}" is not in the restored set; skipped`);
            continue;
          }
          fs.rmSync(full, { force: true });
          fs.linkSync(linkTarget, full);
          break;
        }
      }
    } catch (error) {
      // A full disk or a refused permission names the entry and the target (the entries before it are written).
      throw fileSystemError(error, `Cannot restore "${rel}" into "${root}"`);
    }
    result.entries++;
  }
  dirs.sort((a, b) => b.path.length - a.path.length);
  for (const dir of dirs) {
    try {
      if (owners) fs.lchownSync(dir.path, dir.uid, dir.gid);
      fs.chmodSync(dir.path, dir.mode);
      const mtime = utimeSeconds(dir.mtime, dir.mtimeNs);
      fs.utimesSync(dir.path, mtime, mtime);
    } catch (error) {
      throw fileSystemError(error, `Cannot set the mode and times of "${dir.path}"`);
    }
  }
  return result;
}

/** What `extractTarInWorker` and `extractArchiveInWorker` give their thread. */
export interface ExtractWorkerData {
  target: string;
  owners?: boolean | undefined;
}

/**
 * What the thread gets: pieces of a tar stream, or an archive's catalog (its text as bytes, the chunk ends of
 * its payload) followed by its payload chunks; then an empty message (the end).
 */
export type ExtractInput = { piece: Uint8Array } | { catalog: Uint8Array; chunkEnds: number[]; ranges: Float64Array; what: string } | { chunk: number; data: Uint8Array } | Record<string, never>;

/** What the thread sends back: acknowledgements (with file bytes written, for progress), warnings, the end (or a `ThreadError`). */
export type ExtractWorkerMessage =
  | { type: 'ack'; bytes: number; written: number }
  | { type: 'warning'; message: string }
  | { type: 'done'; result: ExtractResult; written: number };

/** Bytes sent to the thread and not yet taken up (parsed, or a chunk used for the first time), at most. */
const EXTRACT_IN_FLIGHT = 8 * 1024 * 1024;

/**
 * Runs the restoring thread over `inputs` (each sent once the thread has taken up all but `EXTRACT_IN_FLIGHT`
 * bytes of those before): the buffers move to it, without a copy. Warnings and progress (file bytes written)
 * come back as the thread makes them; an abort of `signal`, a failure of `inputs` or of the thread ends it.
 */
async function extractInWorker(inputs: AsyncIterable<{ input: ExtractInput; bytes: number; transfer: ArrayBuffer[] }>, target: string, options: ExtractOptions): Promise<ExtractResult> {
  const data: ExtractWorkerData = { target, owners: options.owners };
  let inFlight = 0;
  let result: ExtractResult | undefined;
  const thread = new Thread<ExtractWorkerMessage>('./tar-extract-worker.ts', data, `The thread restoring into "${target}"`, options.signal, (m) => {
    if (m.type === 'warning') {
      options.onWarning?.(m.message);
      return;
    }
    if (m.written > 0) options.onBytes?.(m.written);
    if (m.type === 'ack') inFlight -= m.bytes;
    else result = m.result;
  });
  try {
    for await (const { input, bytes, transfer } of inputs) {
      await thread.until(() => inFlight <= EXTRACT_IN_FLIGHT);
      inFlight += bytes;
      thread.post(input, transfer);
    }
    thread.post({});
    await thread.until(() => result !== undefined);
    return result as ExtractResult;
  } finally {
    await thread.close();
  }
}

/**
 * `extractTar` run on a thread of its own: the pieces of `source` move to it without a copy when they are
 * whole buffers, or with `handOver` when the source makes a buffer for each piece and keeps none (the caller
 * must not use them afterwards); others are copied. A restore of a source tree spends most of its time on
 * work per file (create, write, owner, mode, times, close); on the calling thread, that work and the reading
 * and decoding of chunks took turns. Measured on the bench tree (83,731 entries, 1.3 GB, encrypted, to
 * /dev/shm, 2-core VM): about 6 s this way, 14.6-15.6 s with asynchronous calls on the calling thread.
 */
export function extractTarInWorker(source: AsyncIterable<Uint8Array>, target: string, options: ExtractOptions & { handOver?: boolean } = {}): Promise<ExtractResult> {
  async function* inputs(): AsyncGenerator<{ input: ExtractInput; bytes: number; transfer: ArrayBuffer[] }> {
    for await (const piece of source) {
      const sent = movable(piece, options.handOver);
      yield { input: { piece: sent }, bytes: sent.length, transfer: [sent.buffer as ArrayBuffer] };
    }
  }
  return extractInWorker(inputs(), target, options);
}

/**
 * Restores a file archive stored as catalog and payload on a thread of its own, which writes the entries
 * straight from the two (`catalogEntries`; no tar stream is made or parsed). `catalog` is its text as bytes
 * (all of it, or the selected entries); `chunks` must bring the payload's chunks in the order `planRanges`
 * gives for the catalog's `ranges` (its `catalogPayloadRanges`). All three move to the thread without a copy:
 * the caller gives them up. `what` names the archive in errors.
 */
export function extractArchiveInWorker(catalog: Uint8Array, chunkEnds: number[], ranges: Float64Array, chunks: AsyncIterable<PayloadChunk>, target: string, options: ExtractOptions & { what: string }): Promise<ExtractResult> {
  async function* inputs(): AsyncGenerator<{ input: ExtractInput; bytes: number; transfer: ArrayBuffer[] }> {
    const text = movable(catalog, true);
    const spans = isWhole(ranges) ? ranges : ranges.slice();
    yield { input: { catalog: text, chunkEnds, ranges: spans, what: options.what }, bytes: 0, transfer: [text.buffer as ArrayBuffer, spans.buffer as ArrayBuffer] };
    for await (const { index, data } of chunks) {
      const sent = movable(data, true);
      yield { input: { chunk: index, data: sent }, bytes: sent.length, transfer: [sent.buffer as ArrayBuffer] };
    }
  }
  return extractInWorker(inputs(), target, options);
}
