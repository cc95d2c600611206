import { IbsError, checkBlobCrc, formatSnapshot, isIbsError, readBlobHeader, isEncryptedBlob, type CryptKey, type SnapshotRef, type Namespace, type VerifyState } from '../core/index.ts';
import { formatBytes, mapConcurrent, release, throwIfAborted } from '../lib/index.ts';
import type { OpOptions } from '../storage/index.ts';
import { verifyChunkContent } from './chunk-store.ts';
import type { DamagedSnapshot, Datastore, SnapshotInfo } from './datastore.ts';
import { SnapshotReader } from './snapshot-reader.ts';
import type { ChunkPool } from './chunk-pool.ts';

export interface VerifyOptions extends OpOptions {
  ns?: Namespace;
  snapshot?: SnapshotRef;
  /** Skip snapshots whose last verification passed less than `outdatedAfterDays` ago (all when undefined). */
  ignoreVerified?: boolean;
  outdatedAfterDays?: number;
  /**
   * A verification window: every snapshot is to be verified at least once in `days`. A run verifies the
   * snapshots due (see `overdueInWindow`) and, never verified first, then oldest verification first, others
   * up to `share` of all (the part of the window one run stands for), so that the work spreads evenly over the
   * runs instead of coming due all at once; the rest are skipped.
   */
  window?: { days: number; share: number };
  /** With a key, encrypted chunks are decrypted and their keyed digest checked; without, CRC only. */
  key?: CryptKey | undefined;
  upid?: string;
  /** Chunks checked at once within a snapshot (default 4). */
  concurrency?: number;
  /** Snapshots verified at once (default 1); a chunk shared by several is still checked once. */
  maxConcurrentSnapshots?: number;
  /** Threads for the digest checks of plaintext chunks. */
  pool?: ChunkPool | undefined;
  onProgress?: (event: { snapshot: string; chunksDone: number; chunksTotal: number; bytes: number }) => void;
  onLog?: (message: string) => void;
  /** A verification state that could not be recorded (a full or read-only datastore): the checks still count. */
  onWarning?: (message: string) => void;
}

export interface BadChunk {
  digest: string;
  reason: string;
  /** Every snapshot of the datastore whose indexes reference it. */
  snapshots: string[];
}

export interface VerifyResult {
  ok: boolean;
  snapshots: Array<{ snapshot: string; state: 'ok' | 'failed' | 'skipped'; problems: string[] }>;
  chunksChecked: number;
  bytesChecked: number;
  badChunks: BadChunk[];
}

/** The last time a snapshot was verified ok (seconds), or -Infinity when never (or not ok). */
function verifiedOkAt(info: SnapshotInfo): number {
  const state = info.manifest.unprotected.verifyState;
  return state?.state === 'ok' ? state.time : Number.NEGATIVE_INFINITY;
}

/**
 * Whether a snapshot is overdue in a window of `days` (`now` in seconds): its last ok verification, or its
 * backup time when it has none, lies `days` or more back. A new backup is due within the window, not at once.
 */
export function overdueInWindow(info: SnapshotInfo, days: number, now: number): boolean {
  const since = Math.max(verifiedOkAt(info), info.ref.time);
  return since <= now - days * 86400;
}

/** The snapshots one run of a windowed verification takes (see `VerifyOptions.window`). */
function selectForWindow(targets: SnapshotInfo[], window: { days: number; share: number }, now: number): Set<SnapshotInfo> {
  const due = new Set(targets.filter((t) => overdueInWindow(t, window.days, now)));
  const others = targets.filter((t) => !due.has(t)).sort((a, b) => verifiedOkAt(a) - verifiedOkAt(b) || a.ref.time - b.ref.time);
  for (const t of others.slice(0, Math.max(0, Math.ceil(targets.length * window.share) - due.size))) due.add(t);
  return due;
}

/**
 * Verifies snapshots: each manifest file against its checksum, each chunk once (digest for plaintext, CRC for
 * encrypted, plus decryption and keyed digest when the key is given). A damaged chunk is moved aside as
 * `.bad`, every snapshot referencing it (in the whole datastore) is named and marked failed; the result is
 * recorded in each manifest's verify state.
 */
