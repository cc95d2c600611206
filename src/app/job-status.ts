import { JobStateStore, type JobState } from '../jobs/index.ts';
import { nextCalendarEvent, parseCalendarEvent } from '../core/index.ts';
import type { AppContext } from './context.ts';
import { scheduledJobs } from './jobs.ts';

export interface JobRow {
  job: string;
  schedule: string;
  lastRun?: string;
  lastState?: string;
  lastStatus?: string;
  lastUpid?: string;
  /** What the last run that ended well did, when its job says so (a sync). */
  lastSummary?: string;
  nextRun?: string;
  /** The job's stored settings do not check (edited by hand): what, and how to correct it. The scheduler skips it. */
  problem?: string;
}

/** A job's last run as listed (time, result, status, UPID, summary), from its recorded state. */
export function lastRunOf(s: JobState): Pick<JobRow, 'lastRun' | 'lastState' | 'lastStatus' | 'lastUpid' | 'lastSummary'> {
  return {
    ...(s.lastStart !== undefined ? { lastRun: new Date(s.lastStart).toISOString() } : {}),
    ...(s.lastState ? { lastState: s.lastState } : {}),
    ...(s.lastStatus ? { lastStatus: s.lastStatus } : {}),
    ...(s.lastUpid ? { lastUpid: s.lastUpid } : {}),
    ...(s.lastSummary ? { lastSummary: s.lastSummary } : {}),
  };
}

/**
 * Every scheduled job with its last run (time, result, UPID) and next run, as the scheduler sees them; one whose
 * settings do not check is listed with `problem` (the others are listed as usual).
 */
export async function listJobs(ctx: AppContext): Promise<JobRow[]> {
  const state = new JobStateStore(ctx.paths.stateDir);
  try {
    const now = Date.now();
    const invalid: JobRow[] = [];
    const jobs = await scheduledJobs(ctx, (job, error) => invalid.push({ job, schedule: '', problem: error.message }));
    const rows = jobs.map((job): JobRow => {
      const s = state.get(job.id, now);
      const next = job.schedule === '' ? undefined : nextCalendarEvent(parseCalendarEvent(job.schedule), s.lastStart ?? s.firstSeen);
      return { job: job.id, schedule: job.schedule, ...lastRunOf(s), ...(next !== undefined ? { nextRun: new Date(next).toISOString() } : {}) };
    });
    return [...rows, ...invalid];
  } finally {
    state.close();
  }
}
