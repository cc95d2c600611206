/**
 * jobs: tasks (UPID, log file, index row, progress, abort), worker slots and, later, the scheduler and job
 * state. Invariants: every task ends with exactly one of TASK OK / TASK WARNINGS: n / TASK ERROR: msg as the
 * last line of its log and the same state in the index; a task left running by a process that died is
 * marked failed at the next start.
 */
export { formatUpid, parseUpid, escapeId, unescapeId, type Upid } from './upid.ts';
export { TaskStore, TASK_STATES, type TaskRecord, type TaskState, type TaskFilter } from './task-store.ts';
export { TaskManager, type TaskContext, type TaskSpec, type TaskManagerOptions } from './task-manager.ts';
export { JobStateStore, type JobState } from './job-state.ts';
export { Scheduler, summaryOf, type ScheduledJob, type JobStatus } from './scheduler.ts';
export { UploadLedger } from './upload-ledger.ts';
