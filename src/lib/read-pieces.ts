import { open } from 'node:fs/promises';
import { throwIfAborted } from './abort.ts';

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
    let filled = 0;
    while (filled < size) {
      const { bytesRead } = await file.read(buffer, filled, size - filled, null);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
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
