/**
 * `data` as something to post to another thread without a copy: post the result with `[result.buffer]` as
 * transfer list, and its memory moves (every view of it here then reads as empty). That is `data` itself when
 * it is the whole of its memory, or when `owned` says that nothing else uses the rest of that memory (a stream
 * that hands over buffers made for it, such as decoded chunks, which are views of a slightly larger buffer);
 * else a copy of it (a slice of a request body, say). Node's pool slabs, which many small buffers share, are
 * always copied.
 */
export function movable(data: Uint8Array, owned = false): Uint8Array<ArrayBuffer> {
  const memory = data.buffer;
  const whole = data.byteOffset === 0 && data.byteLength === memory.byteLength;
  return memory instanceof ArrayBuffer && (whole || (owned && memory.byteLength !== Buffer.poolSize)) ? (data as Uint8Array<ArrayBuffer>) : new Uint8Array(data);
}
