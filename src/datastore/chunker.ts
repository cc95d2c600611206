/**
 * Content-defined chunking (FastCDC-style gear hash with normalized chunking). Cut points depend only on the
 * bytes, so an insertion early in a stream shifts at most a chunk or two and the rest dedups. Sizes: at least
 * `min`, at most `max`, about `avg` on average. Defaults: 512 KiB / 2 MiB / 8 MiB.
 */

import { release } from '../lib/index.ts';

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

/**
 * The gear-hash loop, in WebAssembly: twice as fast as the same loop in JavaScript (measured here: 710-830
 * against 380-430 MiB/s, identical cuts), and on a backup the chunker's scan is the main thread's largest
 * cost. It takes two bytes a round: the hash two bytes on is (hash << 2) + (GEAR[b0] << 1) + GEAR[b1], so
 * the chain from one round to the next is one shift and one add, and the hash after the first byte (checked
 * too) is worked out beside it: 1590-1660 MiB/s one byte a round, 2120-2130 two (four: 2010-2060), same
 * cuts. `GEAR_MODULE` is this text form assembled by wat2wasm (wabt 1.0.39, no names), which gives the same
 * bytes again:
 *
 *   (module
 *     (memory (export "memory") 17)                   ;; GEAR at 0 (1 KiB), the window at 1024 (1 MiB)
 *     (global $stop (export "hash") (mut i32) (i32.const 0))
 *     (func (export "scan") (param $i i32) (param $end i32) (param $hash i32) (param $mask i32) (result i32)
 *       (local $g0 i32) (local $h0 i32) (local $last i32)
 *       (local.set $last (i32.sub (local.get $end) (i32.const 1)))
 *       (block (loop                                    ;; two bytes a round while two are left
 *         (br_if 1 (i32.ge_s (local.get $i) (local.get $last)))
 *         (local.set $g0 (i32.load (i32.shl (i32.load8_u offset=1024 (local.get $i)) (i32.const 2))))
 *         (local.set $h0 (i32.add (i32.shl (local.get $hash) (i32.const 1)) (local.get $g0)))
 *         (local.set $hash (i32.add (i32.shl (local.get $hash) (i32.const 2))
 *           (i32.add (i32.shl (local.get $g0) (i32.const 1))
 *             (i32.load (i32.shl (i32.load8_u offset=1025 (local.get $i)) (i32.const 2))))))
 *         (if (i32.eqz (i32.and (local.get $h0) (local.get $mask)))
 *           (then (global.set $stop (local.get $h0)) (return (i32.add (local.get $i) (i32.const 1)))))
 *         (local.set $i (i32.add (local.get $i) (i32.const 2)))
 *         (if (i32.eqz (i32.and (local.get $hash) (local.get $mask)))
 *           (then (global.set $stop (local.get $hash)) (return (local.get $i))))
 *         (br 0)))
 *       (if (i32.lt_u (local.get $i) (local.get $end))  ;; the last byte of an odd range
 *         (then
 *           (local.set $hash (i32.add (i32.shl (local.get $hash) (i32.const 1))
 *             (i32.load (i32.shl (i32.load8_u offset=1024 (local.get $i)) (i32.const 2)))))
 *           (local.set $i (i32.add (local.get $i) (i32.const 1)))
 *           (if (i32.eqz (i32.and (local.get $hash) (local.get $mask)))
 *             (then (global.set $stop (local.get $hash)) (return (local.get $i))))))
 *       (global.set $stop (local.get $hash))
 *       (i32.const -1)))
 *
 * `$i` and `$end` stay below the window's 1 MiB, so the signed compare with `$end - 1` (-1 for an empty range)
 * is safe.
 */
const GEAR_MODULE = Buffer.from(
  'AGFzbQEAAAABCQFgBH9/f38BfwMCAQAFAwEAEQYGAX8BQQALBxgDBm1lbW9yeQIABGhhc2gDAARzY2FuAAAKsgEBrwEBA38gAUEBayEGAkADQCAAIAZODQEgAC0AgAhBAnQoAgAhBCACQQF0IARqIQUgAkECdCAEQQF0IAAtAIEIQQJ0KAIAamohAiAFIANxRQRAIAUkACAAQQFqDwsgAEECaiEAIAIgA3FFBEAgAiQAIAAPCwwACwsgACABSQRAIAJBAXQgAC0AgAhBAnQoAgBqIQIgAEEBaiEAIAIgA3FFBEAgAiQAIAAPCwsgAiQAQX8L',
  'base64',
);
const WINDOW = 1024 * 1024;
// Node's type definitions leave out the WebAssembly global (the DOM's include it): the little used here, typed.
const wasm = (globalThis as unknown as { WebAssembly: { Module: new (bytes: Uint8Array) => object; Instance: new (module: object) => { exports: unknown } } }).WebAssembly;
const gear = new wasm.Instance(new wasm.Module(GEAR_MODULE)).exports as {
  scan: (i: number, end: number, hash: number, mask: number) => number;
  memory: { buffer: ArrayBuffer };
  hash: { value: number };
};
new Int32Array(gear.memory.buffer, 0, 256).set(GEAR);
const gearWindow = new Uint8Array(gear.memory.buffer, 1024, WINDOW);
/** The hash where the last `gearScan` stopped. */
let gearHash = 0;

