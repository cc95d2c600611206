import { IbsError, decodeIndex, formatSnapshot, indexChunks, sha256Hex, toIbsError, type ErrorCode, type Manifest, type SnapshotRef } from '../core/index.ts';
import { RateMeter, WorkQueue, abortableSleep, mapConcurrent, throwIfAborted, type ProgressEvent, type TokenBucket } from '../lib/index.ts';
import { describeGroup } from './filters.ts';
import { mapNamespace, type GroupPlan, type SyncPlan, type SyncPolicy } from './planner.ts';
import type { SideSnapshot, SyncSource, SyncTarget } from './types.ts';
import type { SnapshotTransform } from './transform.ts';

export interface SyncOptions {
  signal?: AbortSignal | undefined;
  /** Shared by every group and connection of the job in this direction. */
  bucket?: TokenBucket | undefined;
  /** Groups synced in parallel (1..32). */
  workerThreads?: number;
  /** Recorded in each copy's verify state. */
  upid?: string | undefined;
  /** Recorded as each copy's sync origin ("remote primary-site, store ibs-primary"). */
  origin: string;
  /** How often a chunk that fails verification after arrival is sent again before the snapshot fails. */
  verifyRetries?: number;
  log(line: string): void;
  warn(line: string): void;
  progress?(event: ProgressEvent): void;
  /** A change of encryption for a snapshot (encrypt on push, decrypt on pull), or none. */
  transformFor?(snapshot: SideSnapshot): SnapshotTransform | undefined;
  /** Wire bytes as they pass, for the per-minute bandwidth series. */
  onBytes?(bytes: number): void;
  /**
   * `low` keeps the job's I/O light on shared disks and links: per group at most two chunk writes in flight and
   * 4 MiB queued (normal: 64 and 16 MiB, or what a remote target asks for), so other work on the same storage keeps its share.
   */
  ioWeight?: 'low' | 'normal';
}

export interface SyncReport {
  groups: number;
  copied: string[];
  removed: string[];
  skipped: Array<{ snapshot: string; reason: string }>;
  skippedGroups: string[];
  /** Groups that failed, each with its error's message and code. */
  failed: Array<{ group: string; error: string; code: ErrorCode }>;
  namespacesCreated: number;
  namespacesRemoved: number;
  chunksSent: number;
  chunksPresent: number;
  /** Bytes that crossed to the target: chunk blobs and snapshot files. */
  bytesSent: number;
  /** Logical size of what was copied (archive bytes). */
  bytesLogical: number;
  /** Chunks that failed verification on arrival and were sent again. */
  chunksResent: number;
  seconds: number;
}

/** Chunk writes in flight per group, and the bytes they may hold, by I/O weight. */
const INSERT_LIMITS = { normal: { writes: 64, bytes: 16 * 1024 * 1024 }, low: { writes: 2, bytes: 4 * 1024 * 1024 } } as const;
const SNAPSHOT_ATTEMPTS = 3;

