/**
 * core: the pure domain. Names and references (with strict validation), digests, the blob codec, index files,
 * manifests and their signatures, encryption keys, retention and the one table of error codes. No I/O here
 * except what node:crypto and node:zlib compute.
 */
export * from './errors.ts';
export * from './digest.ts';
export * from './names.ts';
export * from './blob.ts';
export * from './crypt-key.ts';
export * from './index-file.ts';
export * from './manifest.ts';
export * from './retention.ts';
export * from './calendar.ts';
export * from './privileges.ts';
