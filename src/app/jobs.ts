import { IbsError, KEEP_RULES, formatGroup, nextCalendarEvent, parseCalendarEvent, parseNamespace, type KeepOptions } from '../core/index.ts';
import type { PruneJobConfig, VerifyJobConfig } from '../config/index.ts';
import { pruneGroup, type VerifyResult } from '../datastore/index.ts';
import type { ScheduledJob } from '../jobs/index.ts';
import type { AppContext } from './context.ts';
import { withDatastore } from './context.ts';
import { gcStore, gcSummary, verifySummary, verifyStore } from './maintenance.ts';
import { taskReporter } from './task-reporter.ts';
import { bandwidthRecorder, runSyncJob } from './sync.ts';

export interface VerifyJobInput {
  id: string;
  store: string;
  ns?: string;
  schedule: string;
  ignoreVerified?: boolean;
  outdatedAfterDays?: number;
  windowDays?: number;
  maxConcurrentSnapshots?: number;
  notificationMode?: 'always' | 'error' | 'never';
  comment?: string;
}

export async function createVerifyJob(ctx: AppContext, input: VerifyJobInput): Promise<VerifyJobConfig> {
  await ctx.datastores.get(input.store);
  return ctx.jobs.verify.add({
    id: input.id,
    store: input.store,
    ns: input.ns ?? '',
    schedule: input.schedule,
    ignoreVerified: input.ignoreVerified ?? false,
    ...(input.outdatedAfterDays !== undefined ? { outdatedAfterDays: input.outdatedAfterDays } : {}),
    ...(input.windowDays !== undefined ? { windowDays: input.windowDays } : {}),
    ...(input.maxConcurrentSnapshots !== undefined ? { maxConcurrentSnapshots: input.maxConcurrentSnapshots } : {}),
    ...(input.notificationMode ? { notificationMode: input.notificationMode } : {}),
    ...(input.comment ? { comment: input.comment } : {}),
  });
}

/** Settings "verify job update --delete" removes: ignore-verified turns off, notification-mode goes back to always. */
export const VERIFY_JOB_DELETABLE = ['verify-window-days', 'ignore-verified', 'outdated-after', 'max-concurrent-snapshots', 'notification-mode', 'comment'] as const;
export type VerifyJobDeletable = (typeof VERIFY_JOB_DELETABLE)[number];

const DELETABLE_FIELD = { 'verify-window-days': 'windowDays', 'outdated-after': 'outdatedAfterDays', 'max-concurrent-snapshots': 'maxConcurrentSnapshots', 'notification-mode': 'notificationMode', comment: 'comment' } as const;

/**
 * Changes a verify job: `delete` removes settings first, then given values replace the stored ones; the rest
 * stay. Checked whole before it is written.
 */
export async function updateVerifyJob(
  ctx: AppContext,
  id: string,
  change: Partial<Omit<VerifyJobInput, 'id' | 'store' | 'ns'>> & { delete?: readonly VerifyJobDeletable[] },
): Promise<VerifyJobConfig> {
  const { delete: deleted = [], ...values } = change;
  return ctx.jobs.verify.update(id, (job) => {
    const next: VerifyJobConfig = { ...job };
    // A window replaces ignore-verified and outdated-after: setting one clears them unless they are given too.
    if (values.windowDays !== undefined && values.ignoreVerified === undefined && values.outdatedAfterDays === undefined) {
      next.ignoreVerified = false;
      delete next.outdatedAfterDays;
    }
    for (const name of deleted) {
      if (name === 'ignore-verified') next.ignoreVerified = false;
      else delete next[DELETABLE_FIELD[name]];
    }
    return { ...next, ...Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) };
  });
}

/** The part of a verification window of `days` one run of `schedule` stands for: 1 / its runs in the window. */
export function windowShare(schedule: string, days: number, from = Date.now()): number {
  const event = parseCalendarEvent(schedule);
  const end = from + days * 86_400_000;
  let runs = 0;
  for (let t: number | undefined = nextCalendarEvent(event, from); t !== undefined && t <= end && runs < 10_000; t = nextCalendarEvent(event, t)) runs++;
  return 1 / Math.max(1, runs);
}