/** Copies one snapshot: chunks the target lacks, a read-back verification of what arrived, files, manifest last. */
async function copySnapshot(
  source: SyncSource,
  targetSide: SyncTarget,
  snap: SideSnapshot,
  targetRef: SnapshotRef,
  owner: string,
  options: SyncOptions,
  report: SyncReport,
  advance: (logical: number) => void,
  log: (line: string) => void,
  amend = false,
): Promise<void> {
  const signal = options.signal;
  const name = formatSnapshot(snap.ref);
  const src = await source.open(snap.ref, { signal });
  try {
    let manifest = src.manifest;
    let files = new Map<string, Buffer>();
    const sizes = new Map<string, number>();
    // All files at once: from a server each read is a round trip.
    const contents = await Promise.all(manifest.files.map((f) => src.readFile(f.filename, { signal })));
    manifest.files.forEach((f, i) => {
      const data = contents[i] as Buffer;
      if (data.length !== f.size || sha256Hex(data) !== f.csum) throw new IbsError('CORRUPT', `${name}: file ${f.filename} does not match the size and checksum its manifest lists`);
      files.set(f.filename, data);
      if (/\.(didx|fidx)$/.test(f.filename)) for (const span of indexChunks(decodeIndex(data, `${f.filename} of ${name}`))) sizes.set(span.digest, span.end - span.start);
    });
    // With a change of encryption, chunks get new digests: learn them first (a read of every chunk), then
    // rewrite the indexes, so that what the target has is still asked by digest and never sent twice.
    const transform = options.transformFor?.(snap);
    const toTarget = new Map<string, string>();
    // Plaintext sizes bound the blobs: a source across a link sizes its requests by them.
    const fetching = { signal, sizeOf: (d: string) => sizes.get(d) };
    if (transform) {
      for await (const { digest, blob } of src.chunkBlobs([...sizes.keys()], fetching)) toTarget.set(digest, (await transform.chunk(digest, blob)).digest);
      ({ manifest, files } = await transform.files(manifest, files, toTarget));
      log(`${name}: ${transform.describe}`);
    }
    const target = (d: string): string => toTarget.get(d) ?? d;
    const digests = [...sizes.keys()];
    const targetDigests = digests.map(target);
    const tgt = await targetSide.begin(targetRef, { owner, keyFingerprint: transform ? transform.keyFingerprint : (manifest.keyFingerprint ?? null), amend, chunks: targetDigests }, { signal });
    try {
      const present = await tgt.present(targetDigests, { signal });
      let presentLogical = 0;
      for (const d of digests) if (present.has(target(d))) presentLogical += sizes.get(d) ?? 0;
      advance(presentLogical);
      report.chunksPresent += present.size;
      const missing = digests.filter((d) => !present.has(target(d)));
      let sent = 0;
      // Hands the chunks over; their writes may still be under way when it returns (finish waits for them).
      const transfer = async (list: readonly string[], resend: boolean): Promise<WorkQueue> => {
        const limits = INSERT_LIMITS[options.ioWeight ?? 'normal'];
        const window = options.ioWeight === 'low' ? limits.bytes : (tgt.window ?? limits.bytes);
        const queue = new WorkQueue(limits.writes, { maxWeight: window });
        for await (const fetched of src.chunkBlobs(list, fetching)) {
          throwIfAborted(signal);
          const { digest, blob } = transform ? await transform.chunk(fetched.digest, fetched.blob) : fetched;
          await options.bucket?.take(blob.length, signal);
          const length = blob.length;
          await queue.submit(async () => {
            await tgt.insertChunk(digest, blob);
            report.bytesSent += length;
            options.onBytes?.(length);
            if (resend) report.chunksResent++;
            else {
              report.chunksSent++;
              sent += length;
              advance(sizes.get(fetched.digest) ?? 0);
            }
          }, length);
        }
        return queue;
      };
      const now = Math.floor(Date.now() / 1000);
      const { verifyState: _sourceState, ...rest } = manifest.unprotected;
      const copy: Manifest = { ...manifest, unprotected: { ...rest, verifyState: { state: 'ok', time: now, ...(options.upid ? { upid: options.upid } : {}) }, syncOrigin: { source: options.origin, time: now } } };
      const fileList = manifest.files.map((file) => ({ file, data: files.get(file.filename) as Buffer }));
      const fileBytes = fileList.reduce((n, f) => n + f.data.length, 0);
      // The end of the snapshot goes out right behind its last chunks (over a link: no round trip spent waiting
      // for their answers): the target checks what arrived, then stores the files and the manifest, last. Chunks
      // that fail the check are sent again, a few times. A write that fails meanwhile (or whose answer was lost
      // though it arrived) ends the upload: the abort waits for an end under way on the target, which then
      // either committed, because every write it waited for did arrive (a batch sent again after that is only
      // refused), or did not, and the failure stands.
      const finishAfter = async (queue: WorkQueue): Promise<string[]> => {
        const finishing = tgt.finish(fileList, copy);
        finishing.catch(() => {});
        try {
          await queue.drain();
        } catch (error) {
          await tgt.abort().catch(() => {});
          if ((await finishing.catch(() => undefined))?.length === 0) return [];
          throw error;
        }
        return finishing;
      };
      let queue = await transfer(missing, false);
      const retries = options.verifyRetries ?? 3;
      for (let attempt = 0; ; attempt++) {
        await options.bucket?.take(fileBytes, signal);
        const bad = await finishAfter(queue);
        report.bytesSent += fileBytes;
        options.onBytes?.(fileBytes);
        if (bad.length === 0) break;
        if (attempt >= retries) throw new IbsError('VERIFY_FAILED', `${name}: ${bad.length} chunk(s) still failed verification on the target after ${retries} re-sends (first: ${bad[0]})`);
        log(`${name}: ${bad.length} chunk(s) failed verification on arrival; sending them again (attempt ${attempt + 1} of ${retries})`);
        const back = new Map(digests.map((d) => [target(d), d]));
        queue = await transfer(bad.map((d) => back.get(d) ?? d), true);
      }
      log(`${name}: copied ${missing.length} new chunk(s) (${sent} bytes), ${present.size} already on the target; verified on arrival`);
    } catch (error) {
      await tgt.abort().catch(() => {});
      throw error;
    }
  } finally {
    await src.close().catch(() => {});
  }
}

