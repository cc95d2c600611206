/**
 * Content-defined chunking (FastCDC-style gear hash with normalized chunking). Cut points depend only on the
 * bytes, so an insertion early in a stream shifts at most a chunk or two and the rest dedups. Sizes: at least
 * `min`, at most `max`, about `avg` on average. Defaults: 512 KiB / 2 MiB / 8 MiB.
 */

export interface ChunkerOptions {
  min: number;
  avg: number;
  max: number;
}

export const DEFAULT_CHUNKER: ChunkerOptions = { min: 512 * 1024, avg: 2 * 1024 * 1024, max: 8 * 1024 * 1024 };

/** 256 pseudo-random 32-bit values from a fixed seed (xorshift32), so cut points never change between versions. */
const GEAR = (() => {
  const table = new Int32Array(256);
  let x = 0x2545f491;
  for (let i = 0; i < 256; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    table[i] = x | 0;
  }
  return table;
})();

/** A mask with `bits` one-bits taken from the top of the 32-bit hash (the bits that see the most bytes). */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1) | 0;
}

/**
 * Cuts a stream into chunks. Every chunk comes out as a buffer of its own, exactly its size, which nothing else
 * refers to (its holder may free it); the chunker keeps no reference to the data pushed once `push` is done
 * with it: the bytes after the last cut are copied aside, into one buffer reused for every chunk. So whoever
 * pushed a piece may free it then, and no chunk keeps a larger piece alive.
 */
export class Chunker {
  readonly #min: number;
  readonly #avg: number;
  readonly #max: number;
  readonly #maskS: number;
  readonly #maskL: number;
  /** The bytes since the last cut, copied aside (grown as needed, up to `max`). */
  #aside = Buffer.alloc(0);
  #length = 0;
  #hash = 0;

  constructor(options: ChunkerOptions = DEFAULT_CHUNKER) {
    const { min, avg, max } = options;
    if (!(min >= 64 && min < avg && avg < max) || (avg & (avg - 1)) !== 0) {
      throw new RangeError(`Chunker sizes must satisfy 64 <= min < avg < max with avg a power of two, got ${min}/${avg}/${max}`);
    }
    this.#min = min;
    this.#avg = avg;
    this.#max = max;
    const bits = Math.log2(avg);
    this.#maskS = topMask(bits + 2);
    this.#maskL = topMask(bits - 2);
  }

  /** Bytes fed since the last cut; 0 means the chunker stands at a chunk boundary. */
  get pendingLength(): number {
    return this.#length;
  }

  /** Feeds bytes; yields every chunk completed by them. */
  *push(data: Uint8Array): Generator<Buffer> {
    let pos = 0;
    while (pos < data.length) {
      const before = this.#length;
      const cut = this.#scan(data, pos);
      if (cut < 0) {
        this.#setAside(data.subarray(pos), before);
        return;
      }
      yield this.#take(data.subarray(pos, cut), before);
      pos = cut;
    }
  }

  /** The last, possibly short, chunk; undefined when nothing is pending. */
  finish(): Buffer | undefined {
    return this.#length > 0 ? this.#take(new Uint8Array(0), this.#length) : undefined;
  }

  /** Copies `tail` after the `kept` bytes already set aside (the scan has counted it in #length already). */
  #setAside(tail: Uint8Array, kept: number): void {
    const need = kept + tail.length;
    if (need > this.#aside.length) {
      const grown = Buffer.allocUnsafeSlow(Math.min(this.#max, Math.max(need, 2 * this.#aside.length, 64 * 1024)));
      this.#aside.copy(grown, 0, 0, kept);
      this.#aside = grown;
    }
    this.#aside.set(tail, kept);
  }

  /** A chunk of the `kept` bytes set aside followed by `rest`, in a buffer of its own. */
  #take(rest: Uint8Array, kept: number): Buffer {
    const chunk = Buffer.allocUnsafeSlow(kept + rest.length);
    this.#aside.copy(chunk, 0, 0, kept);
    chunk.set(rest, kept);
    this.#length = 0;
    this.#hash = 0;
    return chunk;
  }

  /** Index in `data` just past the next cut point, or -1 when the chunk continues past `data`. */
  #scan(data: Uint8Array, pos: number): number {
    let i = pos;
    let length = this.#length;
    const end = data.length;
    if (length < this.#min) {
      // No cut can fall before `min`: skip hashing those bytes (the hash window is 32 bytes).
      const skip = Math.min(this.#min - length, end - i);
      i += skip;
      length += skip;
      if (length < this.#min) {
        this.#length = length;
        return -1;
      }
    }
    const hashStart = i;
    let hash = this.#hash;
    const maskS = this.#maskS;
    const maskL = this.#maskL;
    const limit = Math.min(end, i + (this.#max - length));
    const normalEnd = Math.min(limit, i + Math.max(0, this.#avg - length));
    while (i < normalEnd) {
      hash = ((hash << 1) + (GEAR[data[i] as number] as number)) | 0;
      i++;
      if ((hash & maskS) === 0) return i;
    }
    while (i < limit) {
      hash = ((hash << 1) + (GEAR[data[i] as number] as number)) | 0;
      i++;
      if ((hash & maskL) === 0) return i;
    }
    this.#length = length + (i - hashStart);
    this.#hash = hash;
    return this.#length >= this.#max ? i : -1;
  }
}
