/** What the local backend and its thread store share: where an object lives, temporary names, error kinds. */
import { join } from 'node:path';
import { assertKey, StorageError } from '../backend.ts';

/** Suffix of in-progress writes; never listed, removed by `cleanTemporary`. */
export const TEMP_MARKER = '.ibs-tmp-';

/** The file that holds `key` under `root`. */
export function objectPath(root: string, key: string): string {
  return join(root, ...assertKey(key).split('/'));
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
      return new StorageError('denied', `${what}: permission denied (${code})`, { cause: error });
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
