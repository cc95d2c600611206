/**
 * datastore: a deduplicated store of snapshots on any StorageBackend (never assumes a local filesystem).
 *
 * Invariants:
 * - A snapshot exists iff its manifest exists; the manifest is written last, after every index, blob and
 *   chunk it references is durable (SnapshotWriter.commit). Interrupted writers leave only unreferenced
 *   chunks (reused by the next run, removed by GC) and manifest-less folders (ignored, removed by GC).
 * - Chunks are stored under their digest and checked on insert (CRC, optionally content) and on every read.
 * - GC never removes a chunk newer than the start of the oldest running writer (writer leases) and writers
 *   touch every existing chunk they reuse; prune refuses to remove the base snapshot of a running writer.
 * - A quarantined datastore refuses new writes and GC, and says why.
 */
export { Datastore, DATASTORE_MARKER, FORMAT_VERSION, type DamagedSnapshot, type SnapshotInfo, type DatastoreMarker } from './datastore.ts';
export { ChunkStore, chunkKey, verifyChunkContent, type ChunkInfo } from './chunk-store.ts';
export { Chunker, DEFAULT_CHUNKER, type ChunkerOptions } from './chunker.ts';
export { SnapshotWriter, FIXED_CHUNK_SIZE, type ArchiveStats, type ArchivePiece, type BeginOptions } from './snapshot-writer.ts';
export { SnapshotReader, datastoreSource, type ReaderOptions, type SnapshotSource } from './snapshot-reader.ts';
export { SnapshotUpload, type SnapshotSink, type UploadOptions } from './snapshot-upload.ts';
export { verifyDatastore, overdueInWindow, type VerifyOptions, type VerifyResult, type BadChunk } from './verify.ts';
export { pruneGroup, type PruneEntry } from './prune.ts';
export { collectGarbage, readGcStatus, GC_DEFAULT_MARGIN_MS, type GcResult, type GcOptions } from './gc.ts';
export { datastoreStats, type DatastoreStats } from './stats.ts';
export { WriterLease, readLeases, type LeaseRecord } from './writer-lease.ts';
export { ChunkPool } from './chunk-pool.ts';
