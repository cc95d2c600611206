/**
 * storage: where a datastore's bytes live. `StorageBackend` is the one contract (see backend.ts); wrappers
 * add one cross-cutting behaviour each (retry, concurrency cap); `conformance.ts` is the suite every backend
 * passes. Backends live in subfolders, each with at most one npm dependency, and are picked in `bin/` only.
 */
export * from './backend.ts';
export { RetryBackend, type RetryBackendOptions } from './retry-backend.ts';
export { ConcurrencyBackend } from './concurrency-backend.ts';
