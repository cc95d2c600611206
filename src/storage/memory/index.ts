/** The in-memory backend: for tests and staging. */
export { MemoryBackend, type MemoryBackendOptions } from './memory-backend.ts';
