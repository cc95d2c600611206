/** Whether `memory` is one of Node's pool slabs, which many small buffers share (they are exactly poolSize). */
function pooled(memory: ArrayBufferLike): boolean {
  return memory.byteLength === Buffer.poolSize;
}

/**
 * Frees the memory behind a buffer now instead of when the garbage collector gets to it, for buffers of a few
 * MiB that pass through by the thousand (chunks, their plaintext, encoded blobs). V8 counts the memory of
 * dropped buffers and runs a full collection each time enough has piled up (every 10 to 20 MiB measured here,
 * in a small heap); freed here, they neither wait nor count (a 1.4 GiB sync: 11 full collections per 800 MiB
 * without, none with). Small buffers count too: a backup of a source tree makes one per file. Only for a
 * buffer whose memory the caller owns alone: every view of it reads as empty afterwards. Buffers carved from
 * Node's shared pool (small ones from Buffer.allocUnsafe, Buffer.from, Buffer.concat) are left alone.
 */
export function release(buffer: Uint8Array): void {
  const memory = buffer.buffer;
  if (memory instanceof ArrayBuffer && !memory.detached && !pooled(memory)) memory.transfer(0);
}

/** Whether `data` is all of its memory (a view of nothing larger, so nothing else can hold bytes there). */
export function isWhole(data: ArrayBufferView): boolean {
  return data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
}

/**
 * `data` as something to post to another thread without a copy: post the result with `[result.buffer]` as
 * transfer list, and its memory moves (every view of it here then reads as empty). That is `data` itself when
 * it is the whole of its memory, or when `owned` says that nothing else uses the rest of that memory (a stream
 * that hands over buffers made for it, such as decoded chunks, which are views of a slightly larger buffer);
 * else a copy of it (a slice of a request body, say). Pool slabs are always copied.
 */
export function movable(data: Uint8Array, owned = false): Uint8Array<ArrayBuffer> {
  const memory = data.buffer;
  return memory instanceof ArrayBuffer && (isWhole(data) || (owned && !pooled(memory))) ? (data as Uint8Array<ArrayBuffer>) : new Uint8Array(data);
}
