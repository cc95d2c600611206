/** What the local backend and its thread store share: where an object lives, temporary names, error kinds. */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { systemErrorText } from '../../core/errors.ts';
import { assertKey, StorageError } from '../backend.ts';

/** Suffix of in-progress writes; never listed, removed by `cleanTemporary`. */
export const TEMP_MARKER = '.ibs-tmp-';

/** The file that holds `key` under `root`. */
export function objectPath(root: string, key: string): string {
  return join(root, ...assertKey(key).split('/'));
}

/**
 * The root directory as it was when the backend was made (device and inode), for `assertRoot`; undefined
 * when it did not exist then.
 */
export interface RootIdentity {
  dev: number;
  ino: number;
}

export function rootIdentity(root: string): RootIdentity | undefined {
  const st = statSync(root, { throwIfNoEntry: false });
  return st ? { dev: st.dev, ino: st.ino } : undefined;
}

/**
 * Before directories are made for an object: the root must still be the directory it was. A removable disk
 * unmounted under a running backup (or a datastore removed meanwhile) leaves its mount point, an empty
 * directory of another file system, where the objects would otherwise go on being written, filling that
 * file system and never reaching the disk.
 */
export function assertRoot(root: string, identity: RootIdentity | undefined, op: string, key: string): void {
  if (!identity) return;
  const st = statSync(root, { throwIfNoEntry: false });
  if (st?.dev !== identity.dev || st.ino !== identity.ino) {
    throw new StorageError('not-found', `${op} "${key}": the storage root ${root} is ${st ? 'no longer the directory it was (its file system unmounted, or it was removed and made again)' : 'gone (its file system unmounted, or it was removed)'}: nothing is written there`);
  }
}

/** A failed write's error as callers handle it: a missing file or folder under a root that is no longer itself says so (see assertRoot). */
export function writeError(error: unknown, root: string, identity: RootIdentity | undefined, key: string): unknown {
  if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
    try {
      assertRoot(root, identity, 'write', key);
    } catch (gone) {
      return gone;
    }
  }
  return mapError(error, 'write', key);
}

/** What a local backend gives its thread store as `location`: the root and its identity. */
export function threadLocation(root: string, identity: RootIdentity | undefined): string {
  return JSON.stringify({ root, identity });
}

export function parseThreadLocation(location: string): { root: string; identity: RootIdentity | undefined } {
  return JSON.parse(location) as { root: string; identity: RootIdentity | undefined };
}

/** A system error as the StorageError kind callers handle; others unchanged. */

export function mapError(error: unknown, op: string, key: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const what = `${op} "${key}"`;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new StorageError('not-found', `${what}: no such object`, { cause: error });
    case 'EEXIST':
      return new StorageError('exists', `${what}: object exists`, { cause: error });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      // "permission denied", "operation not permitted", "read-only file system": they need different fixes.
      return new StorageError('denied', `${what}: ${systemErrorText(error, 'permission denied')} (${code})`, { cause: error });
    case 'ENOSPC':
    case 'EDQUOT':
      return new StorageError('no-space', `${what}: no space left on device (${code})`, { cause: error });
    case 'EAGAIN':
    case 'EBUSY':
    case 'EMFILE':
    case 'ENFILE':
    case 'EINTR':
      return new StorageError('transient', `${what}: temporarily unavailable (${code})`, { cause: error });
    default:
      return error;
  }
}
