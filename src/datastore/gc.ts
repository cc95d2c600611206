import { IbsError, MANIFEST_NAME, isIbsError, indexChunks, decodeIndex, snapshotPath } from '../core/index.ts';
import { throwIfAborted } from '../lib/index.ts';
import type { OpOptions, StorageBackend } from '../storage/index.ts';
import type { Datastore } from './datastore.ts';
import { readLeases, LEASE_TTL_MS } from './writer-lease.ts';

export const GC_STATUS_KEY = '.gc-status.json';
/** Default safety margin before the cutoff: clocks of writers on other hosts may be off by this much. */
export const GC_DEFAULT_MARGIN_MS = 5 * 60_000;

export interface GcResult {
  startedAt: string;
  finishedAt: string;
  /** Chunks older than this (ms since the epoch) and unreferenced were removed. */
  cutoffMs: number;
  indexesRead: number;
  referencedChunks: number;
  removedChunks: number;
  removedBytes: number;
  /** Unreferenced chunks newer than the cutoff: removed by a later GC. */
  pendingChunks: number;
  pendingBytes: number;
  keptChunks: number;
  keptBytes: number;
  /** Logical bytes of all archives divided by the stored bytes of the chunks they use. */
  dedupFactor: number;
  removedPartial: number;
}

export interface GcOptions extends OpOptions {
  marginMs?: number;
  onLog?: (message: string) => void;
  onWarning?: (message: string) => void;
  onProgress?: (event: { phase: 'mark' | 'sweep'; done: number }) => void;
}

/**
 * Mark and sweep. Mark: read every index of every snapshot and collect the chunks they reference. Sweep:
 * remove chunks that are unreferenced and whose modification time is before the cutoff, which lies before
 * the start of the oldest running writer (its lease) minus a safety margin. A writer touches every chunk it
 * reuses, and writes new chunks after its start, so nothing it will reference is older than the cutoff.
 * Also removes leftovers of interrupted writers (snapshot folders without manifest, stale leases).
 */
export async function collectGarbage(ds: Datastore, options: GcOptions = {}): Promise<GcResult> {
  await ds.assertWritable('run garbage collection', options);
  const log = options.onLog ?? (() => {});
  const started = Date.now();
  const { live, stale } = await readLeases(ds.backend, started);
  const oldestWriter = Math.min(started, ...live.map((l) => l.start));
  const cutoffMs = oldestWriter - (options.marginMs ?? GC_DEFAULT_MARGIN_MS);
  log(`cutoff ${new Date(cutoffMs).toISOString()} (${live.length} running writers)`);

  // Mark.
  const referenced = new Set<string>();
  let indexesRead = 0;
  let logicalBytes = 0;
  const snapshots = await ds.listSnapshots({ ns: [], recursive: true }, options);
  for (const info of snapshots) {
    throwIfAborted(options.signal);
    for (const file of info.manifest.files) {
      if (!/\.(didx|fidx)$/.test(file.filename)) continue;
      const key = `${snapshotPath(info.ref)}${file.filename}`;
      let index;
      try {
        index = decodeIndex(await ds.backend.read(key, options), key);
      } catch (error) {
        // An unreadable index cannot tell what it references: stop rather than delete what it might use.
        throw new IbsError('CORRUPT', `GC stopped before removing anything: cannot read index ${key}: ${(error as Error).message}`, { cause: error });
      }
      indexesRead++;
      for (const span of indexChunks(index)) {
        referenced.add(span.digest);
        logicalBytes += span.end - span.start;
      }
      options.onProgress?.({ phase: 'mark', done: indexesRead });
    }
  }
  log(`marked ${referenced.size} chunks in ${indexesRead} indexes of ${snapshots.length} snapshots`);

  // Sweep.
  const result: GcResult = {
    startedAt: new Date(started).toISOString(),
    finishedAt: '',
    cutoffMs,
    indexesRead,
    referencedChunks: referenced.size,
    removedChunks: 0,
    removedBytes: 0,
    pendingChunks: 0,
    pendingBytes: 0,
    keptChunks: 0,
    keptBytes: 0,
    dedupFactor: 0,
    removedPartial: 0,
  };
  let swept = 0;
  for await (const chunk of ds.chunks.list(options)) {
    throwIfAborted(options.signal);
    swept++;
    if (swept % 1000 === 0) options.onProgress?.({ phase: 'sweep', done: swept });
    if (referenced.has(chunk.digest)) {
      result.keptChunks++;
      result.keptBytes += chunk.size;
      continue;
    }
    if (chunk.mtimeMs >= cutoffMs) {
      result.pendingChunks++;
      result.pendingBytes += chunk.size;
      continue;
    }
    // Look again just before removing: a writer may have touched it since the listing.
    const fresh = await ds.chunks.stat(chunk.digest, options);
    if (!fresh) continue;
    if (fresh.mtimeMs >= cutoffMs) {
      result.pendingChunks++;
      result.pendingBytes += fresh.size;
      continue;
    }
    await ds.chunks.remove(chunk.digest, options);
    result.removedChunks++;
    result.removedBytes += fresh.size;
  }
  result.dedupFactor = result.keptBytes > 0 ? logicalBytes / result.keptBytes : 0;

  // Leftovers of interrupted writers.
  const liveTargets = new Set(live.map((l) => l.target));
  result.removedPartial = await removePartialSnapshots(ds.backend, liveTargets, cutoffMs, options);
  await ds.backend.cleanTemporary?.(Math.max(0, started - cutoffMs), options);
  for (const key of stale) {
    const info = await ds.backend.stat(key, options);
    if (info && started - info.mtimeMs > LEASE_TTL_MS) await ds.backend.delete(key, options);
  }
  result.finishedAt = new Date().toISOString();
  log(`removed ${result.removedChunks} chunks (${result.removedBytes} bytes), ${result.pendingChunks} pending`);
  try {
    await ds.backend.write(GC_STATUS_KEY, Buffer.from(JSON.stringify(result)), options);
  } catch (error) {
    // GC is what makes room on a full datastore: when it removed too little for its own record, its work
    // still stands and its result is still told. `gc status` then shows the run before.
    if (!isIbsError(error, 'NO_SPACE')) throw error;
    (options.onWarning ?? log)(`this run's result could not be recorded (${error.message}): the datastore is still full`);
  }
  return result;
}


