import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { IbsError, type ErrorCode } from '../core/index.ts';
import { Semaphore } from '../lib/index.ts';

interface Pending {
  resolve: (r: { blobSha256: string }) => void;
  reject: (e: unknown) => void;
}

/**
 * Worker threads that check received chunks (CRC, plaintext digest) and hash them as received, so that a
 * receiver's checks run on every core instead of the main thread. Created by a composition root and passed
 * in; `close` ends the threads. Workers do not keep the process alive.
 */
export class VerifyPool {
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, Pending>();
  #next = 0;
  #turn = 0;
  #failure: Error | undefined;
  /** Two jobs per thread at most: one running, one ready; callers wait beyond that (bounded memory). */
  readonly #slots: Semaphore;

  constructor(size = Math.max(1, Math.min(4, availableParallelism() - 1))) {
    for (let i = 0; i < size; i++) {
      // Small young generations: each job makes a few MiB of short-lived plaintext.
      const w = new Worker(new URL('./verify-worker.ts', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 96 } });
      w.unref();
      w.on('message', (m: { id: number; blobSha256?: string; error?: { code: ErrorCode; message: string } }) => {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (m.error) p.reject(new IbsError(m.error.code, m.error.message));
        else p.resolve({ blobSha256: m.blobSha256 as string });
      });
      w.on('error', (error) => {
        this.#failure = error;
        for (const p of this.#pending.values()) p.reject(error);
        this.#pending.clear();
      });
      this.#workers.push(w);
    }
    this.#slots = new Semaphore(size * 2);
  }

  /** Checks one chunk blob; resolves with the SHA-256 of the blob, rejects CORRUPT when damaged. */
  async check(digest: string, blob: Uint8Array): Promise<{ blobSha256: string }> {
    return this.#slots.run(() => this.#check(digest, blob));
  }

  #check(digest: string, blob: Uint8Array): Promise<{ blobSha256: string }> {
    if (this.#failure) return Promise.reject(this.#failure);
    const id = this.#next++;
    const worker = this.#workers[this.#turn++ % this.#workers.length] as Worker;
    // A copy goes to the worker: the caller's buffer may be a slice of a larger one (a request body).
    const copy = new Uint8Array(blob.length);
    copy.set(blob);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ id, digest, blob: copy }, [copy.buffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
