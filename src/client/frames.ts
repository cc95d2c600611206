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

export function parseChunkFrames(body: Buffer, what: string): Array<{ digest: string; blob: Buffer }> {
  const frames: Array<{ digest: string; blob: Buffer }> = [];
  for (let pos = 0; pos < body.length; ) {
    if (pos + FRAME_HEADER > body.length) throw new IbsError('INVALID_ARGUMENT', `${what}: truncated frame header at byte ${pos}`);
    const digest = body.toString('hex', pos, pos + 32);
    const length = body.readUInt32LE(pos + 32);
    if (pos + FRAME_HEADER + length > body.length) throw new IbsError('INVALID_ARGUMENT', `${what}: frame at byte ${pos} claims ${length} bytes beyond the body`);
    frames.push({ digest, blob: body.subarray(pos + FRAME_HEADER, pos + FRAME_HEADER + length) });
    pos += FRAME_HEADER + length;
  }
  return frames;
}
