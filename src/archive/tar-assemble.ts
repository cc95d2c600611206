import { IbsError } from '../core/index.ts';
import type { CatalogEntry } from './catalog.ts';
import { BLOCK, END_OF_ARCHIVE, encodeHeader, headerLength, padding, type EntryType, type TarEntry } from './tar-format.ts';

/** Bytes of each buffer the stream yields (the last one of a stream may be shorter). */
const BATCH = 2 * 1024 * 1024;
const TYPES: ReadonlySet<string> = new Set<EntryType>(['file', 'dir', 'symlink', 'hardlink']);

/** Reads the payload bytes of the given ranges, in the order given, as consecutive pieces (each within one range). */
export type PayloadReader = (ranges: Array<{ start: number; end: number }>) => AsyncIterable<Uint8Array>;

/** The header fields of a catalog entry; CORRUPT when the entry lacks one or is inconsistent. */
function tarEntry(e: CatalogEntry, what: string): TarEntry {
  const bad = (problem: string): IbsError => new IbsError('CORRUPT', `Catalog ${what}: entry "${e.path}" ${problem}`);
  if (!TYPES.has(e.type)) throw bad(`has an unknown type ${JSON.stringify(e.type)}`);
  for (const field of ['mtime', 'mtimeNs', 'mode', 'uid', 'gid', 'size'] as const) {
    const v = e[field];
    if (!Number.isSafeInteger(v) || (field !== 'mtime' && (v as number) < 0)) throw bad(`has no valid ${field}`);
  }
  if ((e.type === 'symlink' || e.type === 'hardlink') && typeof e.link !== 'string') throw bad('has no link target');
  if (e.type === 'file' && e.size > 0 && e.data === undefined) throw bad('has contents but no payload offset');
  if (e.type !== 'file' && e.size !== 0) throw bad(`is a ${e.type} with a size`);
  const entry: TarEntry = { path: e.path, type: e.type, mode: e.mode, uid: e.uid as number, gid: e.gid as number, size: e.size, mtime: e.mtime, mtimeNs: e.mtimeNs as number, linkname: e.link ?? '' };
  const length = headerLength(entry) + (e.type === 'file' ? e.size + padding(e.size) : 0);
  if (e.end - e.start !== length) throw bad(`spans ${e.end - e.start} bytes of the tar stream, its header and contents ${length}`);
  return entry;
}

/** Bytes of the tar stream `assembleTar` makes of these entries. */
export function assembledSize(entries: readonly CatalogEntry[]): number {
  return entries.reduce((n, e) => n + e.end - e.start, 0) + END_OF_ARCHIVE.length;
}

/**
 * The POSIX pax tar stream a file archive stored as catalog and payload stands for (or the part of it holding
 * the given entries): for each entry its header, made from the entry's fields, then its contents read from
 * the payload and zero padding; then the end-of-archive marker. The stream is byte for byte the one GNU tar
 * would read from the tree when it was archived. Entries are checked as they come (fields, length in the tar
 * stream, contents present): a damaged catalog fails with CORRUPT, never with a wrong stream.
 *
 * Yields buffers of about 2 MiB, each made for the stream and kept by nobody else (the consumer may move or
 * free them).
 */
export async function* assembleTar(entries: readonly CatalogEntry[], readPayload: PayloadReader, what: string): AsyncGenerator<Buffer> {
  const ranges: Array<{ start: number; end: number }> = [];
  for (const e of entries) if (e.type === 'file' && e.size > 0 && e.data !== undefined) ranges.push({ start: e.data, end: e.data + e.size });
  const payload = readPayload(ranges)[Symbol.asyncIterator]();
  let batch = Buffer.allocUnsafeSlow(BATCH);
  let used = 0;
  /** Room for at least one byte in the batch; yields the full one. */
  function* room(): Generator<Buffer> {
    if (used < batch.length) return;
    yield batch;
    batch = Buffer.allocUnsafeSlow(BATCH);
    used = 0;
  }
  function* put(bytes: Uint8Array): Generator<Buffer> {
    for (let from = 0; from < bytes.length; ) {
      yield* room();
      const n = Math.min(bytes.length - from, batch.length - used);
      batch.set(bytes.subarray(from, from + n), used);
      used += n;
      from += n;
    }
  }
  function* zeros(count: number): Generator<Buffer> {
    for (let left = count; left > 0; ) {
      yield* room();
      const n = Math.min(left, batch.length - used);
      batch.fill(0, used, used + n);
      used += n;
      left -= n;
    }
  }
  let piece: Uint8Array = new Uint8Array(0);
  for (const e of entries) {
    const entry = tarEntry(e, what);
    yield* put(encodeHeader(entry));
    if (entry.type !== 'file' || entry.size === 0) continue;
    for (let left = entry.size; left > 0; ) {
      if (piece.length === 0) {
        const next = await payload.next();
        if (next.done) throw new IbsError('CORRUPT', `Payload of ${what} ends before the contents of "${e.path}"`);
        piece = next.value;
      }
      const n = Math.min(left, piece.length);
      yield* put(piece.subarray(0, n));
      piece = piece.subarray(n);
      left -= n;
    }
    yield* zeros(padding(entry.size));
  }
  yield* zeros(2 * BLOCK);
  if (used > 0) yield batch.subarray(0, used);
}
