import { writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { throwIfAborted } from './abort.ts';

/**
 * Reads into `buffer` from `position` (or the file's current position when null) until it is full or the file
 * ends; returns how many bytes it holds. Reads as large as the buffer: one call of the thread pool per read.
 */
export async function readInto(file: FileHandle, buffer: Uint8Array, position: number | null): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await file.read(buffer, filled, buffer.length - filled, position === null ? null : position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

/** Writes all of `data` at `position` (default: the file's current position), in as few calls as the system allows. */
export async function writeAll(file: FileHandle, data: Uint8Array, position: number | null = null): Promise<void> {
  for (let done = 0; done < data.length; ) done += (await file.write(data, done, data.length - done, position === null ? null : position + done)).bytesWritten;
}

/** writeAll for a thread that may block (a worker thread), on a file descriptor. */
export function writeAllSync(fd: number, data: Uint8Array, position: number | null = null): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, position === null ? null : position + done);
}

const ZEROS = new Uint8Array(64 * 1024);

/** Whether every byte of `data` is 0 (compared 64 KiB at a time; data that is not stops at its first non-zero byte). */
export function isAllZero(data: Uint8Array): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const n = Math.min(ZEROS.length, data.length - at);
    if (Buffer.compare(data.subarray(at, at + n), ZEROS.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/**
 * Reads a file (or block device) from start to end in pieces of `size` bytes, each read straight into a
 * buffer of its own that is exactly one piece (the last one may be shorter: a view of such a buffer), one
 * piece read ahead while the consumer works on the current one. The consumer owns every piece: it may move
 * or free it. Made for fixed-size chunking, where a piece is then a chunk as it stands (no gathering copy).
 */
export async function* readPieces(path: string, size: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`readPieces: size must be a positive integer, got ${size}`);
  const file = await open(path, 'r');
  /** The next piece: fills a new buffer unless the end comes first (then a view of what was read). */
  const fill = async (): Promise<Buffer> => {
    const buffer = Buffer.allocUnsafeSlow(size);
    const filled = await readInto(file, buffer, null);
    return filled === size ? buffer : buffer.subarray(0, filled);
  };
  let next: Promise<Buffer> | undefined;
  try {
    next = fill();
    for (;;) {
      throwIfAborted(signal);
      const piece = await next;
      next = undefined;
      if (piece.length === 0) return;
      if (piece.length < size) {
        yield piece;
        return;
      }
      next = fill();
      next.catch(() => {}); // observed when its turn comes, or awaited below
      yield piece;
    }
  } finally {
    await next?.catch(() => {});
    await file.close();
  }
}
