import { IbsError } from '../core/index.ts';
import type { EntryType } from './tar-format.ts';

/**
 * The catalog of a file archive: one record per entry, in archive order. A file archive is stored as two
 * streams, this catalog and the payload (the contents of its regular files, at the offsets the catalog gives);
 * the tar stream the archive stands for is made from the two. The catalog also lets a single file or subtree
 * be listed and restored without reading unrelated chunks. Stored chunked like an archive
 * (`NAME.tar.catalog`, JSON lines) so that large trees and dedup work.
 */
export interface CatalogEntry {
  path: string;
  type: EntryType;
  size: number;
  mtime: number;
  mode: number;
  /** Offset of the entry's first header block (its pax header when it has one) in the tar stream. */
  start: number;
  /** Offset just past its data and padding in the tar stream. */
  end: number;
  /** For hard links: the path of the entry holding the data; for symlinks: the link target. */
  link?: string;
  mtimeNs?: number;
  uid?: number;
  gid?: number;
  /** "seconds.nanoseconds" of the inode change time, and "device:inode", for regular files (change detection). */
  ctime?: string;
  inode?: string;
  /**
   * Offset of a regular file's contents in the payload stream (files of size 0 have none). Absent in archives
   * of the older layout, whose tar stream is stored whole (`NAME.tar`).
   */
  data?: number;
}

export function encodeCatalog(entries: readonly CatalogEntry[]): Buffer {
  const builder = new CatalogBuilder();
  for (const e of entries) builder.add(e);
  return Buffer.concat(builder.pieces());
}

/** A catalog as bytes (JSON lines), in pieces. */
export interface CatalogPieces {
  count: number;
  pieces(): Buffer[];
}

/**
 * Collects catalog lines compactly (JSON lines in 1 MiB buffers) while a tree is archived: a tree of 100k
 * entries would otherwise hold 100k objects and then one large string at once.
 */
export class CatalogBuilder implements CatalogPieces {
  readonly #full: Buffer[] = [];
  #current = Buffer.allocUnsafe(1024 * 1024);
  #used = 0;
  count = 0;

  add(entry: CatalogEntry): void {
    const line = `${this.count > 0 ? '\n' : ''}${JSON.stringify(entry)}`;
    const bytes = Buffer.byteLength(line);
    if (this.#used + bytes > this.#current.length) {
      this.#full.push(this.#current.subarray(0, this.#used));
      this.#current = Buffer.allocUnsafe(Math.max(1024 * 1024, bytes));
      this.#used = 0;
    }
    this.#used += this.#current.write(line, this.#used);
    this.count++;
  }

  /** The catalog's bytes, as pieces. */
  pieces(): Buffer[] {
    return [...this.#full, this.#current.subarray(0, this.#used)];
  }
}

/** Whether a parsed catalog line has what every entry needs: a path, a byte range and, if any, a payload offset. */
function wellFormed(e: CatalogEntry): boolean {
  return (
    e !== null &&
    typeof e === 'object' &&
    typeof e.path === 'string' &&
    Number.isSafeInteger(e.start) &&
    Number.isSafeInteger(e.end) &&
    e.end >= e.start &&
    (e.data === undefined || (Number.isSafeInteger(e.data) && e.data >= 0))
  );
}

/** A catalog line's entry, or undefined when it is not JSON or not well formed. */
function parseLine(line: string): CatalogEntry | undefined {
  try {
    const e = JSON.parse(line) as CatalogEntry;
    return wellFormed(e) ? e : undefined;
  } catch {
    return undefined;
  }
}

/** Line `number` (from 1) of catalog `what` as an entry; CORRUPT when it is not JSON or not well formed. */
export function decodeCatalogLine(line: string, what: string, number: number): CatalogEntry {
  let e: CatalogEntry;
  try {
    e = JSON.parse(line) as CatalogEntry;
  } catch {
    throw new IbsError('CORRUPT', `Catalog ${what}: line ${number} is not JSON`);
  }
  if (!wellFormed(e)) throw new IbsError('CORRUPT', `Catalog ${what}: line ${number} is malformed`);
  return e;
}

export function decodeCatalog(data: Buffer, what: string): CatalogEntry[] {
  const text = data.toString('utf8');
  if (text === '') return [];
  return text.split('\n').map((line, i) => decodeCatalogLine(line, what, i + 1));
}

/** The lines of a catalog's text, one at a time (a large catalog is not split into an array at once). */
export function* catalogLines(text: string): Generator<string> {
  for (let at = 0; at < text.length; ) {
    const nl = text.indexOf('\n', at);
    yield text.slice(at, nl < 0 ? text.length : nl);
    at = nl < 0 ? text.length : nl + 1;
  }
}

const LINE_START = '{"path":"';

/**
 * A stored catalog (as `encodeCatalog` or `CatalogBuilder` wrote it) looked up by path, for change detection.
 * It keeps the text and, per path, where its line is; a line is parsed when its path is asked for. Decoding
 * every line at once held 83,731 entries (a source tree) as objects: most of a backup thread's 55 MB heap.
 * A line that does not parse is as if absent (its file is read again).
 */
export class CatalogIndex {
  readonly #lines = new Map<string, string>();