/**
 * Carries out a plan: namespaces first, then each group (several in parallel with workerThreads), each
 * snapshot oldest first with its manifest written last, then removals. A failing group is recorded and the
 * others go on; the caller turns `failed` into the task's error.
 */
export async function runSync(source: SyncSource, target: SyncTarget, plan: SyncPlan, policy: SyncPolicy, options: SyncOptions): Promise<SyncReport> {
  const started = performance.now();
  const report: SyncReport = {
    groups: plan.groups.length,
    copied: [],
    removed: [],
    skipped: [],
    skippedGroups: [],
    failed: [],
    namespacesCreated: 0,
    namespacesRemoved: 0,
    chunksSent: 0,
    chunksPresent: 0,
    bytesSent: 0,
    bytesLogical: 0,
    chunksResent: 0,
    seconds: 0,
  };
  const signal = options.signal;
  const total = plan.groups.reduce((n, g) => n + g.copy.reduce((m, c) => m + c.snapshot.manifest.files.reduce((k, f) => k + (f.archiveSize ?? 0), 0), 0), 0);
  const meter = new RateMeter();
  let done = 0;
  let lastProgress = 0;
  const advance = (logical: number): void => {
    done += logical;
    report.bytesLogical += logical;
    const now = performance.now();
    if (options.progress && now - lastProgress > 250) {
      lastProgress = now;
      meter.update(done);
      options.progress({ phase: 'sync', done, total, unit: 'bytes' });
    }
  };

  for (const ns of plan.createNamespaces) {
    await target.createNamespace(ns, { signal });
    report.namespacesCreated++;
  }

  const syncGroup = async (g: GroupPlan): Promise<void> => {
    const prefix = `[${describeGroup(g.source)}]`;
    const lines: Array<{ warn: boolean; text: string }> = [];
    const log = (text: string): void => void lines.push({ warn: false, text: `${prefix} ${text}` });
    const warn = (text: string): void => void lines.push({ warn: true, text: `${prefix} ${text}` });
    try {
      if (g.skipped) {
        warn(`skipped: ${g.skipped}`);
        report.skippedGroups.push(describeGroup(g.source));
        return;
      }
      for (const s of g.skip) report.skipped.push(s);
      const notable = g.skip.filter((s) => s.reason !== 'already present');
      if (notable.length > 0) log(`skipped ${notable.length}: ${notable.map((s) => `${s.snapshot} (${s.reason})`).join(', ')}`);
      for (const c of g.copy) {
        throwIfAborted(signal);
        const targetRef: SnapshotRef = { ...c.snapshot.ref, ns: mapNamespace(c.snapshot.ref.ns, policy.sourceNs, policy.targetNs) };
        // A copy whose source gained files (a client log), or that failed verification, is amended: it stays
        // as it was until the new manifest replaces it, and only chunks found stored on the target are not sent
        // again (verify moved damaged ones aside). A copy whose files differ, or that does not read, is
        // forgotten first.
        let amend = c.resync === 'changed on the source since it was copied' || c.resync === 'failed verification';
        if (c.resync) log(`${formatSnapshot(targetRef)}: copy on the target ${c.resync}; syncing it again${amend ? ' (the copy stays until the new one is complete)' : ''}`);
        if (c.resync && !amend) await target.forget(targetRef, { signal });
        // A lost connection or session (the peer restarted) is retried on a fresh session: chunks that
        // arrived are not sent again.
        for (let attempt = 1; ; attempt++) {
          try {
            await copySnapshot(source, target, c.snapshot, targetRef, policy.owner, options, report, advance, log, amend);
            break;
          } catch (error) {
            const e = toIbsError(error);
            if (amend && e.code === 'EXISTS') {
              // A file of the copy changed on the source, not only files added: replace the copy whole.
              log(`${formatSnapshot(targetRef)}: ${e.message}; replacing the copy`);
              await target.forget(targetRef, { signal });
              amend = false;
              continue;
            }
            const transient = e.code === 'UNAVAILABLE' || (e.code === 'NOT_FOUND' && /No (backup|reader) session/.test(e.message));
            if (!transient || attempt >= SNAPSHOT_ATTEMPTS) throw error;
            log(`${formatSnapshot(targetRef)}: ${e.message}; trying again (attempt ${attempt + 1} of ${SNAPSHOT_ATTEMPTS})`);
            await abortableSleep(2000 * attempt, signal);
          }
        }
        report.copied.push(formatSnapshot(targetRef));
      }
      if (g.refreshNotes) await target.setNotes(g.refreshNotes.ref, g.refreshNotes.notes, { signal });
      for (const ref of g.remove) {
        await target.forget(ref, { signal });
        report.removed.push(formatSnapshot(ref));
        log(`${formatSnapshot(ref)}: removed (vanished from the source)`);
      }
      if (g.removeGroup) await target.removeGroup(g.target, { signal });
      // The rest of the group went over; a snapshot that does not read on either side fails it, so that
      // someone looks.
      const unreadable = g.skip.filter((s) => s.reason === 'unreadable on the source' || s.reason === 'unreadable on the target');
      if (unreadable.length > 0) throw new IbsError('CORRUPT', unreadable.map((s) => s.detail ?? s.snapshot).join('; '));
    } catch (error) {
      const e = toIbsError(error);
      if (e.code === 'ABORTED') throw e;
      // A sync writes to its target alone: a full disk is the target's, which the storage's message (a key
      // such as ".chunks/…") does not say.
      const message = e.code === 'NO_SPACE' ? `${target.label} is full: ${e.message}` : e.message;
      report.failed.push({ group: describeGroup(g.source), error: message, code: e.code });
      warn(`failed: ${message}`);
    } finally {
      // A group's lines stay together even when groups run in parallel.
      for (const l of lines) (l.warn ? options.warn : options.log)(l.text);
    }
  };
  await mapConcurrent(plan.groups, Math.max(1, Math.min(32, options.workerThreads ?? 1)), syncGroup);

  for (const ns of plan.removeNamespaces) {
    try {
      await target.removeNamespace(ns, { signal });
      report.namespacesRemoved++;
    } catch (error) {
      options.log(`namespace ${ns.join('/')} not removed: ${toIbsError(error).message}`);
    }
  }
  report.seconds = (performance.now() - started) / 1000;
  options.progress?.({ phase: 'sync', done, total: Math.max(total, done), unit: 'bytes' });
  return report;
}
