import { IbsError } from '../core/index.ts';
import { BLOCK, decodeRawHeader, padding, parsePax, type EntryType, type TarEntry } from './tar-format.ts';

/** Reads exact byte counts from an async iterable of buffers. */
class ByteReader {
  readonly #iterator: AsyncIterator<Uint8Array>;
  #buffer: Buffer = Buffer.alloc(0);
  #done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.#iterator = source[Symbol.asyncIterator]();
  }

  async #fill(): Promise<boolean> {
    if (this.#done) return false;
    const next = await this.#iterator.next();
    if (next.done) {
      this.#done = true;
      return false;
    }
    const piece = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.length);
    this.#buffer = this.#buffer.length === 0 ? piece : Buffer.concat([this.#buffer, piece]);
    return true;
  }

  /** Exactly n bytes; undefined at a clean end of input; CORRUPT when input ends midway. */
  async exact(n: number): Promise<Buffer | undefined> {
    while (this.#buffer.length < n) {
      if (!(await this.#fill())) {
        if (this.#buffer.length === 0) return undefined;
        throw new IbsError('CORRUPT', `tar stream ends in the middle of a record (${this.#buffer.length} of ${n} bytes)`);
      }
    }
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** n bytes as a sequence of pieces, without gathering them. */
  async *pieces(n: number): AsyncGenerator<Buffer> {
    let remaining = n;
    while (remaining > 0) {
      if (this.#buffer.length === 0 && !(await this.#fill())) throw new IbsError('CORRUPT', `tar stream ends inside file data (${remaining} bytes missing)`);
      const take = Math.min(remaining, this.#buffer.length);
      const out = this.#buffer.subarray(0, take);
      this.#buffer = this.#buffer.subarray(take);
      remaining -= take;
      yield out;
    }
  }
}

const TYPES: Record<string, EntryType | undefined> = { '0': 'file', '\0': 'file', '7': 'file', '5': 'dir', '2': 'symlink', '1': 'hardlink' };

export interface ParsedEntry {
  entry: TarEntry;
  /** The entry's data; drained automatically when the consumer moves on without reading it. */
  data: AsyncGenerator<Buffer>;
  /** Entry types we do not restore (devices, FIFOs) are reported with this set. */
  unsupported?: string;
}

/** Parses a tar stream (pax, ustar and GNU long names) into entries. */
export async function* parseTar(source: AsyncIterable<Uint8Array>): AsyncGenerator<ParsedEntry> {
  const reader = new ByteReader(source);
  let pax = new Map<string, string>();
  let longName: string | undefined;
  let longLink: string | undefined;
  for (;;) {
    const block = await reader.exact(BLOCK);
    if (!block) return;
    const raw = decodeRawHeader(block);
    if (!raw) return;
    const flag = raw.typeflag;
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      const data = (await reader.exact(raw.size + padding(raw.size))) ?? Buffer.alloc(0);
      const body = data.subarray(0, raw.size);
      if (flag === 'x') pax = parsePax(body);
      else if (flag === 'L') longName = body.toString('utf8').replace(/\0+$/, '');
      else if (flag === 'K') longLink = body.toString('utf8').replace(/\0+$/, '');
      continue;
    }
    const name = pax.get('path') ?? longName ?? (raw.prefix ? `${raw.prefix}/${raw.name}` : raw.name);
    const size = pax.has('size') ? Number(pax.get('size')) : raw.size;
    const mtimeText = pax.get('mtime');
    let mtime = raw.mtime;
    let mtimeNs = 0;
    if (mtimeText !== undefined) {
      const m = /^(-?\d+)(?:\.(\d+))?$/.exec(mtimeText);
      if (!m) throw new IbsError('CORRUPT', `tar pax header: invalid mtime "${mtimeText}"`);
      mtime = Number(m[1]);
      mtimeNs = Number((m[2] ?? '').padEnd(9, '0').slice(0, 9));
    }
    const type = TYPES[flag];
    const entry: TarEntry = {
      path: name.replace(/\/+$/, ''),
      type: type ?? 'file',
      mode: raw.mode,
      uid: pax.has('uid') ? Number(pax.get('uid')) : raw.uid,
      gid: pax.has('gid') ? Number(pax.get('gid')) : raw.gid,
      size: type === 'file' ? size : 0,
      mtime,
      mtimeNs,
      linkname: pax.get('linkpath') ?? longLink ?? raw.linkname,
    };
    pax = new Map();
    longName = undefined;
    longLink = undefined;
    const dataSize = flag === '5' || flag === '2' || flag === '1' ? 0 : size;
    if (!Number.isSafeInteger(dataSize) || dataSize < 0) throw new IbsError('CORRUPT', `tar header for "${name}": invalid size ${size}`);
    const data = reader.pieces(dataSize);
    yield type ? { entry, data } : { entry, data, unsupported: `type flag "${flag}"` };
    for await (const _ of data) {
      /* drain what the consumer left */
    }
    const pad = padding(dataSize);
    if (pad > 0) await reader.exact(pad);
  }
}