export async function verifyDatastore(ds: Datastore, options: VerifyOptions = {}): Promise<VerifyResult> {
  const log = options.onLog ?? (() => {});
  const now = Math.floor(Date.now() / 1000);
  /**
   * Records a snapshot's verify state in its manifest. One removed meanwhile has nothing to record; on a full
   * or read-only datastore (a write-protected disk, a mounted copy) the state is not recorded and the checks
   * still stand (they are what its administrator needs), with a warning.
   */
  const record = async (ref: SnapshotRef, verifyState: VerifyState): Promise<void> => {
    try {
      await ds.updateUnprotected(ref, (u) => ({ ...u, verifyState }), options);
    } catch (error) {
      if (isIbsError(error, 'NOT_FOUND')) return;
      if (!isIbsError(error, 'NO_SPACE') && !isIbsError(error, 'PERMISSION_DENIED')) throw error;
      (options.onWarning ?? log)(`verify ${formatSnapshot(ref)}: its state (${verifyState.state}) could not be recorded: ${error.message}`);
    }
  };
  let targets: SnapshotInfo[];
  // A snapshot whose manifest does not read fails verification; the others are verified all the same.
  const damaged: DamagedSnapshot[] = [];
  if (options.snapshot) targets = [await ds.snapshotInfo(options.snapshot, options)];
  else targets = await ds.listSnapshots({ ns: options.ns ?? [], recursive: true }, { ...options, damaged });
  const result: VerifyResult = { ok: true, snapshots: [], chunksChecked: 0, bytesChecked: 0, badChunks: [] };
  const bad = new Map<string, string>();
  const failedSnapshots = new Set<string>();
  /** Each chunk's check, once: snapshots verified at the same time share it. */
  const checks = new Map<string, Promise<void>>();

  const checkChunk = async (digest: string): Promise<void> => {
    try {
      // Every path below checks the CRC once (the thread, the decoder, or alone for an encrypted chunk without
      // its key). The pool may take the buffer over: its size is noted first.
      const blob = await ds.chunks.rawBlob(digest, options);
      const size = blob.length;
      const encrypted = isEncryptedBlob(readBlobHeader(blob, `chunk ${digest}`));
      if (!encrypted && options.pool) release(await options.pool.check(digest, blob));
      else if (!encrypted || options.key) await verifyChunkContent(digest, blob, options.key, encrypted);
      else checkBlobCrc(blob, `chunk ${digest}`);
      result.bytesChecked += size;
    } catch (error) {
      if (!(error instanceof IbsError) || !['CORRUPT', 'NOT_FOUND', 'WRONG_KEY'].includes(error.code)) throw error;
      bad.set(digest, error.message);
      if (error.code !== 'NOT_FOUND') await ds.chunks.markBad(digest, options);
      log(`  bad chunk ${digest}: ${error.message}`);
    }
    result.chunksChecked++;
  };

  const inWindow = options.window ? selectForWindow(targets, options.window, now) : undefined;
  const verifyOne = async (info: SnapshotInfo): Promise<VerifyResult['snapshots'][number]> => {
    throwIfAborted(options.signal);
    const name = formatSnapshot(info.ref);
    const state = info.manifest.unprotected.verifyState;
    if (inWindow && !inWindow.has(info)) return { snapshot: name, state: 'skipped', problems: [] };
    if (options.ignoreVerified && state?.state === 'ok') {
      const outdated = options.outdatedAfterDays !== undefined && now - state.time >= options.outdatedAfterDays * 86400;
      if (!outdated) return { snapshot: name, state: 'skipped', problems: [] };
    }
    log(`verify ${name}`);
    const problems: string[] = [];
    let reader: SnapshotReader | undefined;
    try {
      reader = await SnapshotReader.open(ds, info.ref, { signal: options.signal, key: options.key });
    } catch (error) {
      problems.push((error as Error).message);
    }
    const digests: string[] = [];
    if (reader) {
      for (const file of reader.manifest.files) {
        try {
          const data = await reader.readFile(file.filename, options);
          if (file.filename.endsWith('.blob')) checkBlobCrc(data, `${file.filename} of ${name}`);
          if (/\.(didx|fidx)$/.test(file.filename)) for (const span of await reader.chunkList(file.filename, options)) digests.push(span.digest);
        } catch (error) {
          if (error instanceof IbsError && error.code !== 'CORRUPT' && error.code !== 'NOT_FOUND') throw error;
          problems.push((error as Error).message);
        }
      }
    }
    const unique = [...new Set(digests)];
    let done = 0;
    await mapConcurrent(unique, options.concurrency ?? 4, async (digest) => {
      let check = checks.get(digest);
      if (!check) checks.set(digest, (check = checkChunk(digest)));
      await check;
      done++;
      options.onProgress?.({ snapshot: name, chunksDone: done, chunksTotal: unique.length, bytes: result.bytesChecked });
    });
    for (const digest of unique) {
      const reason = bad.get(digest);
      if (reason !== undefined) problems.push(`chunk ${digest}: ${reason}`);
    }
    if (problems.length > 0) failedSnapshots.add(name);
    await record(info.ref, {
      state: problems.length > 0 ? 'failed' : 'ok',
      time: Math.floor(Date.now() / 1000),
      ...(options.upid ? { upid: options.upid } : {}),
      ...(problems.length > 0 ? { failedChunks: unique.filter((d) => bad.has(d)) } : {}),
    });
    return { snapshot: name, state: problems.length > 0 ? 'failed' : 'ok', problems };
  };

  result.snapshots = await mapConcurrent(targets, Math.max(1, options.maxConcurrentSnapshots ?? 1), verifyOne);
  for (const d of damaged) {
    const name = formatSnapshot(d.ref);
    log(`verify ${name}: ${d.reason}`);
    failedSnapshots.add(name);
    result.snapshots.push({ snapshot: name, state: 'failed', problems: [d.reason] });
  }

  if (bad.size > 0) {
    // Name every snapshot that uses a bad chunk, not only the ones verified now, and mark them failed.
    const users = new Map<string, string[]>([...bad.keys()].map((d) => [d, []]));
    for (const info of await ds.listSnapshots({ ns: [], recursive: true }, { ...options, damaged: [] })) {
      const name = formatSnapshot(info.ref);
      let reader: SnapshotReader;
      try {
        reader = await SnapshotReader.open(ds, info.ref, options);
      } catch {
        continue;
      }
      const hits = new Set<string>();
      for (const archive of reader.indexedNames()) {
        try {
          for (const span of await reader.chunkList(archive, options)) if (users.has(span.digest)) hits.add(span.digest);
        } catch {
          /* a damaged index was reported above */
        }
      }
      for (const digest of hits) users.get(digest)?.push(name);
      if (hits.size > 0 && !failedSnapshots.has(name)) {
        failedSnapshots.add(name);
        await record(info.ref, { state: 'failed', time: Math.floor(Date.now() / 1000), ...(options.upid ? { upid: options.upid } : {}), failedChunks: [...hits] });
      }
    }
    result.badChunks = [...bad].map(([digest, reason]) => ({ digest, reason, snapshots: users.get(digest) ?? [] }));
  }
  result.ok = failedSnapshots.size === 0 && result.snapshots.every((s) => s.state !== 'failed');
  // The last line of a task log says how it ended.
  const checked = result.snapshots.filter((s) => s.state !== 'skipped').length;
  const skipped = result.snapshots.length - checked;
  const scope = `${checked} snapshot(s)${skipped > 0 ? ` (${skipped} skipped: ${options.window ? `not due in the ${options.window.days}-day window` : 'verified recently'})` : ''}, ${result.chunksChecked} chunk(s), ${formatBytes(result.bytesChecked)}`;
  log(result.ok ? `verified ${scope}: all ok` : `verification FAILED: ${failedSnapshots.size} snapshot(s) affected, ${bad.size} bad chunk(s); checked ${scope}`);
  return result;
}