  constructor(stored: Uint8Array) {
    const text = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength).toString('utf8');
    for (const line of catalogLines(text)) {
      // Lines start with the path (the builder writes it first); one without a backslash is taken as it is: in
      // JSON text every quote inside a string is escaped, so the first `","type":` ends it.
      const close = line.startsWith(LINE_START) ? line.indexOf('","type":', LINE_START.length) : -1;
      const raw = close > 0 ? line.slice(LINE_START.length, close) : undefined;
      const path = raw !== undefined && !raw.includes('\\') ? raw : parseLine(line)?.path;
      if (path !== undefined) this.#lines.set(path, line);
    }
  }

  get(path: string): CatalogEntry | undefined {
    const line = this.#lines.get(path);
    const entry = line === undefined ? undefined : parseLine(line);
    return entry?.path === path ? entry : undefined;
  }

  /** The payload ranges the entries' contents lie in (see `catalogPayloadRanges`), in no particular order. */
  payloadRanges(): Float64Array {
    const out: number[] = [];
    for (const line of this.#lines.values()) lineRange(line, out);
    return Float64Array.from(out);
  }
}

/**
 * Appends the payload range `start, end` of a catalog line's contents to `out`, if it has contents. Values are
 * read with patterns, not by parsing the line: in JSON text a quote inside a string is escaped, so `"size":`
 * and `"data":` only match keys.
 */
function lineRange(line: string, out: number[]): void {
  const data = /"data":(\d+)/.exec(line);
  const size = data ? /"size":(\d+)/.exec(line) : null;
  if (data && size && size[1] !== '0') out.push(Number(data[1]), Number(data[1]) + Number(size[1]));
}

/**
 * The payload ranges of a stored catalog's files with contents, in catalog order, as `[start, end, start,
 * end, …]`: what a restore of it reads, and in which order. A line whose parsed entry disagrees with it is
 * damaged (`catalogEntries` refuses it).
 */
export function catalogPayloadRanges(text: string): Float64Array {
  const out: number[] = [];
  for (const line of catalogLines(text)) lineRange(line, out);
  return Float64Array.from(out);
}

/** The bytes of a stored catalog's file contents: the sum of its files' sizes. */
export function catalogContentBytes(text: string): number {
  const ranges = catalogPayloadRanges(text);
  let total = 0;
  for (let i = 0; i < ranges.length; i += 2) total += (ranges[i + 1] as number) - (ranges[i] as number);
  return total;
}

/**
 * The entries under `path` ("" or "." for everything): the entry itself and, for a directory, everything
 * below it. Hard links whose data lives outside the selection bring their target entry along.
 */
export function selectCatalog(entries: readonly CatalogEntry[], path: string): CatalogEntry[] {
  const wanted = path.replace(/^\.?\/+/, '').replace(/\/+$/, '');
  if (wanted === '' || wanted === '.') return [...entries];
  const selected = entries.filter((e) => e.path === wanted || e.path.startsWith(`${wanted}/`));
  if (selected.length === 0) throw new IbsError('NOT_FOUND', `Path "${path}" is not in the archive`);
  const have = new Set(selected.map((e) => e.path));
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const extra: CatalogEntry[] = [];
  for (const e of selected) {
    if (e.type === 'hardlink' && e.link !== undefined && !have.has(e.link)) {
      const target = byPath.get(e.link);
      if (target) {
        extra.push(target);
        have.add(target.path);
      }
    }
  }
  return [...extra, ...selected].sort((a, b) => a.start - b.start);
}

/** Merges the byte ranges of entries into as few contiguous ranges as possible. */
export function catalogRanges(entries: readonly CatalogEntry[]): Array<{ start: number; end: number }> {
  const ranges: Array<{ start: number; end: number }> = [];
  for (const e of [...entries].sort((a, b) => a.start - b.start)) {
    const last = ranges.at(-1);
    if (last && last.end === e.start) last.end = e.end;
    else ranges.push({ start: e.start, end: e.end });
  }
  return ranges;
}
