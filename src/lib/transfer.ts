/**
 * `data` as something to post to another thread without a copy: `data` itself when it is the whole of its
 * memory (post it with `[result.buffer]` as transfer list: the memory then moves, and `data` reads as empty
 * here), else a copy of it (a slice of a larger buffer, of Node's pool say, whose memory must stay).
 */
export function movable(data: Uint8Array): Uint8Array<ArrayBuffer> {
  const whole = data.buffer instanceof ArrayBuffer && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  return whole ? (data as Uint8Array<ArrayBuffer>) : new Uint8Array(data);
}
