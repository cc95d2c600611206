import { closeSync, existsSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Flushes a directory entry table so that a rename or create inside it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncDir for a thread that may block (a worker thread). */
export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `data` to `path` so that readers see the old content or the new one, never a mix: a temporary file
 * in the same directory, fsync, rename over the target, fsync of the directory.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(6).toString('hex')}`);
  const handle = await open(temp, 'wx', options.mode ?? 0o644);
  try {
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    await rename(temp, path);
  } catch (error) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(dirname(path));
}

/**
 * The levels of `dir` that do not exist, outermost first. Node's recursive mkdir answers ENOENT for any
 * failure on a level it had to make (a read-only file system, a refused permission, a full disk): making
 * these one at a time instead says why.
 */
function missingLevels(dir: string): string[] {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  return missing;
}

/** `mkdir -p`: the first directory it made, or undefined when `dir` existed; a failure names its real cause. */
export async function makeDirs(dir: string): Promise<string | undefined> {
  try {
    return await mkdir(dir, { recursive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  // Only on the way to an error: a few checks that block briefly.
  const levels = missingLevels(dir);
  for (const d of levels) {
    await mkdir(d).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
  return levels[0];
}

/** makeDirs for a thread that may block (a worker thread); `mode` for the directories it makes. */
export function makeDirsSync(dir: string, mode?: number): string | undefined {
  try {
    return mkdirSync(dir, { recursive: true, ...(mode !== undefined ? { mode } : {}) });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const levels = missingLevels(dir);
  for (const d of levels) {
    try {
      mkdirSync(d, mode);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
  return levels[0];
}
