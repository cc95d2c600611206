import { IbsError } from '../core/index.ts';

/** Chunk batches on the wire: frames of digest (32 bytes) | blob length (u32 LE) | blob. */
export const FRAME_HEADER = 36;

export function encodeChunkFrames(frames: ReadonlyArray<{ digest: string; blob: Uint8Array }>): Buffer {
  const parts: Buffer[] = [];
  for (const f of frames) {
    const header = Buffer.alloc(FRAME_HEADER);
    header.write(f.digest, 0, 32, 'hex');
    header.writeUInt32LE(f.blob.length, 32);
    parts.push(header, Buffer.from(f.blob.buffer, f.blob.byteOffset, f.blob.length));
  }
  return Buffer.concat(parts);
}

/**
 * Frames from a body given whole or in the pieces it arrived in. A blob inside one piece is a view of it; one
 * spread over pieces is gathered into a buffer of its own (which a check thread can then take over whole),
 * so the body is never copied into one buffer first.
 */
export function parseChunkFrames(body: Buffer | readonly Buffer[], what: string): Array<{ digest: string; blob: Buffer }> {
  const pieces = Buffer.isBuffer(body) ? [body] : body;
  const total = pieces.reduce((n, p) => n + p.length, 0);
  let piece = 0;
  let at = 0;
  let pos = 0;
  /** The next `length` bytes: a view when they lie in one piece, else a copy. */
  const take = (length: number): Buffer => {
    while (piece < pieces.length && at === (pieces[piece] as Buffer).length) {
      piece++;
      at = 0;
    }
    const current = pieces[piece] as Buffer | undefined;
    pos += length;
    if (current && at + length <= current.length) {
      at += length;
      return current.subarray(at - length, at);
    }
    const out = Buffer.allocUnsafeSlow(length);
    for (let filled = 0; filled < length; ) {
      const from = pieces[piece] as Buffer;
      const n = Math.min(length - filled, from.length - at);
      from.copy(out, filled, at, at + n);
      filled += n;
      at += n;
      if (at === from.length) {
        piece++;
        at = 0;
      }
    }
    return out;
  };
  const frames: Array<{ digest: string; blob: Buffer }> = [];
  while (pos < total) {
    if (pos + FRAME_HEADER > total) throw new IbsError('INVALID_ARGUMENT', `${what}: truncated frame header at byte ${pos}`);
    const start = pos;
    const header = take(FRAME_HEADER);
    const length = header.readUInt32LE(32);
    if (pos + length > total) throw new IbsError('INVALID_ARGUMENT', `${what}: frame at byte ${start} claims ${length} bytes beyond the body`);
    frames.push({ digest: header.toString('hex', 0, 32), blob: take(length) });
  }
  return frames;
}
