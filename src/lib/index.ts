/**
 * lib: generic helpers with no domain knowledge (abort, retry with backoff, concurrency pools, atomic
 * file writes, human-readable figures). Only `node:` imports are allowed here.
 */
export { throwIfAborted, abortableSleep, waitAtMost } from './abort.ts';
export { retry, type RetryOptions } from './retry.ts';
export { Semaphore, mapConcurrent, WorkQueue } from './pool.ts';
export { prefetch } from './prefetch.ts';
export { isAllZero, readInto, readPieces, writeAll, writeAllSync } from './read-pieces.ts';
export { writeFileAtomic, fsyncDir, makeDirs, makeDirsSync } from './atomic-file.ts';
export { readTextCached } from './cached-read.ts';
export { formatBytes, formatRate, formatDuration } from './format.ts';
export { silentReporter, RateMeter, type Reporter, type ProgressEvent } from './progress.ts';
export { validate, schemaToJson, SchemaError, type Schema } from './schema.ts';
export { TokenBucket } from './token-bucket.ts';
export { release, movable, isWhole } from './release.ts';
export { directRefused, openDirect, readDirect, writeDirect, SequentialFile } from './direct-io.ts';
export { jsonFileLog, type JsonLog, type LogLevel } from './json-log.ts';
export { journalWriter, journalByDefault, JOURNAL_SOCKET, type JournalWriter, type JournalEntry } from './journal.ts';
