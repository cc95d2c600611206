import { IbsError, nextCalendarEvent, parseCalendarEvent, toIbsError } from '../core/index.ts';
import type { TaskContext, TaskManager } from './task-manager.ts';
import type { JobState, JobStateStore } from './job-state.ts';

export interface ScheduledJob {
  /** Unique over all kinds: "verify/weekly-check", "gc/store1", "sync/backup-site". */
  id: string;
  schedule: string;
  /** Task type of its runs. */
  type: string;
  /** What the task works on (shown in task lists). */
  target: string;
  authId: string;
  /** When its results are notified: always (default), only on error, or never. */
  notify?: 'always' | 'error' | 'never';
  run(task: TaskContext): Promise<unknown>;
}

export interface JobStatus extends JobState {
  schedule: string;
  /** Milliseconds since the epoch, or undefined when the schedule never elapses again. */
  nextRun?: number;
}

/** The one-line summary of a job's result, when it has one (`summary`, a string). */
export function summaryOf(result: unknown): string | undefined {
  const summary = typeof result === 'object' && result !== null ? (result as { summary?: unknown }).summary : undefined;
  return typeof summary === 'string' ? summary : undefined;
}

/**
 * Runs scheduled jobs as tasks. Each tick (every minute, on the minute) compares each job's next calendar
 * time, computed from its last start (or from when it was first seen), with now: due jobs start. Times come
 * from stored state, so nothing is lost on restart, and a run missed while the server was down fires once
 * (the next time after the last start is in the past; after it ran, it is in the future again). A job whose
 * previous run is still going is not started again.
 */
export class Scheduler {
  readonly #tasks: TaskManager;
  readonly #state: JobStateStore;
  readonly #jobs: () => Promise<ScheduledJob[]>;
  readonly #now: () => number;
  readonly #log: (msg: string, fields?: Record<string, unknown>) => void;
  readonly #running = new Map<string, Promise<unknown>>();
  readonly #byUpid = new Map<string, ScheduledJob>();
  /**
   * Per job, when this scheduler started it and when it first saw it: what the job state store holds, kept
   * here too, so that a store that cannot be written (its disk full) neither stops the jobs nor has them
   * start again every minute.
   */
  readonly #startedAt = new Map<string, number>();
  readonly #seenAt = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: { tasks: TaskManager; state: JobStateStore; jobs: () => Promise<ScheduledJob[]>; now?: () => number; log?: (msg: string, fields?: Record<string, unknown>) => void }) {
    this.#tasks = options.tasks;
    this.#state = options.state;
    this.#jobs = options.jobs;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => {});
  }

  /** A job's state from the store, or from memory when the store fails (logged); the later start wins. */
  #stateOf(jobId: string, now: number): JobState {
    let state: JobState;
    try {
      state = this.#state.get(jobId, now);
    } catch (error) {
      this.#log('job state cannot be read or recorded', { job: jobId, error: toIbsError(error).message });
      if (!this.#seenAt.has(jobId)) this.#seenAt.set(jobId, now);
      state = { jobId, firstSeen: this.#seenAt.get(jobId) as number };
    }
    const started = this.#startedAt.get(jobId);
    return started !== undefined && !(state.lastStart !== undefined && state.lastStart >= started) ? { ...state, lastStart: started } : state;
  }

  /** Records something of a job's run in the store; one it cannot take is logged (the run goes on). */
  #note(jobId: string, record: () => void): void {
    try {
      record();
    } catch (error) {
      this.#log('job state cannot be recorded', { job: jobId, error: toIbsError(error).message });
    }
  }

  #next(job: ScheduledJob, state: JobState): number | undefined {
    if (job.schedule === '') return undefined; // run by hand only
    return nextCalendarEvent(parseCalendarEvent(job.schedule), state.lastStart ?? state.firstSeen);
  }

  /** One pass: starts every due job that is not running; returns the ids of the jobs started. */
  async tick(): Promise<string[]> {
    const now = this.#now();
    const started: string[] = [];
    let jobs: ScheduledJob[];
    try {
      jobs = await this.#jobs();
    } catch (error) {
      this.#log('cannot read job configuration', { error: toIbsError(error).message });
      return started;
    }
    for (const job of jobs) {
      let next: number | undefined;
      let state: JobState;
      try {
        state = this.#stateOf(job.id, now);
        next = this.#next(job, state);
      } catch (error) {
        this.#log('job skipped: bad schedule', { job: job.id, error: toIbsError(error).message });
        continue;
      }
      if (next === undefined || next > now) continue;
      if (this.#running.has(job.id)) {
        this.#log('job still running; not started again', { job: job.id });
        continue;
      }
      try {
        this.#start(job, now);
      } catch (error) {
        // No task could be made (its index full): tried again at the next tick.
        this.#log('job not started', { job: job.id, error: toIbsError(error).message });
        continue;
      }
      started.push(job.id);
    }
    return started;
  }

  #start(job: ScheduledJob, now: number): string {
    // What a run that ends well did, when its result says so in one line (a sync's `summary`).
    let summary: string | undefined;
    const { upid, done } = this.#tasks.spawn({ type: job.type, id: job.target, authId: job.authId }, async (task) => {
      const result = await job.run(task);
      summary = summaryOf(result);
      return result;
    });
    this.#startedAt.set(job.id, now);
    this.#note(job.id, () => this.#state.started(job.id, now, upid));
    this.#byUpid.set(upid, job);
    this.#log('job started', { job: job.id, task: upid });
    const finished = done.then((record) => {
      this.#note(job.id, () => this.#state.finished(job.id, this.#now(), record.state, record.status ?? '', summary));
      this.#running.delete(job.id);
      this.#byUpid.delete(upid);
    });
    this.#running.set(job.id, finished);
    return upid;
  }

  /** Starts a configured job now, whatever its schedule (BUSY when it is running); returns the task's UPID. */
  async runNow(jobId: string): Promise<string> {
    const job = (await this.#jobs()).find((j) => j.id === jobId);
    if (!job) throw new IbsError('NOT_FOUND', `Job "${jobId}" does not exist`);
    if (this.#running.has(job.id)) throw new IbsError('BUSY', `Job "${jobId}" is running already`);
    const now = this.#now();
    this.#stateOf(job.id, now);
    return this.#start(job, now);
  }

  /** The job a running task belongs to, if the scheduler started it. */
  jobFor(upid: string): ScheduledJob | undefined {
    return this.#byUpid.get(upid);
  }

  /** Status of every configured job: last run and next run. */
  async status(): Promise<JobStatus[]> {
    const now = this.#now();
    return (await this.#jobs()).map((job) => {
      const state = this.#stateOf(job.id, now);
      let nextRun: number | undefined;
      try {
        nextRun = this.#next(job, state);
      } catch {
        nextRun = undefined;
      }
      return { ...state, schedule: job.schedule, ...(nextRun !== undefined ? { nextRun } : {}) };
    });
  }

  /** Ticks now and then at the start of every minute. */
  start(): void {
    const loop = (): void => {
      void this.tick();
      const now = this.#now();
      this.#timer = setTimeout(loop, 60_000 - (now % 60_000) + 50);
      this.#timer.unref();
    };
    loop();
  }

  /** Stops ticking and waits for the runs it started. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    await Promise.all(this.#running.values());
  }
}
