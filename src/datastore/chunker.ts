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

export class Chunker {
  readonly #min: number;
  readonly #avg: number;
  readonly #max: number;
  readonly #maskS: number;
  readonly #maskL: number;
  #pending: Buffer[] = [];
  #length = 0;
  #hash = 0;
  /** Chunks gathered from several pieces into a buffer of their own (the others are views of a piece). */
  readonly #gathered = new WeakSet<Buffer>();

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
    return this.#pending.reduce((n, b) => n + b.length, 0);
  }

  /** Feeds bytes; yields every chunk completed by them. */
  *push(data: Buffer): Generator<Buffer> {
    let pos = 0;
    while (pos < data.length) {
      const cut = this.#scan(data, pos);
      if (cut < 0) {
        this.#pending.push(data.subarray(pos));
        return;
      }
      this.#pending.push(data.subarray(pos, cut));
      yield this.#take();
      pos = cut;
    }
  }

  /** The last, possibly short, chunk; undefined when nothing is pending. */
  finish(): Buffer | undefined {
    return this.#length > 0 || this.#pending.length > 0 ? this.#take() : undefined;
  }

  /** Whether `chunk` was gathered into a buffer of its own, which nothing else refers to. */
  owns(chunk: Buffer): boolean {
    return this.#gathered.has(chunk);
  }

  #take(): Buffer {
    const single = this.#pending.length === 1;
    const chunk = single ? (this.#pending[0] as Buffer) : Buffer.concat(this.#pending);
    if (!single) this.#gathered.add(chunk);
    this.#pending = [];
    this.#length = 0;
    this.#hash = 0;
    return chunk;
  }

  /** Index in `data` just past the next cut point, or -1 when the chunk continues past `data`. */
  #scan(data: Buffer, pos: number): number {
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