async function removePartialSnapshots(backend: StorageBackend, liveTargets: Set<string | undefined>, cutoffMs: number, options: OpOptions): Promise<number> {
  const dirs = new Map<string, { manifest: boolean; newest: number; keys: string[] }>();
  const prefixes = ['vm/', 'ct/', 'host/', 'ns/'];
  for (const prefix of prefixes) {
    for await (const entry of backend.list(prefix, options)) {
      const slash = entry.key.lastIndexOf('/');
      const dir = entry.key.slice(0, slash + 1);
      if (!/\/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\/$/.test(dir)) continue;
      const state = dirs.get(dir) ?? { manifest: false, newest: 0, keys: [] };
      if (entry.key.endsWith(`/${MANIFEST_NAME}`)) state.manifest = true;
      state.newest = Math.max(state.newest, entry.mtimeMs);
      state.keys.push(entry.key);
      dirs.set(dir, state);
    }
  }
  let removed = 0;
  for (const [dir, state] of dirs) {
    if (state.manifest || liveTargets.has(dir) || state.newest >= cutoffMs) continue;
    for (const key of state.keys) await backend.delete(key, options);
    removed++;
  }
  return removed;
}

/** The last GC's result as recorded; undefined when there is none, or when the record does not read (its numbers would mislead). */
export async function readGcStatus(ds: Datastore, options: OpOptions = {}): Promise<GcResult | undefined> {
  let value: unknown;
  try {
    value = JSON.parse((await ds.backend.read(GC_STATUS_KEY, options)).toString('utf8'));
  } catch {
    return undefined;
  }
  const r = value as Record<string, unknown> | null;
  const numbers = ['cutoffMs', 'indexesRead', 'referencedChunks', 'removedChunks', 'removedBytes', 'pendingChunks', 'pendingBytes', 'keptChunks', 'keptBytes', 'dedupFactor', 'removedPartial'];
  if (typeof r !== 'object' || r === null || typeof r.startedAt !== 'string' || typeof r.finishedAt !== 'string' || !numbers.every((k) => typeof r[k] === 'number')) return undefined;
  return r as unknown as GcResult;
}
