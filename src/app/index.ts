/**
 * app: one function per operation. Each validates its input (names, numbers, paths) before touching anything
 * and works through the context it is given (config, backends, reporter, abort signal). The CLI and, later,
 * the API are thin layers over these functions.
 */
export { configStores, type AppContext } from './context.ts';
export * from './datastores.ts';
export * from './snapshots.ts';
export * from './keys.ts';
export * from './backup.ts';
export * from './maintenance.ts';
export * from './calendar.ts';
export type { TaskManager, TaskContext, TaskRecord } from '../jobs/index.ts';
export type { PruneJobConfig, VerifyJobConfig } from '../config/index.ts';
export { taskReporter } from './task-reporter.ts';
export * from './certificate.ts';
export * from './access.ts';
export * from './jobs.ts';
export * from './job-status.ts';
export * from './notifications.ts';
export { BackupSessions } from './backup-sessions.ts';
export * from './repository.ts';
export { ReaderSessions } from './reader-sessions.ts';
export * from './remotes.ts';
export * from './sync.ts';
