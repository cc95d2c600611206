import { open, readdir, rm, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import {
  IbsError,
  fileSystemError,
  formatSnapshot,
  parseArchiveName,
  parseBackupId,
  parseBackupTime,
  parseBackupType,
  parseNamespace,
  parseSnapshot,
  planRanges,
  type CryptKey,
  type SnapshotRef,
} from '../core/index.ts';
import { FIXED_CHUNK_SIZE, SnapshotReader, SnapshotWriter, type ArchiveStats, type DamagedSnapshot } from '../datastore/index.ts';
import { RemoteSnapshotSink, RemoteSnapshotSource, type ApiClient } from '../client/index.ts';
import {
  assembleTar,
  assembledSize,
  catalogEntries,
  catalogContentBytes,
  catalogPayloadRanges,
  catalogRanges,
  createArchiveStreamInWorker,
  decodeCatalog,
  encodeCatalog,
  extractArchiveInWorker,
  extractTarInWorker,
  selectCatalog,
  treeSizeInWorker,
  type CatalogEntry,
  type PayloadChunk,
} from '../archive/index.ts';
import { withDatastore, type AppContext } from './context.ts';
import { abortableSleep, isAllZero, makeDirs, readPieces, SequentialFile } from '../lib/index.ts';

export interface ArchiveSpec {
  name: string;
  path: string;
}

/** Parses "NAME.tar:/path" / "NAME.img:/file". */
export function parseArchiveSpec(value: string): ArchiveSpec {
  const colon = value.indexOf(':');
  if (colon <= 0 || colon === value.length - 1) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid archive "${value}": expected NAME.tar:/directory or NAME.img:/file`);
  }
  return { name: parseArchiveName(value.slice(0, colon)), path: resolve(value.slice(colon + 1)) };
}

export interface BackupInput {
  /** The datastore: a local one by name, or on a server with `repository`. */
  store: string;
  repository?: { client: ApiClient; store: string };
  ns?: string;
  type: string;
  id: string;
  time?: string;
  archives: string[];
  excludes?: string[];
  key?: CryptKey | undefined;
  compress?: boolean;
}

export interface BackupResult {
  snapshot: string;
  archives: ArchiveStats[];
  bytes: number;
  storedBytes: number;
  seconds: number;
  warnings: string[];
  encrypted: boolean;
  /** For backups to a server: bytes of chunks and files sent over the network. */
  sentBytes?: number;
}

/** The catalog of file archive `archive` of a snapshot (stored chunked as `ARCHIVE.catalog`). */
export async function readCatalog(reader: SnapshotReader, archive: string): Promise<CatalogEntry[]> {
  const name = `${archive}.catalog`;
  if (!reader.indexedNames().includes(name)) throw new IbsError('NOT_FOUND', `Snapshot ${formatSnapshot(reader.ref)} has no catalog for ${archive}`);
  return decodeCatalog(await reader.readAll(name), name);
}

/**
 * File archive `name` of the snapshot the writer deduplicates against, for change detection: its catalog as
 * stored (indexed by the thread that reads the tree) and the chunk ends of its payload. Undefined when there is
 * none, or it has the older layout (one tar stream: nothing to take over chunk by chunk).
 */
async function previousArchive(writer: SnapshotWriter, name: string): Promise<{ catalog: Buffer; payloadChunkEnds: number[] } | undefined> {
  const previous = writer.previous;
  if (!previous || !previous.hasPayload(name) || !previous.indexedNames().includes(`${name}.catalog`)) return undefined;
  try {
    const catalog = await previous.readAll(`${name}.catalog`);
    return { catalog, payloadChunkEnds: (await previous.chunkList(`${name}.payload`)).map((s) => s.end) };
  } catch {
    return undefined; // a missing or damaged catalog only costs speed: every file is read
  }
}

/** Backs up directories (as pax tar) and images into a new snapshot; the snapshot appears only when complete. */
export async function createBackup(ctx: AppContext, input: BackupInput): Promise<BackupResult> {
  const ns = parseNamespace(input.ns ?? '');
  let ref: SnapshotRef = {
    ns,
    type: parseBackupType(input.type),
    id: parseBackupId(input.id),
    time: input.time !== undefined ? parseBackupTime(input.time) : Math.floor(Date.now() / 1000),
  };
  if (input.archives.length === 0) throw new IbsError('INVALID_ARGUMENT', 'Nothing to back up: expected at least one NAME.tar:/directory or NAME.img:/file');
  const specs = input.archives.map(parseArchiveSpec);
  const names = new Set<string>();
  for (const spec of specs) {
    if (names.has(spec.name)) throw new IbsError('INVALID_ARGUMENT', `Archive name "${spec.name}" is given twice: expected distinct names`);
    names.add(spec.name);
    const st = await stat(spec.path).catch((error: NodeJS.ErrnoException) => {
      throw new IbsError(error.code === 'ENOENT' ? 'NOT_FOUND' : 'PERMISSION_DENIED', `Cannot back up "${spec.path}" (${spec.name}): ${error.code === 'ENOENT' ? 'no such file or directory' : error.message}`);
    });
    if (spec.name.endsWith('.tar') && !st.isDirectory()) throw new IbsError('INVALID_ARGUMENT', `Archive ${spec.name} needs a directory, but "${spec.path}" is not one`);
    if (spec.name.endsWith('.img') && !(st.isFile() || st.isBlockDevice())) throw new IbsError('INVALID_ARGUMENT', `Archive ${spec.name} needs a file or block device, but "${spec.path}" is neither`);
    if (st.isDirectory()) await readdir(spec.path).catch((error: Error) => {
      throw new IbsError('PERMISSION_DENIED', `Cannot read directory "${spec.path}": ${error.message}`);
    });
    else await (await open(spec.path, 'r').catch((error: Error) => {
      throw new IbsError('PERMISSION_DENIED', `Cannot read "${spec.path}": ${error.message}`);
    })).close();
  }
  const warnings: string[] = [];
  const warn = (message: string): void => {
    warnings.push(message);
    ctx.reporter.warn(message);
  };
  const started = Date.now();
  // The size of what is backed up (for percent and ETA) is known once every part of it is: an image's at once;
  // a tree's from the previous snapshot's catalog (its file bytes: exact when nothing changed), else by a walk
  // while the backup runs (walking first took seconds before the first byte was read). Trees are walked on
  // threads of their own, with synchronous calls: on the main thread the walk slowed a backup by a tenth, and
  // for a backup that finds little changed it doubled the reading of the tree. Until then, bytes and rate.
  let total: number | undefined;
  const walks: Array<ReturnType<typeof treeSizeInWorker>> = [];
  let sizing: Promise<void> = Promise.resolve();
  const sumSizes = async (parts: Array<Promise<number | undefined>>): Promise<void> => {
    let sum = 0;
    for (const part of parts) {
      const size = await part;
      if (size === undefined) return;
      sum += size;
    }
    total = sum;
  };
  let done = 0;
  const report = (bytes: number): void => {
    done += bytes;
    // A tree that grew since the previous snapshot passes its estimate: the total then follows what is done.
    ctx.reporter.progress({ phase: 'backup', done, total: total !== undefined ? Math.max(total, done) : undefined, unit: 'bytes' });
  };
  const run = async (writer: SnapshotWriter, where: string): Promise<BackupResult> => {
    const ref = writer.ref;
    ctx.reporter.info(`Starting backup ${formatSnapshot(ref)} to ${where}${input.key ? ` (encrypted, key ${input.key.fingerprint})` : ''}`);
    try {
      const previous = new Map<string, Awaited<ReturnType<typeof previousArchive>>>();
      for (const spec of specs) if (spec.name.endsWith('.tar')) previous.set(spec.name, await previousArchive(writer, spec.name));
      const parts = specs.map((spec): Promise<number | undefined> => {
        if (spec.name.endsWith('.img')) return stat(spec.path).then((st) => st.size);
        // Nobody sees the total (quiet, no terminal): neither the previous catalog's sum (a pass over its text,
        // 20 MB for the bench tree) nor a walk of the tree is worth its cost.
        if (ctx.reporter.showsProgress === false) return Promise.resolve(undefined);
        const catalog = previous.get(spec.name)?.catalog;
        if (catalog) return Promise.resolve(catalogContentBytes(catalog.toString('utf8')));
        const walk = treeSizeInWorker(spec.path);
        walks.push(walk);
        return walk.size;
      });
      sizing = sumSizes(parts).catch(() => {});
      for (const spec of specs) {
        if (spec.name.endsWith('.tar')) {
          const tar = createArchiveStreamInWorker(spec.path, { excludes: input.excludes ?? [], signal: ctx.signal, onWarning: warn, onBytes: report, previous: previous.get(spec.name) });
          // The payload's buffers are freed as soon as they are chunked (not left to the collector).
          await writer.addDynamicArchive(`${spec.name}.payload`, tar.stream, { handOver: true });
          await writer.addDynamicArchive(`${spec.name}.catalog`, tar.result.catalog.pieces());
          ctx.reporter.info(`${spec.name}: ${tar.result.files} entries, ${tar.result.bytes} bytes of file data`);
        } else {
          // A regular file's stamp lets the next backup skip reading it when it has not changed.
          const st = await stat(spec.path, { bigint: true });
          const stamp = st.isFile() ? `${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.dev}:${st.ino}` : undefined;
          const reused = stamp !== undefined ? await writer.reuseFixedArchive(spec.name, stamp) : undefined;
          if (reused) {
            report(reused.size);
            ctx.reporter.info(`${spec.name}: unchanged since the previous snapshot; its index was reused`);
            continue;
          }
          // Read a chunk at a time, each straight into the buffer that becomes the chunk.
          const pieces = readPieces(spec.path, FIXED_CHUNK_SIZE, ctx.signal);
          await writer.addFixedArchive(spec.name, counted(pieces, report), { sourceStamp: stamp, handOver: true });
        }
      }
      // Everything is read: what was read is the total, if the sizing walk has not told it yet (a small tree
      // read before the walk's thread finished, on a busy machine: the progress showed no total at all).
      if (ctx.reporter.showsProgress !== false) ctx.reporter.progress({ phase: 'backup', done, total: Math.max(total ?? done, done), unit: 'bytes' });
      await writer.commit(warnings.length > 0 ? { notes: `${warnings.length} warnings during backup` } : {});
    } catch (error) {
      await writer.abort().catch(() => {});
      throw error;
    }
    const archives = writer.archives;
    return {
      snapshot: formatSnapshot(ref),
      archives,
      bytes: archives.reduce((n, a) => n + a.size, 0),
      storedBytes: archives.reduce((n, a) => n + a.storedBytes, 0),
      seconds: (Date.now() - started) / 1000,
      warnings,
      encrypted: input.key !== undefined,
    };
  };
  try {
    if (input.repository) {
      const { client, store } = input.repository;
      const sink = await RemoteSnapshotSink.start(client, { store, ref, keyFingerprint: input.key?.fingerprint });
      // Change detection over the network: the previous snapshot is read through a reader session (its catalogs,
      // indexes and only the chunks at the edges of reused ranges). Without it every file is read.
      const source = sink.previous ? await RemoteSnapshotSource.open(client, { store, ref: sink.previous }).catch(() => undefined) : undefined;
      try {
        let previous: SnapshotReader | undefined;
        if (source && sink.previous) {
          try {
            previous = SnapshotReader.from(source, sink.previous, source.manifest, { key: input.key, signal: ctx.signal });
          } catch {
            previous = undefined; // another key, or a manifest that does not check: no change detection
          }
        }
        const result = await run(SnapshotWriter.over(sink, { key: input.key, compress: input.compress ?? true, signal: ctx.signal, pool: () => ctx.chunkPool }, previous), `datastore ${store} on the server`);
        return { ...result, sentBytes: sink.sentBytes };
      } finally {
        await source?.close();
      }
    }
    // Awaited here, not returned: `finally` below must wait for the backup, or it would stop the sizing walk at
    // once (no percent or ETA) and leave a failure unhandled while it waits for that walk.
    return await withDatastore(ctx, input.store, async (ds) => {
      if (input.time === undefined) {
        // Snapshot times have a resolution of one second: a second backup within the same second waits.
        // A snapshot that does not read holds its time too, and must not stop the group's backups.
        const damaged: DamagedSnapshot[] = [];
        const snaps = await ds.listSnapshots({ ns, group: { ns, type: ref.type, id: ref.id } }, { damaged });
        const newest = Math.max(0, ...[...snaps, ...damaged].map((s) => s.ref.time));
        if (newest >= ref.time) {
          await abortableSleep((newest + 1) * 1000 - Date.now(), ctx.signal);
          ref = { ...ref, time: Math.max(newest + 1, Math.floor(Date.now() / 1000)) };
        }
      }
      const writer = await SnapshotWriter.begin(ds, ref, { owner: ctx.authId, key: input.key, compress: input.compress ?? true, signal: ctx.signal, pool: () => ctx.chunkPool });
      return run(writer, `datastore ${input.store}`);
    });
  } finally {
    // A backup that failed before it began (no server, no datastore) stops the sizing walk too.
    for (const walk of walks) await walk.stop();
    await sizing;
  }
}

export interface RestoreInput {
  store: string;
  /** Restore from a datastore on a server. */
  repository?: { client: ApiClient; store: string };
  ns?: string;
  snapshot: string;
  archive: string;
  /** A directory (tar), a file (img), or "-" for standard output. */
  target: string;
  /** Only this file or subtree of a file archive. */
  path?: string;
  key?: CryptKey | undefined;
  /** Where "-" writes. */
  stdout?: Writable;
}

export interface RestoreResult {
  snapshot: string;
  archive: string;
  target: string;
  bytes: number;
  entries?: number;
  seconds: number;
  warnings: string[];
}

/** `source`, reporting each piece's length before passing it on (for progress). */
async function* counted(source: AsyncIterable<Buffer>, report: (bytes: number) => void): AsyncGenerator<Buffer> {
  for await (const piece of source) {
    report(piece.length);
    yield piece;
  }
}

/**
 * A file archive stored as catalog and payload, ready to restore: the catalog's text as bytes (all of it, or
 * the entries under `path` with the targets of hard links among them), the payload's chunk ends, and its
 * chunks in the order the restore first needs them (`planRanges`), each fetched once.
 */
async function storedArchive(
  ctx: AppContext,
  reader: SnapshotReader,
  archive: string,
  path: string | undefined,
): Promise<{ catalog: Buffer; chunkEnds: number[]; ranges: Float64Array; chunks: AsyncGenerator<PayloadChunk>; what: string }> {
  const payload = `${archive}.payload`;
  let catalog = await reader.readAll(`${archive}.catalog`, { signal: ctx.signal });
  if (path !== undefined) catalog = encodeCatalog(selectCatalog(decodeCatalog(catalog, `${archive}.catalog`), path));
  const chunkEnds = (await reader.chunkList(payload, { signal: ctx.signal })).map((s) => s.end);
  // The catalog's text is not kept: a restore holds the catalog once (it moves to the restoring thread).
  const ranges = catalogPayloadRanges(catalog.toString('utf8'));
  const { order } = planRanges(chunkEnds, ranges);
  return { catalog, chunkEnds, ranges, chunks: reader.fetchChunks(payload, order, { signal: ctx.signal }), what: `${archive}.catalog of ${formatSnapshot(reader.ref)}` };
}

/**
 * Restores a file archive stored as catalog and payload into a directory: the restoring thread writes the
 * entries straight from the catalog and the payload chunks (each fetched once, in the order first needed, and
 * moved there without a copy). Progress counts file bytes written.
 */
async function restoreTree(ctx: AppContext, stored: Awaited<ReturnType<typeof storedArchive>>, input: RestoreInput & { started: number; warnings: string[] }): Promise<RestoreResult> {
  const { ranges } = stored;
  let total = 0;
  for (let i = 0; i < ranges.length; i += 2) total += (ranges[i + 1] as number) - (ranges[i] as number);
  const target = resolve(input.target);
  await assertEmptyTarget(target);
  let done = 0;
  // The ranges move to the restoring thread, which does not work them out again from the catalog.
  const result = await extractArchiveInWorker(stored.catalog, stored.chunkEnds, ranges, stored.chunks, target, {
    what: stored.what,
    signal: ctx.signal,
    onBytes: (n) => {
      done += n;
      ctx.reporter.progress({ phase: 'restore', done, total, unit: 'bytes' });
    },
    onWarning: (m) => {
      input.warnings.push(m);
      ctx.reporter.warn(m);
    },
  });
  return { snapshot: input.snapshot, archive: input.archive, target, bytes: result.bytes, entries: result.entries, seconds: (Date.now() - input.started) / 1000, warnings: input.warnings };
}

/** The part of an older-layout tar stream holding some entries, ended like a tar archive. */
async function* withEnd(stream: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield* stream;
  yield Buffer.alloc(1024);
}

async function assertEmptyTarget(target: string): Promise<void> {
  const st = await stat(target).catch(() => undefined);
  if (!st) return;
  if (!st.isDirectory()) throw new IbsError('EXISTS', `Restore target "${target}" exists and is not a directory`);
  if ((await readdir(target)).length > 0) throw new IbsError('EXISTS', `Restore target "${target}" is not empty: expected a new or empty directory`);
}

async function writeStream(out: Writable, source: AsyncIterable<Buffer>, onBytes: (n: number) => void): Promise<number> {
  // A failed write (a full disk behind a redirection, a reader that went away) comes as an event, maybe after
  // the write returned: kept, and thrown before the next piece, or at the end, once written out.
  let failure: unknown;
  const fail = (error: unknown): void => {
    failure ??= error;
  };
  out.on('error', fail);
  const check = (): void => {
    if (failure !== undefined) throw fileSystemError(failure, 'Cannot write the restore to standard output');
  };
  try {
    let total = 0;
    for await (const piece of source) {
      check();
      total += piece.length;
      onBytes(piece.length);
      if (!out.write(piece)) await once(out, 'drain').catch(fail);
    }
    await new Promise<void>((r) => out.write('', () => r()));
    check();
    return total;
  } finally {
    out.off('error', fail);
  }
}

/** Restores an archive of a snapshot: a directory tree (optionally one path of it), an image, or a stream. */
export async function restoreBackup(ctx: AppContext, input: RestoreInput): Promise<RestoreResult> {
  const ref = parseSnapshot(input.snapshot, parseNamespace(input.ns ?? ''));
  const archive = parseArchiveName(input.archive);
  const started = Date.now();
  const warnings: string[] = [];
  const restoreFrom = async (reader: SnapshotReader): Promise<RestoreResult> => {
    if (reader.encrypted && !input.key) {
      throw new IbsError('WRONG_KEY', `Snapshot ${formatSnapshot(ref)} is encrypted with key ${reader.manifest.keyFingerprint}: pass --keyfile with that key`);
    }
    if (input.path !== undefined && !archive.endsWith('.tar')) throw new IbsError('INVALID_ARGUMENT', `--path applies to file archives (.tar), not to ${archive}`);
    const stored = archive.endsWith('.tar') && reader.hasPayload(archive) ? await storedArchive(ctx, reader, archive, input.path) : undefined;
    if (stored && input.target !== '-') return restoreTree(ctx, stored, { ...input, snapshot: formatSnapshot(ref), archive, started, warnings });
    let stream: AsyncIterable<Buffer>;
    let total: number;
    if (stored) {
      // The tar stream is made from catalog and payload (only the selected entries' contents are read).
      const text = stored.catalog.toString('utf8');
      total = assembledSize(text);
      stream = assembleTar(catalogEntries(text, stored.chunkEnds, stored.chunks, stored.what, undefined, stored.ranges));
    } else if (input.path !== undefined) {
      const ranges = catalogRanges(selectCatalog(await readCatalog(reader, archive), input.path));
      total = ranges.reduce((n, r) => n + r.end - r.start, 0) + 1024;
      stream = withEnd(reader.stream(archive, { signal: ctx.signal, ranges }));
    } else {
      total = await reader.archiveSize(archive);
      stream = reader.stream(archive, { signal: ctx.signal });
    }
    let done = 0;
    const report = (n: number): void => {
      done += n;
      ctx.reporter.progress({ phase: 'restore', done, total, unit: 'bytes' });
    };
    if (input.target === '-') {
      const out = input.stdout ?? process.stdout;
      const bytes = await writeStream(out, stream, report);
      return { snapshot: formatSnapshot(ref), archive, target: '-', bytes, seconds: (Date.now() - started) / 1000, warnings };
    }
    const target = resolve(input.target);
    if (archive.endsWith('.img')) {
      if (await stat(target).catch(() => undefined)) throw new IbsError('EXISTS', `Restore target "${target}" exists: expected a new file name`);
      const file = await makeDirs(dirname(target))
        .then(() => SequentialFile.create(target, 0o600))
        .catch((error: unknown) => {
          throw fileSystemError(error, `Cannot create the restore target "${target}"`);
        });
      let bytes = 0;
      try {
        // A piece of zeros (an unused region of a disk) is left as a hole, and the file gets its full length at
        // the end: it reads the same and holds only the data, as a restored disk image should. Measured on the
        // bench image (256 MiB, a third zeros, to /dev/shm; 4 runs each, alternating): 0.70-0.81 s -> 0.65-0.74 s,
        // 256 -> 172 MiB allocated.
        for await (const piece of stream) {
          if (isAllZero(piece)) await file.hole(piece.length);
          else await file.write(piece);
          bytes += piece.length;
          report(piece.length);
        }
        // Written with direct I/O (lib/direct-io.ts), the bytes are on the device already, and flushing what
        // is left costs little: the image is durable when the restore ends. Written the usual way (a file
        // system without direct I/O), it is not flushed here, like a tree restore (and tar, cp, restic):
        // flushing 1 GiB to the bench disk added 0.9-1.3 s. `sync` flushes when it must survive a power cut.
        await file.end({ sync: file.direct });
      } catch (error) {
        await file.close().catch(() => {});
        await rm(target, { force: true });
        throw fileSystemError(error, `Cannot write the restore target "${target}" (the partial file is removed)`);
      }
      return { snapshot: formatSnapshot(ref), archive, target, bytes, seconds: (Date.now() - started) / 1000, warnings };
    }
    await assertEmptyTarget(target);
    // An archive of the older layout: the reader decodes each chunk into a buffer of its own, kept by nobody
    // else: they move to the restoring thread without a copy. Progress counts the archive's bytes as they go
    // there, like its total (file bytes alone stopped short of it, by the headers and padding); the summary
    // gives the file bytes written.
    const result = await extractTarInWorker(counted(stream, report), target, {
      handOver: true,
      signal: ctx.signal,
      onWarning: (m) => {
        warnings.push(m);
        ctx.reporter.warn(m);
      },
    });
    return { snapshot: formatSnapshot(ref), archive, target, bytes: result.bytes, entries: result.entries, seconds: (Date.now() - started) / 1000, warnings };
  };
  // Chunks are decoded and checked on the chunk pool's threads, the main thread only reads them and hands them
  // on: an image of 256 MiB in 0.9 s instead of 1.2 s; the bench tree (1.3 GB, 83,731 entries) in 3.3-3.7 s
  // instead of 3.8-4.4 s, 0.7 s less CPU (no WebCrypto copies), peak RSS 273-280 MiB instead of 248-263 MiB.
  const pool = ctx.chunkPool;
  if (input.repository) {
    const source = await RemoteSnapshotSource.open(input.repository.client, { store: input.repository.store, ref });
    try {
      return await restoreFrom(SnapshotReader.from(source, ref, source.manifest, { key: input.key, signal: ctx.signal, pool }));
    } finally {
      await source.close();
    }
  }
  return withDatastore(ctx, input.store, async (ds) => restoreFrom(await SnapshotReader.open(ds, ref, { key: input.key, signal: ctx.signal, pool })));
}
