import { getSystemErrorMessage } from 'node:util';

/**
 * The one table of error codes: each code a caller may handle, with its HTTP status and CLI exit code.
 * Programmer mistakes use TypeError / RangeError instead.
 */
export const ERROR_CODES = {
  INVALID_ARGUMENT: { http: 400, exit: 2, help: 'a name, value or option is malformed' },
  NOT_FOUND: { http: 404, exit: 3, help: 'the datastore, snapshot, key or file does not exist' },
  EXISTS: { http: 409, exit: 4, help: 'something with that name already exists' },
  PERMISSION_DENIED: { http: 403, exit: 5, help: 'the storage or the caller lacks a permission' },
  CORRUPT: { http: 500, exit: 6, help: 'stored data failed a checksum or format check' },
  WRONG_KEY: { http: 400, exit: 7, help: 'the key or passphrase does not match the data' },
  QUARANTINED: { http: 423, exit: 8, help: 'the datastore is quarantined and refuses writes and GC' },
  BUSY: { http: 409, exit: 9, help: 'a lock is held or a concurrent edit happened' },
  NO_SPACE: { http: 507, exit: 10, help: 'the storage is full' },
  UNAVAILABLE: { http: 503, exit: 11, help: 'a transient failure; retrying may succeed' },
  UNSUPPORTED: { http: 501, exit: 12, help: 'the storage or format does not support this' },
  VERIFY_FAILED: { http: 500, exit: 13, help: 'verification found damaged or missing chunks' },
  ABORTED: { http: 499, exit: 14, help: 'the operation was aborted' },
  CERT_MISMATCH: { http: 502, exit: 15, help: "a remote's certificate does not match its registered fingerprint" },
  UNAUTHENTICATED: { http: 401, exit: 16, help: 'the credentials were refused' },
  KEY_LOCKED: { http: 423, exit: 17, help: "the master key that protects the server's keys is locked (masterkey unlock)" },
  INTERNAL: { http: 500, exit: 1, help: 'an unexpected failure (a bug): please report it' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** A condition callers handle: a stable `code`, a message that quotes values and says what was expected. */
export class IbsError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'IbsError';
    this.code = code;
    this.details = options.details;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }
}

export function isIbsError(error: unknown, code?: ErrorCode): error is IbsError {
  return error instanceof IbsError && (code === undefined || error.code === code);
}

/**
 * What a failed file system call means to the one who ran the command, by its error number: a full disk or a
 * missing permission is theirs to fix (and has its exit code), not a bug to report; a reader that closed the
 * pipe ended the work. Others stay INTERNAL.
 */
const ERRNO_CODES: Readonly<Record<string, ErrorCode>> = {
  ENOSPC: 'NO_SPACE',
  EDQUOT: 'NO_SPACE',
  EFBIG: 'NO_SPACE',
  EACCES: 'PERMISSION_DENIED',
  EPERM: 'PERMISSION_DENIED',
  EROFS: 'PERMISSION_DENIED',
  ENOENT: 'NOT_FOUND',
  ENOTDIR: 'NOT_FOUND',
  EEXIST: 'EXISTS',
  EMFILE: 'UNAVAILABLE',
  ENFILE: 'UNAVAILABLE',
  EPIPE: 'ABORTED',
};

/**
 * A failed file system call (an error with an errno code) as an IbsError saying what could not be done:
 * `Cannot write "x": no space left on device (ENOSPC)`; an error number not in the table above keeps the
 * code INTERNAL, with the same words. Other errors come back as they are.
 */
export function fileSystemError(error: unknown, what: string): unknown {
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error instanceof IbsError || typeof errno !== 'string' || !/^E[A-Z0-9]+$/.test(errno)) return error;
  const code = ERRNO_CODES[errno] ?? 'INTERNAL';
  return new IbsError(code, `${what}: ${systemErrorText(error, (error as Error).message)} (${errno})`, { cause: error });
}

/** The system's words for a failed call's error number (Node's `errno`: "no space left on device"), else `fallback`. */
export function systemErrorText(error: unknown, fallback: string): string {
  const errno = (error as NodeJS.ErrnoException | undefined)?.errno;
  return typeof errno === 'number' ? getSystemErrorMessage(errno) : fallback;
}

/**
 * The error as an IbsError: aborts become ABORTED, a full disk, a refused permission or too many open files
 * their code (above), anything else unexpected INTERNAL.
 */
export function toIbsError(error: unknown): IbsError {
  if (error instanceof IbsError) return error;
  if (error instanceof Error && (error.name === 'AbortError' || (error as { code?: string }).code === 'ABORT_ERR')) {
    return new IbsError('ABORTED', 'The operation was aborted', { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  // Only what lies outside the program: a missing or existing file nobody named may well be a bug.
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const code = typeof errno === 'string' ? ERRNO_CODES[errno] : undefined;
  return new IbsError(code === 'NO_SPACE' || code === 'PERMISSION_DENIED' || code === 'UNAVAILABLE' ? code : 'INTERNAL', message, { cause: error });
}
