/**
 * The local backend's ThreadStore: a worker thread that holds a whole object (a chunk it has just checked)
 * stores it here synchronously, with the protocol of LocalBackend.write: a temporary file in the object's
 * directory, fsynced, hard-linked to its name (which fails atomically on an existing one), removed, and the
 * directory fsynced. It runs on the thread that has the bytes, in one go, instead of a dozen calls through
 * the main thread and the thread pool. Small on purpose: each worker thread loads it.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readSync, rmSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDirSync, makeDirsSync } from '../../lib/atomic-file.ts';
import { release } from '../../lib/release.ts';
import type { ThreadStoreModule } from '../backend.ts';
import { assertRoot, objectPath, parseThreadLocation, TEMP_MARKER, writeError, type RootIdentity } from './local-files.ts';

/** Sets the modification time of an existing object to now; false when there is none. */
function touchSync(path: string): boolean {
  try {
    const now = new Date();
    utimesSync(path, now, now);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Creates `temp` in `dir`, creating `dir` (and its parents, durably) only when it is missing and the root is still itself. */
function createSync(temp: string, dir: string, root: string, identity: RootIdentity | undefined, key: string): number {
  try {
    return openSync(temp, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  assertRoot(root, identity, 'write', key);
  const created = makeDirsSync(dir);
  if (created !== undefined) fsyncDirSync(dirname(created));
  return openSync(temp, 'wx', 0o644);
}

/** Whether the file at `path` is byte for byte `data`: read with one byte to spare, so a longer file differs. A file that cannot be read back is not the same. */
function sameSync(path: string, data: Uint8Array): boolean {
  // Freed at once: a thread's garbage collector would let many of these pile up first.
  const back = Buffer.allocUnsafeSlow(data.length + 1);
  try {
    const fd = openSync(path, 'r');
    try {
      let filled = 0;
      for (let n = 1; n > 0 && filled < back.length; filled += n) n = readSync(fd, back, filled, back.length - filled, filled);
      return filled === data.length && back.subarray(0, filled).equals(data);
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  } finally {
    release(back);
  }
}

export const putSync: ThreadStoreModule['putSync'] = (location, key, data, options) => {
  const { root, identity } = parseThreadLocation(location);
  const path = objectPath(root, key);
  const dir = dirname(path);
  const temp = `${path}${TEMP_MARKER}${randomBytes(6).toString('hex')}`;
  try {
    if (touchSync(path)) return { existed: true };
    const fd = createSync(temp, dir, root, identity, key);
    try {
      for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(temp, path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      unlinkSync(temp);
      touchSync(path);
      return { existed: true };
    }
    unlinkSync(temp);
    fsyncDirSync(dir);
    return options.readBack ? { existed: false, same: sameSync(path, data) } : { existed: false };
  } catch (error) {
    try {
      rmSync(temp, { force: true });
    } catch {
      // Left for cleanTemporary; the error that matters is the one below.
    }
    throw writeError(error, root, identity, key);
  }
};
