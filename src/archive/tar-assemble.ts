import { chunkAt, IbsError, planRanges } from '../core/index.ts';
import { release } from '../lib/index.ts';
import { catalogLines, catalogPayloadRanges, decodeCatalogLine, type CatalogEntry } from './catalog.ts';
import { BLOCK, END_OF_ARCHIVE, encodeHeader, headerLength, padding, type EntryType, type TarEntry } from './tar-format.ts';
import type { ParsedEntry } from './tar-parse.ts';

/** Bytes of each buffer the stream yields (the last one of a stream may be shorter). */
const BATCH = 2 * 1024 * 1024;
const TYPES: ReadonlySet<string> = new Set<EntryType>(['file', 'dir', 'symlink', 'hardlink']);

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

/**
 * Bytes of the tar stream a catalog's entries make (its text: all of it or the selected entries), read off
 * each line's `start` and `end` (for progress; `catalogEntries` checks every entry).
 */
export function assembledSize(catalog: string): number {
  let size = END_OF_ARCHIVE.length;
  for (const m of catalog.matchAll(/"start":(\d+),"end":(\d+)/g)) size += Number(m[2]) - Number(m[1]);
  return size;
}

/**
 * The POSIX pax tar stream of entries (`catalogEntries`: the archive a catalog and payload stand for, or the
 * part of it holding the selected entries): for each entry its header, made from its fields, then its contents
 * and zero padding; then the end-of-archive marker. The stream is byte for byte the one GNU tar would read
 * from the tree when it was archived.
 *
 * Yields buffers of about 2 MiB, each made for the stream and kept by nobody else (the consumer may move or
 * free them).
 */
export async function* assembleTar(entries: AsyncIterable<ParsedEntry>): AsyncGenerator<Buffer> {
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
  for await (const { entry, data } of entries) {
    yield* put(encodeHeader(entry));
    for await (const piece of data) yield* put(piece);
    yield* zeros(entry.type === 'file' ? padding(entry.size) : 0);
  }
  yield* zeros(2 * BLOCK);
  if (used > 0) yield batch.subarray(0, used);
}

/** A payload chunk as it reaches a restore: its index in the payload's index, and its decoded bytes. */
export interface PayloadChunk {
  index: number;
  data: Buffer;
}

/**
 * The entries of a file archive stored as catalog and payload, for `extractEntries` or `assembleTar`, each
 * with its contents
 * as pieces of payload chunks (views, each valid until the next is asked for). `catalog` is the catalog's
 * text (all of it, or the selected entries); `chunks` brings the payload's chunks in the order `planRanges`
 * gives for its `catalogPayloadRanges`, each once: a chunk is kept until its last use, then freed. `onFirstUse`
 * is told when a chunk is first used (for flow control). `ranges` are the catalog's `catalogPayloadRanges`
 * when the caller has them already (they are not made again). Lines are parsed one at a time; a damaged line,
 * or one whose contents are not where the plan says, fails with CORRUPT.
 */
export async function* catalogEntries(
  catalog: string,
  chunkEnds: readonly number[],
  chunks: AsyncIterator<PayloadChunk>,
  what: string,
  onFirstUse: (chunk: PayloadChunk) => void = () => {},
  ranges: Float64Array = catalogPayloadRanges(catalog),
): AsyncGenerator<ParsedEntry> {
  const { uses } = planRanges(chunkEnds, ranges);
  const held = new Map<number, Buffer>();
  const used = new Uint8Array(chunkEnds.length);
  let next = 0;
  let line = 0;
  let done: Buffer | undefined;
  async function* contents(start: number, end: number): AsyncGenerator<Buffer> {
    for (let i = chunkAt(chunkEnds, start); i < chunkEnds.length && (i === 0 ? 0 : (chunkEnds[i - 1] as number)) < end; i++) {
      while (!held.has(i)) {
        const got = await chunks.next();
        if (got.done) throw new IbsError('CORRUPT', `Payload of ${what}: chunk ${i} is missing`);
        held.set(got.value.index, got.value.data);
      }
      const data = held.get(i) as Buffer;
      if (used[i] === 0) {
        used[i] = 1;
        onFirstUse({ index: i, data });
      }
      // The consumer has asked for this piece: the one before it is written.
      if (done) release(done);
      done = undefined;
      uses[i] = (uses[i] as number) - 1;
      if (uses[i] === 0) {
        held.delete(i);
        done = data;
      }
      const from = i === 0 ? 0 : (chunkEnds[i - 1] as number);
      yield data.subarray(Math.max(start, from) - from, Math.min(end, chunkEnds[i] as number) - from);
    }
  }
  for (const text of catalogLines(catalog)) {
    const e = decodeCatalogLine(text, what, ++line);
    const entry = tarEntry(e, what);
    if (entry.type !== 'file' || entry.size === 0) {
      yield { entry, data: (async function* () {})() };
      continue;
    }
    const start = ranges[2 * next] ?? -1;
    const end = ranges[2 * next + 1] ?? -1;
    next++;
    if (start !== e.data || end !== (e.data as number) + e.size) throw new IbsError('CORRUPT', `Catalog ${what}: line ${line} ("${e.path}") is damaged`);
    const data = contents(start, end);
    yield { entry, data };
    for await (const _ of data) {
      /* what the consumer left */
    }
  }
  if (done) release(done);
}