/**
 * One run of a verify job, as the scheduler starts it and as "verify job run" does; its summary line goes to
 * the log (and is kept with the job's state).
 */
export async function runVerifyJob(ctx: AppContext, job: VerifyJobConfig): Promise<VerifyResult & { summary: string }> {
  const window = job.windowDays !== undefined ? { days: job.windowDays, share: windowShare(job.schedule, job.windowDays) } : undefined;
  const r = await verifyStore(ctx, {
    store: job.store,
    ns: job.ns,
    ignoreVerified: job.ignoreVerified,
    ...(job.outdatedAfterDays !== undefined ? { outdatedAfterDays: job.outdatedAfterDays } : {}),
    ...(window ? { window } : {}),
    ...(job.maxConcurrentSnapshots !== undefined ? { maxConcurrentSnapshots: job.maxConcurrentSnapshots } : {}),
  });
  const verified = r.snapshots.filter((s) => s.state !== 'skipped').length;
  if (window) {
    ctx.reporter.info(`window of ${window.days} day(s), ${Math.round(1 / window.share)} run(s) in it: verified ${verified} of ${r.snapshots.length} snapshot(s): those due, then the longest unverified, for an even share per run`);
  }
  if (!r.ok) throw new IbsError('VERIFY_FAILED', `verification failed for ${r.snapshots.filter((s) => s.state === 'failed').map((s) => s.snapshot).join(', ')}`);
  const summary = verifySummary(r);
  ctx.reporter.info(`summary: ${summary}`);
  return { ...r, summary };
}

/** A job as listed: checked, or as stored with `problem` naming what does not check and how to correct it. */
export type ListedJob<T> = T & { problem?: string };

/**
 * Jobs as listed: one that does not check shows its settings as stored, without those that did not read (NaN;
 * its problem names them), and the problem.
 */
export function listed<T extends object>(entries: Array<{ job: T; error?: IbsError }>): Array<ListedJob<T>> {
  const readable = (o: object): object => Object.fromEntries(Object.entries(o).filter(([, v]) => !Number.isNaN(v)).map(([k, v]) => [k, typeof v === 'object' && v !== null && !Array.isArray(v) ? readable(v) : v]));
  return entries.map(({ job, error }): ListedJob<T> => (error ? { ...(readable(job) as T), problem: error.message } : (job as ListedJob<T>)));
}

/** The verify jobs; one whose stored settings do not check is listed with `problem` (the scheduler skips it). */
export async function listVerifyJobs(ctx: AppContext): Promise<Array<ListedJob<VerifyJobConfig>>> {
  return listed(await ctx.jobs.verify.listChecked());
}

/** The prune jobs; one whose stored settings do not check is listed with `problem` (the scheduler skips it). */
export async function listPruneJobs(ctx: AppContext): Promise<Array<ListedJob<PruneJobConfig>>> {
  return listed(await ctx.jobs.prune.listChecked());
}

export async function createPruneJob(ctx: AppContext, input: { id: string; store: string; ns?: string; schedule: string; keep: KeepOptions; comment?: string }): Promise<PruneJobConfig> {
  await ctx.datastores.get(input.store);
  return ctx.jobs.prune.add({ id: input.id, store: input.store, ns: input.ns ?? '', schedule: input.schedule, keep: input.keep, ...(input.comment ? { comment: input.comment } : {}) });
}

/**
 * Every scheduled job of the configuration: verify jobs, prune jobs, and GC schedules of datastores. A job (or
 * datastore) whose stored settings do not check is reported to `onInvalid` (CORRUPT, named) and left out, so
 * that the others still run.
 */