/**
 * Index in `data` just past the first byte of [i, end) after which `hash & mask` is 0 (the hash going on from
 * `hash`), or -1 when there is none (an empty range included); the hash at `end` is then in `gearHash`.
 */
function gearScan(data: Uint8Array, i: number, end: number, hash: number, mask: number): number {
  while (i < end) {
    const n = Math.min(WINDOW, end - i);
    gearWindow.set(data.subarray(i, i + n));
    const cut = gear.scan(0, n, hash, mask);
    hash = gear.hash.value;
    if (cut >= 0) return i + cut;
    i += n;
  }
  gearHash = hash;
  return -1;
}

/** A mask with `bits` one-bits taken from the top of the 32-bit hash (the bits that see the most bytes). */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1) | 0;
}

/**
 * Cuts a stream into chunks. Every chunk comes out as a buffer of its own, exactly its size, which nothing else
 * refers to (its holder may free it), and no chunk keeps a larger piece alive. The bytes after the last cut
 * wait for the next one: a piece pushed as `owned` (handed over: nobody else uses its memory) waits as it is
 * and is freed by the chunker once all of it has gone into chunks; of any other piece the chunker keeps a
 * copy, and no reference once `push` is done with it.
 */
export class Chunker {
  readonly #min: number;
  readonly #avg: number;
  readonly #max: number;
  readonly #maskS: number;
  readonly #maskL: number;
  /** The bytes since the last cut, in order: tails of owned pieces, or copies. Each is the chunker's to free. */
  #parts: Uint8Array[] = [];
  /** Bytes in #parts. */
  #kept = 0;
  /** Bytes since the last cut that the scan has seen (#kept, and those of the piece being pushed). */
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

  /**
   * Feeds bytes; yields every chunk completed by them. With `owned`, `data` is handed over: its bytes after
   * the last cut wait without a copy, and the chunker frees its memory once all of it is in chunks.
   */
  *push(data: Uint8Array, owned = false): Generator<Buffer> {
    let pos = 0;
    while (pos < data.length) {
      const cut = this.#scan(data, pos);
      if (cut < 0) {
        const tail = data.subarray(pos);
        this.#parts.push(owned ? tail : new Uint8Array(tail));
        this.#kept += tail.length;
        return;
      }
      yield this.#take(data.subarray(pos, cut));
      pos = cut;
    }
    if (owned) release(data);
  }

  /** The last, possibly short, chunk; undefined when nothing is pending. */
  finish(): Buffer | undefined {
    return this.#length > 0 ? this.#take(new Uint8Array(0)) : undefined;
  }

  /** A chunk of the bytes waiting followed by `rest`, in a buffer of its own; what waited is freed. */
  #take(rest: Uint8Array): Buffer {
    const chunk = Buffer.allocUnsafeSlow(this.#kept + rest.length);
    let at = 0;
    for (const part of this.#parts) {
      chunk.set(part, at);
      at += part.length;
      // A part is the last bytes of its memory (an owned piece's tail, or a copy): nothing else needs it now.
      release(part);
    }
    chunk.set(rest, at);
    this.#parts = [];
    this.#kept = 0;
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
    // The stricter mask up to the average size, the looser one after it, up to `max` (normalized chunking).
    const limit = Math.min(end, i + (this.#max - length));
    const normalEnd = Math.min(limit, i + Math.max(0, this.#avg - length));
    let cut = gearScan(data, i, normalEnd, this.#hash, this.#maskS);
    if (cut < 0) cut = gearScan(data, normalEnd, limit, gearHash, this.#maskL);
    if (cut >= 0) return cut;
    this.#length = length + (limit - i);
    this.#hash = gearHash;
    return this.#length >= this.#max ? limit : -1;
  }
}
