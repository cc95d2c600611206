import { chmod, lchown, link, lstat, lutimes, mkdir, open, rm, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import { IbsError } from '../core/index.ts';
import { throwIfAborted, WorkQueue } from '../lib/index.ts';
import fs from 'node:fs';
import { parseTar } from './tar-parse.ts';

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

const SMALL_FILE = 1024 * 1024;

function fsCall<T>(fn: (cb: (error: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((error, value) => (error ? reject(error) : resolve(value as T))));
}

/**
 * Writes a small file through one descriptor: create (exclusive, so an earlier symlink at that path is never
 * followed), write, owner, times, close; mode bits beyond the permissions (set-id, sticky) are applied last
 * because chown clears them. Callback-style fs: per-file promise and FileHandle overhead shows with many
 * small files.
 */
async function writeSmallFile(path: string, body: Buffer, meta: { mode: number; uid: number; gid: number; mtime: number; chown: boolean; createMode?: number }): Promise<void> {
  // With createMode the file is created with its final permissions (the umask leaves them whole and there
  // are no set-id bits), so no chmod is needed afterwards.
  const createMode = meta.createMode ?? 0o600;
  let fd: number;
  try {
    fd = await fsCall<number>((cb) => fs.open(path, 'wx', createMode, cb));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    await rm(path, { force: true });
    fd = await fsCall<number>((cb) => fs.open(path, 'wx', createMode, cb));
  }
  try {
    let written = 0;
    while (written < body.length) written += await fsCall<number>((cb) => fs.write(fd, body, written, body.length - written, null, cb));
    if (meta.chown) await fsCall((cb) => fs.fchown(fd, meta.uid, meta.gid, cb));
    if (meta.createMode === undefined) await fsCall((cb) => fs.fchmod(fd, meta.mode, cb));
    await fsCall((cb) => fs.futimes(fd, meta.mtime, meta.mtime, cb));
  } finally {
    await fsCall((cb) => fs.close(fd, cb));
  }
}

/** Creates a new file (never following a symlink an earlier entry put at that path) and fills it. */
async function writeNew(path: string, fill: (handle: FileHandle) => Promise<void>): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    await rm(path, { force: true });
    handle = await open(path, 'wx', 0o600);
  }
  try {
    await fill(handle);
  } finally {
    await handle.close();
  }
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

/**
 * Writes the entries of a tar stream under `target`: files with their data, directories, symlinks, hard links;
 * then modes and mtimes (directories last, deepest first), and owners when root. Entries that would land
 * outside `target`, or below a symlink the archive itself created, are refused.
 */
export async function extractTar(source: AsyncIterable<Uint8Array>, target: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  const owners = options.owners ?? process.getuid?.() === 0;
  const warn = options.onWarning ?? (() => {});
  const dirs: Array<{ path: string; mode: number; mtime: number; mtimeNs: number; uid: number; gid: number }> = [];
  const symlinks = new Set<string>();
  const result: ExtractResult = { entries: 0, bytes: 0 };
  await mkdir(target, { recursive: true });
  // A new file already has the process's owner and group unless a set-group-id directory hands down its group:
  // owners equal to ours need no chown while every directory files land in was made here below a target
  // without that bit (a directory that existed before might have it).
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  let ownDirs = ((await lstat(target)).mode & 0o2000) === 0;
  const umask = currentUmask();
  const writes = new WorkQueue(16);
  const madeDirs = new Set<string>([target]);
  const finish = async (path: string, meta: { mode: number; uid: number; gid: number; mtime: number }): Promise<void> => {
    if (owners) await lchown(path, meta.uid, meta.gid);
    await chmod(path, meta.mode);
    await utimes(path, meta.mtime, meta.mtime);
  };
  for await (const { entry, data, unsupported } of parseTar(source)) {
    throwIfAborted(options.signal);
    if (unsupported) {
      warn(`${entry.path}: ${unsupported} not supported; skipped`);
      continue;
    }
    const rel = safeRelative(entry.path);
    for (let parent = dirname(rel); parent !== '.'; parent = dirname(parent)) {
      if (symlinks.has(parent)) throw new IbsError('CORRUPT', `Archive entry "${entry.path}" lies below the symlink "${parent}"`);
    }
    const full = join(target, rel);
    const parent = dirname(full);
    if (!madeDirs.has(parent)) {
      if ((await mkdir(parent, { recursive: true })) === undefined) ownDirs = false;
      madeDirs.add(parent);
    }
    const mtime = entry.mtime + entry.mtimeNs / 1e9;
    switch (entry.type) {
      case 'dir':
        if ((await mkdir(full, { recursive: true, mode: 0o700 })) === undefined) ownDirs = false;
        madeDirs.add(full);
        dirs.push({ path: full, mode: entry.mode, mtime: entry.mtime, mtimeNs: entry.mtimeNs, uid: entry.uid, gid: entry.gid });
        break;
      case 'file': {
        if (entry.size <= SMALL_FILE) {
          // Gather small files and write them many at a time: one file's open/write/chmod/utimes need not wait
          // for the previous file's.
          const pieces: Buffer[] = [];
          for await (const piece of data) pieces.push(piece);
          const body = pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
          const chown = owners && !(ownDirs && entry.uid === uid && entry.gid === gid);
          const plainMode = (entry.mode & 0o7777) === (entry.mode & 0o777 & ~umask);
          const meta = { mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime, chown, ...(plainMode ? { createMode: entry.mode & 0o777 } : {}) };
          await writes.submit(async () => {
            await writeSmallFile(full, body, meta);
            result.bytes += body.length;
            options.onBytes?.(body.length);
          });
          break;
        }
        await writeNew(full, async (handle) => {
          for await (const piece of data) {
            throwIfAborted(options.signal);
            await handle.writeFile(piece);
            result.bytes += piece.length;
            options.onBytes?.(piece.length);
          }
        });
        await finish(full, { mode: entry.mode, uid: entry.uid, gid: entry.gid, mtime });
        break;
      }
      case 'symlink':
        await rm(full, { force: true });
        await symlink(entry.linkname, full);
        symlinks.add(rel);
        if (owners) await lchown(full, entry.uid, entry.gid);
        await lutimes(full, mtime, mtime);
        break;
      case 'hardlink': {
        await writes.drain(); // the target may still be in flight
        const linkTarget = join(target, safeRelative(entry.linkname));
        const st = await lstat(linkTarget).catch(() => undefined);
        if (!st) {
          warn(`${entry.path}: hard link target "${entry.linkname}" is not in the restored set; skipped`);
          continue;
        }
        await rm(full, { force: true });
        await link(linkTarget, full);
        break;
      }
    }
    result.entries++;
  }
  await writes.drain();
  dirs.sort((a, b) => b.path.length - a.path.length);
  for (const dir of dirs) {
    if (owners) await lchown(dir.path, dir.uid, dir.gid);
    await chmod(dir.path, dir.mode);
    const mtime = dir.mtime + dir.mtimeNs / 1e9;
    await utimes(dir.path, mtime, mtime);
  }
  return result;
}
