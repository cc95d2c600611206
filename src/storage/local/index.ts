/** The local filesystem backend: the only module that may assume a POSIX filesystem. */
export { LocalBackend, TEMP_MARKER, type LocalBackendOptions } from './local-backend.ts';
