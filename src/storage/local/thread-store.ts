/**
 * The local backend's ThreadStore: a worker thread that holds a whole object (a chunk it has just checked)
 * stores it here synchronously, with the protocol of LocalBackend.write: a temporary file in the object's
 * directory, fsynced, hard-linked to its name (which fails atomically on an existing one), removed, and the
 * directory fsynced. It runs on the thread that has the bytes, in one go, instead of a dozen calls through
 * the main thread and the thread pool. The file is written and read back with direct I/O where the file
 * system allows it (lib/direct-io.ts). Small on purpose: each worker thread loads it.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readSync, rmSync, unlinkSync, utimesSync } from 'node:fs';
import { dirname } from 'node:path';
import { fsyncDirSync, makeDirsSync } from '../../lib/atomic-file.ts';
import { directRefused, openDirectSync, sameDirectSync, writeDirectSync } from '../../lib/direct-io.ts';
import { writeAllSync } from '../../lib/read-pieces.ts';
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

/** Roots whose file system refused direct I/O: written the usual way from then on. */
const buffered = new Set<string>();

/** Opens `temp` exclusively, for direct writing where the root's file system allows it. */
function openTemp(temp: string, root: string): { fd: number; direct: boolean } {
  if (!buffered.has(root)) {
    try {
      return { fd: openDirectSync(temp, 0o644), direct: true };
    } catch (error) {
      if (!directRefused(error)) throw error;
      buffered.add(root);
    }
  }
  return { fd: openSync(temp, 'wx', 0o644), direct: false };
}

/** Creates `temp` in `dir`, creating `dir` (and its parents, durably) only when it is missing and the root is still itself. */
function createSync(temp: string, dir: string, root: string, identity: RootIdentity | undefined, key: string): { fd: number; direct: boolean } {
  try {
    return openTemp(temp, root);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  assertRoot(root, identity, 'write', key);
  const created = makeDirsSync(dir);
  if (created !== undefined) fsyncDirSync(dirname(created));
  return openTemp(temp, root);
}

/** Writes and fsyncs the new file, directly where it can; false when the file system refused the direct write (nothing to keep then). */
function fillSync(fd: number, direct: boolean, data: Uint8Array): boolean {
  if (direct) {
    try {
      writeDirectSync(fd, data);
    } catch (error) {
      if (directRefused(error)) return false;
      throw error;
    }
  } else writeAllSync(fd, data);
  fsyncSync(fd);
  return true;
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

/** sameSync from the device, as it was written; a read the file system refuses goes through the page cache. */
function sameDirectOrBufferedSync(path: string, data: Uint8Array): boolean {
  try {
    return sameDirectSync(path, data);
  } catch (error) {
    return directRefused(error) ? sameSync(path, data) : false;
  }
}

export const putSync: ThreadStoreModule['putSync'] = (location, key, data, options) => {
  const { root, identity } = parseThreadLocation(location);
  const path = objectPath(root, key);
  const dir = dirname(path);
  const temp = `${path}${TEMP_MARKER}${randomBytes(6).toString('hex')}`;
  try {
    if (touchSync(path)) return { existed: true };
    let { fd, direct } = createSync(temp, dir, root, identity, key);
    let filled: boolean;
    try {
      filled = fillSync(fd, direct, data);
    } finally {
      closeSync(fd);
    }
    if (!filled) {
      // Refused once the file was open (alignment): this root is written the usual way from now on.
      buffered.add(root);
      unlinkSync(temp);
      ({ fd, direct } = createSync(temp, dir, root, identity, key));
      try {
        fillSync(fd, direct, data);
      } finally {
        closeSync(fd);
      }
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
    return options.readBack ? { existed: false, same: direct ? sameDirectOrBufferedSync(path, data) : sameSync(path, data) } : { existed: false };
  } catch (error) {
    try {
      rmSync(temp, { force: true });
    } catch {
      // Left for cleanTemporary; the error that matters is the one below.
    }
    throw writeError(error, root, identity, key);
  }
};
