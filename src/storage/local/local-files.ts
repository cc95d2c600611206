/** What the local backend and its thread store share: where an object lives, temporary names, error kinds. */
import { join } from 'node:path';
import { getSystemErrorMessage } from 'node:util';
import { assertKey, StorageError } from '../backend.ts';

/** Suffix of in-progress writes; never listed, removed by `cleanTemporary`. */
export const TEMP_MARKER = '.ibs-tmp-';

/** The file that holds `key` under `root`. */
export function objectPath(root: string, key: string): string {
  return join(root, ...assertKey(key).split('/'));
}

/** A system error as the StorageError kind callers handle; others unchanged. */
/** The system's words for a failed call's error number (Node's `errno`), else `fallback`. */
function systemMessage(error: unknown, fallback: string): string {
  const errno = (error as NodeJS.ErrnoException).errno;
  return typeof errno === 'number' ? getSystemErrorMessage(errno) : fallback;
}

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
      return new StorageError('denied', `${what}: ${systemMessage(error, 'permission denied')} (${code})`, { cause: error });
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
