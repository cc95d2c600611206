/**
 * Worker thread of the VerifyPool: checks a received chunk off the main thread (CRC, then decompression and
 * SHA-256 of the plaintext for plain chunks) and sends the blob back (moved, not copied) for storing.
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
// Only the blob codec and error helpers: a small module graph keeps each thread's memory low.
import { checkBlobCrc, decompressSync, isEncryptedBlob } from '../core/blob.ts';
import { toIbsError } from '../core/errors.ts';
import { release } from '../lib/release.ts';

interface Job {
  id: number;
  /** The chunk's digest to check the blob against. */
  digest: string;
  blob: Uint8Array;
}

parentPort?.on('message', (job: Job) => {
  try {
    const what = `chunk ${job.digest}`;
    const header = checkBlobCrc(job.blob, what);
    if (!isEncryptedBlob(header)) {
      let plain: Uint8Array = job.blob.subarray(header.headerSize);
      if (header.encoding === 'zstd') plain = decompressSync(plain, what);
      const actual = createHash('sha256').update(plain).digest('hex');
      // Decompressed here and seen by nobody else: freed now rather than by a collection later.
      if (plain.buffer !== job.blob.buffer) release(plain);
      if (actual !== job.digest) throw Object.assign(new Error(`Chunk ${job.digest}: content digest is ${actual} (damaged chunk)`), { code: 'CORRUPT' });
    }
    parentPort?.postMessage({ id: job.id, blob: job.blob }, [job.blob.buffer as ArrayBuffer]);
  } catch (error) {
    const e = error as Error & { code?: string };
    parentPort?.postMessage({ id: job.id, error: { code: e.code === 'CORRUPT' ? 'CORRUPT' : toIbsError(error).code, message: e.message } });
  }
});
