import { IbsError, parseGroup, parseNamespace, parseSnapshot, validateKeepOptions, KEEP_RULES, type CryptKey, type KeepOptions } from '../core/index.ts';
import { collectGarbage, overdueInWindow, pruneGroup, readGcStatus, verifyDatastore, type GcResult, type PruneEntry, type VerifyResult } from '../datastore/index.ts';
import { formatBytes } from '../lib/index.ts';
import { withDatastore, type AppContext } from './context.ts';
import { listJobs } from './job-status.ts';
import { checkConcurrentSnapshots } from '../config/index.ts';

export async function verifyStore(
  ctx: AppContext,
  input: { store: string; ns?: string; snapshot?: string; ignoreVerified?: boolean; outdatedAfterDays?: number; window?: { days: number; share: number }; maxConcurrentSnapshots?: number; key?: CryptKey | undefined },
): Promise<VerifyResult> {
  const ns = parseNamespace(input.ns ?? '');
  const snapshot = input.snapshot !== undefined ? parseSnapshot(input.snapshot, ns) : undefined;
  if (input.outdatedAfterDays !== undefined && (!Number.isInteger(input.outdatedAfterDays) || input.outdatedAfterDays < 0)) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid --outdated-after ${input.outdatedAfterDays}: expected a whole number of days`);
  }
  checkConcurrentSnapshots(input.maxConcurrentSnapshots);
  return withDatastore(ctx, input.store, async (ds) => {
    await ds.assertNamespace(ns);
    return verifyDatastore(ds, {
      ns,
      ...(snapshot ? { snapshot } : {}),
      ignoreVerified: input.ignoreVerified ?? false,
      ...(input.outdatedAfterDays !== undefined ? { outdatedAfterDays: input.outdatedAfterDays } : {}),
      ...(input.window ? { window: input.window } : {}),
      ...(input.maxConcurrentSnapshots !== undefined ? { maxConcurrentSnapshots: input.maxConcurrentSnapshots } : {}),
      pool: ctx.chunkPool,
      key: input.key,
      signal: ctx.signal,
      onLog: (m) => ctx.reporter.info(m),
      onWarning: (m) => ctx.reporter.warn(m),
      onProgress: (e) => ctx.reporter.progress({ phase: `verify ${e.snapshot}`, done: e.chunksDone, total: e.chunksTotal, unit: 'items' }),
    });
  });
}

export async function pruneStore(ctx: AppContext, input: { store: string; ns?: string; group: string; keep: KeepOptions; dryRun?: boolean }): Promise<PruneEntry[]> {
  const ns = parseNamespace(input.ns ?? '');
  const group = parseGroup(input.group, ns);
  return withDatastore(ctx, input.store, async (ds, config) => {
    const keep = validateKeepOptions(Object.keys(input.keep).length > 0 ? input.keep : config.keep);
    if (!KEEP_RULES.some((r) => (keep[r] ?? 0) > 0)) {
      throw new IbsError('INVALID_ARGUMENT', 'No retention given: expected at least one of --keep-last/-hourly/-daily/-weekly/-monthly/-yearly (or keep-* settings on the datastore)');
    }
    await ds.assertNamespace(ns);
    return pruneGroup(ds, group, keep, { signal: ctx.signal, dryRun: input.dryRun ?? false });
  });
}

export async function gcStore(ctx: AppContext, input: { store: string; marginMinutes?: number }): Promise<GcResult> {
  if (input.marginMinutes !== undefined && !(input.marginMinutes >= 0 && input.marginMinutes <= 7 * 24 * 60)) {
    throw new IbsError('INVALID_ARGUMENT', `Invalid --margin-minutes ${input.marginMinutes}: expected 0 to 10080`);
  }
  return withDatastore(ctx, input.store, (ds) =>
    collectGarbage(ds, {
      signal: ctx.signal,
      ...(input.marginMinutes !== undefined ? { marginMs: input.marginMinutes * 60_000 } : {}),
      onLog: (m) => ctx.reporter.info(m),
      onWarning: (m) => ctx.reporter.warn(m),
      onProgress: (e) => ctx.reporter.progress({ phase: `gc ${e.phase}`, done: e.done, unit: 'items' }),
    }),
  );
}

/** One line on a GC run: what it removed, what waits for a later one, what it kept, the dedup factor. */
export function gcSummary(r: GcResult): string {
  return `removed ${r.removedChunks} chunk(s) (${formatBytes(r.removedBytes)}), ${r.pendingChunks} pending (${formatBytes(r.pendingBytes)}), kept ${r.keptChunks} (${formatBytes(r.keptBytes)}); dedup factor ${r.dedupFactor.toFixed(2)}`;
}

/** One line on a verification that found nothing wrong: snapshots verified and skipped, chunks and bytes read. */
export function verifySummary(r: VerifyResult): string {
  return `Verified ${r.snapshots.filter((s) => s.state === 'ok').length} snapshots (${r.snapshots.filter((s) => s.state === 'skipped').length} skipped): ${r.chunksChecked} chunks, ${formatBytes(r.bytesChecked)}, all ok`;
}

export async function gcStatus(ctx: AppContext, store: string): Promise<GcResult | undefined> {
  return withDatastore(ctx, store, (ds) => readGcStatus(ds));
}

export interface VerifyStatus {
  datastores: Array<{ store: string; snapshots: number; ok: number; failed: number; never: number; oldestVerified?: string; error?: string }>;
  jobs: Array<{ job: string; schedule: string; window?: string; overdue?: number; lastRun?: string; lastState?: string; nextRun?: string }>;
  /** Jobs with a verification window that snapshots have outgrown: what to do about it; each starts "verify/ID: ". */
  notes: string[];
}

/**
 * How verification stands: per datastore, snapshots by verify state and the oldest verification; verify jobs,
 * and for those with a window the snapshots in their scope not verified ok within it (overdue).
 */
export async function verifyStatus(ctx: AppContext): Promise<VerifyStatus> {
  const datastores: VerifyStatus['datastores'] = [];
  // A job that does not read is in the job list below, with its problem.
  const windowed = (await ctx.jobs.verify.listValid(() => {})).filter((j) => j.windowDays !== undefined);
  const overdue = new Map<string, number>();
  const now = Math.floor(Date.now() / 1000);
  for (const entry of await ctx.datastores.listChecked()) {
    try {
      if (entry.error) throw entry.error;
      datastores.push(
        await withDatastore(ctx, entry.name, async (ds) => {
          const snaps = await ds.listSnapshots({ ns: [], recursive: true }, { signal: ctx.signal });
          for (const j of windowed.filter((w) => w.store === entry.name)) {
            const ns = parseNamespace(j.ns);
            const inScope = snaps.filter((s) => ns.every((part, i) => s.ref.ns[i] === part));
            overdue.set(j.id, inScope.filter((s) => overdueInWindow(s, j.windowDays as number, now)).length);
          }
          const states = snaps.map((s) => s.manifest.unprotected.verifyState);
          const times = states.filter((v) => v?.state === 'ok').map((v) => v?.time as number);
          return {
            store: entry.name,
            snapshots: snaps.length,
            ok: states.filter((v) => v?.state === 'ok').length,
            failed: states.filter((v) => v?.state === 'failed').length,
            never: states.filter((v) => v === undefined).length,
            ...(times.length ? { oldestVerified: new Date(Math.min(...times) * 1000).toISOString() } : {}),
          };
        }),
      );
    } catch (error) {
      datastores.push({ store: entry.name, snapshots: 0, ok: 0, failed: 0, never: 0, error: (error as Error).message });
    }
  }
  const notes: string[] = [];
  const jobs = (await listJobs(ctx))
    .filter((j) => j.job.startsWith('verify/'))
    .map((j) => {
      const config = windowed.find((w) => `verify/${w.id}` === j.job);
      const late = config ? overdue.get(config.id) : undefined;
      // Before the job's first run everything may be overdue: that says nothing about the window yet.
      if (config && late && j.lastRun) {
        notes.push(
          `${j.job}: ${late} snapshot(s) of ${config.store}${config.ns ? `/${config.ns}` : ''} not verified within its ${config.windowDays}-day window: the datastore has outgrown it. Increase it (verify job update ${config.id} --verify-window-days N), run the job more often (--schedule) or with more snapshots at once (--max-concurrent-snapshots), or split the datastore into namespaces with a job each.`,
        );
      }
      return {
        job: j.job,
        schedule: j.schedule,
        ...(config ? { window: `${config.windowDays} days`, overdue: late ?? 0 } : {}),
        ...(j.lastRun ? { lastRun: j.lastRun } : {}),
        ...(j.lastState ? { lastState: j.lastState } : {}),
        ...(j.nextRun ? { nextRun: j.nextRun } : {}),
      };
    });
  return { datastores, jobs, notes };
}