export async function scheduledJobs(ctx: AppContext, onInvalid: (job: string, error: IbsError) => void): Promise<ScheduledJob[]> {
  const read = <T>(kind: string, file: { listValid(report: (id: string, error: IbsError) => void): Promise<T[]> }): Promise<T[]> => file.listValid((id, error) => onInvalid(`${kind}/${id}`, error));
  const withTask = (task: Parameters<ScheduledJob['run']>[0]): AppContext => ({ ...ctx, reporter: taskReporter(task), signal: task.signal });
  const jobs: ScheduledJob[] = [];
  for (const j of await read('verify', ctx.jobs.verify)) {
    jobs.push({
      id: `verify/${j.id}`,
      schedule: j.schedule,
      type: 'verificationjob',
      target: j.store,
      authId: 'root@pam',
      ...(j.notificationMode ? { notify: j.notificationMode } : {}),
      run: (task) => runVerifyJob(withTask(task), j),
    });
  }
  for (const j of await read('prune', ctx.jobs.prune)) {
    jobs.push({
      id: `prune/${j.id}`,
      schedule: j.schedule,
      type: 'prunejob',
      target: j.store,
      authId: 'root@pam',
      run: async (task) =>
        withDatastore(withTask(task), j.store, async (ds) => {
          const ns = parseNamespace(j.ns);
          const groups = await ds.listGroups(ns);
          let kept = 0;
          let pruned = 0;
          for (const g of groups) {
            const result = await pruneGroup(ds, g.group, j.keep, { signal: task.signal });
            const removed = result.filter((e) => e.mark.action === 'remove' && !e.error);
            task.log(`${formatGroup(g.group)}: kept ${result.length - removed.length}, removed ${removed.length}`);
            for (const e of result) if (e.error) task.warn(`${e.snapshot}: ${e.error}`);
            kept += result.length - removed.length;
            pruned += removed.length;
          }
          return { summary: `${groups.length} group(s): kept ${kept} snapshot(s), removed ${pruned}` };
        }),
    });
  }
  for (const j of await read('sync', ctx.jobs.sync)) {
    jobs.push({
      id: `sync/${j.id}`,
      schedule: j.schedule ?? '',
      type: 'syncjob',
      target: j.id,
      authId: 'root@pam',
      run: async (task) => {
        const recorder = bandwidthRecorder(ctx, j.id);
        try {
          return await runSyncJob(withTask(task), { id: j.id, upid: task.upid, onBytes: recorder.add });
        } finally {
          recorder.close();
        }
      },
    });
  }
  for (const d of await read('gc', ctx.datastores)) {
    if (!d.gcSchedule) continue;
    jobs.push({
      id: `gc/${d.name}`,
      schedule: d.gcSchedule,
      type: 'garbage_collection',
      target: d.name,
      authId: 'root@pam',
      run: async (task) => {
        const r = await gcStore(withTask(task), { store: d.name });
        return { ...r, summary: gcSummary(r) };
      },
    });
  }
  return jobs;
}

/** Settings "prune job update --delete" removes: a retention rule, or the comment. */
export const PRUNE_JOB_DELETABLE = [...KEEP_RULES, 'comment'] as const;
export type PruneJobDeletable = (typeof PRUNE_JOB_DELETABLE)[number];

/**
 * Changes a prune job: `delete` removes retention rules or the comment first, then given values replace the
 * stored ones; the rest stay. Checked whole (at least one rule) before it is written.
 */
export async function updatePruneJob(ctx: AppContext, id: string, change: { schedule?: string; keep?: KeepOptions; comment?: string; delete?: readonly PruneJobDeletable[] }): Promise<PruneJobConfig> {
  const { delete: deleted = [], keep = {}, ...values } = change;
  return ctx.jobs.prune.update(id, (job) => {
    const next: PruneJobConfig = { ...job, keep: { ...job.keep } };
    for (const name of deleted) {
      if (name === 'comment') delete next.comment;
      else delete next.keep[name];
    }
    return { ...next, ...Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)), keep: { ...next.keep, ...keep } };
  });
}
