/** The local filesystem backend: the only module that may assume a POSIX filesystem. */
export { LocalBackend, type LocalBackendOptions } from './local-backend.ts';
export { TEMP_MARKER } from './local-files.ts';
