import { JobStateStore } from '../jobs/index.ts';
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
  nextRun?: string;
}

/** Every scheduled job with its last run (time, result, UPID) and next run, as the scheduler sees them. */
export async function listJobs(ctx: AppContext): Promise<JobRow[]> {
  const state = new JobStateStore(ctx.paths.stateDir);
  try {
    const now = Date.now();
    return (await scheduledJobs(ctx)).map((job) => {
      const s = state.get(job.id, now);
      const next = job.schedule === '' ? undefined : nextCalendarEvent(parseCalendarEvent(job.schedule), s.lastStart ?? s.firstSeen);
      return {
        job: job.id,
        schedule: job.schedule,
        ...(s.lastStart !== undefined ? { lastRun: new Date(s.lastStart).toISOString() } : {}),
        ...(s.lastState ? { lastState: s.lastState } : {}),
        ...(s.lastStatus ? { lastStatus: s.lastStatus } : {}),
        ...(s.lastUpid ? { lastUpid: s.lastUpid } : {}),
        ...(next !== undefined ? { nextRun: new Date(next).toISOString() } : {}),
      };
    });
  } finally {
    state.close();
  }
}
