import { IbsError, formatGroup, parseNamespace, type KeepOptions } from '../core/index.ts';
import type { PruneJobConfig, VerifyJobConfig } from '../config/index.ts';
import { pruneGroup } from '../datastore/index.ts';
import type { ScheduledJob } from '../jobs/index.ts';
import type { AppContext } from './context.ts';
import { withDatastore } from './context.ts';
import { gcStore, verifyStore } from './maintenance.ts';
import { taskReporter } from './task-reporter.ts';
import { bandwidthRecorder, runSyncJob } from './sync.ts';

export async function createVerifyJob(ctx: AppContext, input: { id: string; store: string; ns?: string; schedule: string; ignoreVerified?: boolean; outdatedAfterDays?: number; maxConcurrentSnapshots?: number; notificationMode?: 'always' | 'error' | 'never'; comment?: string }): Promise<VerifyJobConfig> {
  await ctx.datastores.get(input.store);
  return ctx.jobs.verify.add({ id: input.id, store: input.store, ns: input.ns ?? '', schedule: input.schedule, ignoreVerified: input.ignoreVerified ?? false, ...(input.outdatedAfterDays !== undefined ? { outdatedAfterDays: input.outdatedAfterDays } : {}), ...(input.maxConcurrentSnapshots !== undefined ? { maxConcurrentSnapshots: input.maxConcurrentSnapshots } : {}), ...(input.notificationMode ? { notificationMode: input.notificationMode } : {}), ...(input.comment ? { comment: input.comment } : {}) });
}

export async function createPruneJob(ctx: AppContext, input: { id: string; store: string; ns?: string; schedule: string; keep: KeepOptions; comment?: string }): Promise<PruneJobConfig> {
  await ctx.datastores.get(input.store);
  return ctx.jobs.prune.add({ id: input.id, store: input.store, ns: input.ns ?? '', schedule: input.schedule, keep: input.keep, ...(input.comment ? { comment: input.comment } : {}) });
}

/** Every scheduled job of the configuration: verify jobs, prune jobs, and GC schedules of datastores. */
export async function scheduledJobs(ctx: AppContext): Promise<ScheduledJob[]> {
  const withTask = (task: Parameters<ScheduledJob['run']>[0]): AppContext => ({ ...ctx, reporter: taskReporter(task), signal: task.signal });
  const jobs: ScheduledJob[] = [];
  for (const j of await ctx.jobs.verify.list()) {
    jobs.push({
      id: `verify/${j.id}`,
      schedule: j.schedule,
      type: 'verificationjob',
      target: j.store,
      authId: 'root@pam',
      ...(j.notificationMode ? { notify: j.notificationMode } : {}),
      run: async (task) => {
        const r = await verifyStore(withTask(task), { store: j.store, ns: j.ns, ignoreVerified: j.ignoreVerified, ...(j.outdatedAfterDays !== undefined ? { outdatedAfterDays: j.outdatedAfterDays } : {}), ...(j.maxConcurrentSnapshots !== undefined ? { maxConcurrentSnapshots: j.maxConcurrentSnapshots } : {}) });
        if (!r.ok) throw new IbsError('VERIFY_FAILED', `verification failed for ${r.snapshots.filter((s) => s.state === 'failed').map((s) => s.snapshot).join(', ')}`);
        return r;
      },
    });
  }
  for (const j of await ctx.jobs.prune.list()) {
    jobs.push({
      id: `prune/${j.id}`,
      schedule: j.schedule,
      type: 'prunejob',
      target: j.store,
      authId: 'root@pam',
      run: async (task) =>
        withDatastore(withTask(task), j.store, async (ds) => {
          const ns = parseNamespace(j.ns);
          for (const g of await ds.listGroups(ns)) {
            const result = await pruneGroup(ds, g.group, j.keep, { signal: task.signal });
            const removed = result.filter((e) => e.mark.action === 'remove' && !e.error);
            task.log(`${formatGroup(g.group)}: kept ${result.length - removed.length}, removed ${removed.length}`);
            for (const e of result) if (e.error) task.warn(`${e.snapshot}: ${e.error}`);
          }
        }),
    });
  }
  for (const j of await ctx.jobs.sync.list()) {
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
  for (const d of await ctx.datastores.list()) {
    if (!d.gcSchedule) continue;
    jobs.push({ id: `gc/${d.name}`, schedule: d.gcSchedule, type: 'garbage_collection', target: d.name, authId: 'root@pam', run: (task) => gcStore(withTask(task), { store: d.name }) });
  }
  return jobs;
}
