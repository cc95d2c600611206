import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { IbsError, type CryptKey, type ErrorCode } from '../core/index.ts';
import { movable, release, Semaphore } from '../lib/index.ts';
import type { ThreadStore } from '../storage/index.ts';

/** What a thread answers: a blob (checked or encoded), a digest, or a failure. */
interface Answer {
  id: number;
  blob?: Uint8Array;
  digest?: string;
  error?: { code: ErrorCode; message: string };
  /** check-store: whether the chunk was there already, whether a new one read back the same, why storing failed. */
  existed?: boolean;
  same?: boolean;
  storeError?: { code: ErrorCode; message: string };
}

interface Pending {
  resolve: (answer: Answer) => void;
  reject: (e: unknown) => void;
}

/**
 * Worker threads for the per-chunk work that needs the CPU, so that it runs on every core while the main
 * thread reads, chunks, writes and sends: a receiver's checks (CRC, plaintext digest) and a backup's encoding
 * (digest, compression, encryption). One thread per core (up to 4): measured on 2 cores, local sync of
 * 335 MiB: one thread 5.8 s, two 4.3 s; optionally a few more for storing (see the constructor). A whole
 * buffer travels to a thread and back without a copy. Created by a composition root and passed in; `close`
 * ends the threads. Idle threads do not keep the process alive.
 */
export class ChunkPool {
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<number, Pending>();
  #next = 0;
  #turn = 0;
  #failure: Error | undefined;
  #closed = false;
  /** Two jobs per thread at most: one running, one ready; callers wait beyond that (bounded memory). */
  readonly #slots: Semaphore;
  /** The raw bytes of each key the threads have been given, by fingerprint. */
  readonly #keys = new Map<string, Uint8Array>();

  /** Threads that only check and store received chunks, started with the first such job. */
  readonly #storeThreads: number;
  #storeSlots: Semaphore | undefined;
  readonly #size: number;

  /**
   * `size` threads for every kind of job; `storeThreads` more only for checkAndStore, whose jobs wait for the
   * device (direct writes and read-backs, lib/direct-io.ts) while the CPU could check the next chunk. On
   * 2 cores, local sync of the bench datastore (986 MiB stored): 3.59-3.64 s with 2 threads, 3.09-3.18 s
   * with 2 more for storing, at 221 MiB peak RSS (192). A backup never starts them (it stores what it
   * encoded itself, and more threads for encoding gained it nothing); a server passes 0 to keep its memory
   * (about 20 MiB a thread).
   */
  constructor(size = Math.max(1, Math.min(4, availableParallelism())), options: { storeThreads?: number } = {}) {
    this.#size = size;
    this.#storeThreads = options.storeThreads ?? 0;
    for (let i = 0; i < size; i++) this.#spawn();
    this.#slots = new Semaphore(size * 2);
  }

  /** Threads started so far. */
  get threads(): number {
    return this.#workers.length;
  }

  #spawn(): void {
    // Small young generations: each job makes a few MiB of short-lived plaintext.
    const w = new Worker(new URL('./chunk-worker.ts', import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 96 } });
    w.on('message', (m: Answer) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (this.#pending.size === 0) this.#hold(false);
      if (m.error) p.reject(new IbsError(m.error.code, m.error.message));
      else p.resolve(m);
    });
    w.on('error', (error) => {
      this.#failure = error;
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
      this.#hold(false);
    });
    // Idle threads do not keep the process alive (after the listeners: adding one refs the port again).
    w.unref();
    this.#workers.push(w);
  }

  /** Slots of checkAndStore (two per thread that takes its jobs); its own threads are started on first use. */
  #storing(): Semaphore {
    if (!this.#storeSlots) {
      for (let i = 0; i < this.#storeThreads && !this.#closed; i++) this.#spawn();
      this.#storeSlots = new Semaphore((this.#size + this.#storeThreads) * 2);
    }
    return this.#storeSlots;
  }

  /** Posts one message to a thread and waits for its answer. */
  #ask(worker: Worker, message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<Answer> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new IbsError('ABORTED', 'The chunk pool is closed'));
    const id = this.#next++;
    return new Promise<Answer>((resolve, reject) => {
      if (this.#pending.size === 0) this.#hold(true);
      this.#pending.set(id, { resolve, reject });
      worker.postMessage({ ...message, id }, transfer);
    });
  }

  /** The next thread in turn among the first `among` (the threads for every kind of job, by default). */
  #worker(among = this.#size): Worker {
    return this.#workers[this.#turn++ % Math.min(among, this.#workers.length)] as Worker;
  }

  /**
   * Checks one chunk blob; rejects CORRUPT when damaged. Resolves with the blob to use from then on: a whole
   * buffer (readFile's) moves to the thread and comes back, and the one passed in is then empty; a slice of a
   * larger buffer (a request body) is copied for the thread and comes back as itself.
   */
  async check(digest: string, blob: Uint8Array): Promise<Uint8Array> {
    return this.#slots.run(async () => {
      const sent = movable(blob);
      const back = await this.#ask(this.#worker(), { type: 'check', digest, blob: sent }, [sent.buffer]);
      return sent === blob ? (back.blob as Uint8Array) : blob;
    });
  }

  /**
   * Checks one chunk blob and stores it from the thread through `store` under `key` (a chunk that is there
   * already is touched instead); rejects CORRUPT when damaged, and then nothing is stored. Resolves with whether
   * it existed and, with `readBack`, whether a new one read back byte for byte. When storing there fails, it
   * resolves with the checked blob and the failure instead, for the caller to store it the usual way. The blob
   * moves to the thread when it is a whole buffer (the one passed in is then empty), else it is copied.
   */
  async checkAndStore(digest: string, blob: Uint8Array, store: ThreadStore, key: string, readBack: boolean): Promise<{ existed: boolean; same?: boolean } | { blob: Uint8Array; failure: IbsError }> {
    return this.#storing().run(async () => {
      const sent = movable(blob);
      const back = await this.#ask(this.#worker(this.#workers.length), { type: 'check-store', digest, blob: sent, store, key, readBack }, [sent.buffer]);
      if (back.storeError) return { blob: back.blob as Uint8Array, failure: new IbsError(back.storeError.code, back.storeError.message) };
      return { existed: back.existed === true, ...(back.same !== undefined ? { same: back.same } : {}) };
    });
  }

  /**
   * Decodes a stored chunk on a thread (CRC, decryption, decompression) and checks its digest; resolves with the
   * plaintext. CORRUPT when damaged, WRONG_KEY when encrypted and `key` does not fit (or is missing). A whole
   * buffer moves to the thread (the one passed in is then empty), else it is copied.
   */
  async decode(digest: string, blob: Uint8Array, key: CryptKey | undefined): Promise<Buffer> {
    return this.#slots.run(async () => {
      const sent = movable(blob);
      const raw = key ? this.#keyBytes(key) : undefined;
      const { blob: plain } = await this.#ask(this.#worker(), { type: 'decode', digest, blob: sent, key: raw }, [sent.buffer]);
      const out = plain as Uint8Array;
      return Buffer.from(out.buffer, out.byteOffset, out.length);
    });
  }

  /**
   * Digests a chunk (SHA-256, or the key's keyed digest) on a thread; when `wanted(digest)` says so, encodes
   * it there too (compression, encryption) and returns the blob; otherwise the thread drops it. With
   * `speculate` the thread encodes it without waiting for the answer (one round trip instead of two), and a
   * blob not wanted is dropped here: for a caller that finds nearly every chunk new. `chunk` moves to the
   * thread when it is a whole buffer (the caller must not use it afterwards), else it is copied.
   */
  async encode(chunk: Uint8Array, options: { compress: boolean; key?: CryptKey | undefined; speculate?: boolean }, wanted: (digest: string) => boolean): Promise<{ digest: string; blob?: Buffer }> {
    return this.#slots.run(async () => {
      const worker = this.#worker();
      const sent = movable(chunk);
      const key = options.key ? this.#keyBytes(options.key) : undefined;
      if (options.speculate) {
        const answer = await this.#ask(worker, { type: 'digest-encode', chunk: sent, key, compress: options.compress }, [sent.buffer]);
        const digest = answer.digest as string;
        const out = answer.blob as Uint8Array;
        const blob = Buffer.from(out.buffer, out.byteOffset, out.length);
        if (wanted(digest)) return { digest, blob };
        release(blob);
        return { digest };
      }
      // The thread holds the chunk under the id of its digest job until told what to do with it.
      const { digest, id: held } = await this.#ask(worker, { type: 'digest', chunk: sent, key }, [sent.buffer]);
      if (!wanted(digest as string)) {
        worker.postMessage({ type: 'drop', held });
        return { digest: digest as string };
      }
      const { blob } = await this.#ask(worker, { type: 'encode', held, compress: options.compress });
      const out = blob as Uint8Array;
      return { digest: digest as string, blob: Buffer.from(out.buffer, out.byteOffset, out.length) };
    });
  }

  #keyBytes(key: CryptKey): Uint8Array {
    let raw = this.#keys.get(key.fingerprint);
    if (!raw) this.#keys.set(key.fingerprint, (raw = key.exportRaw()));
    return raw;
  }

  /** While a job is pending the threads keep the process alive (something waits for their answer). */
  #hold(on: boolean): void {
    if (this.#closed) return;
    for (const w of this.#workers) {
      if (on) w.ref();
      else w.unref();
    }
  }

  /**
   * Ends the threads. Jobs still waiting for an answer (a read-ahead that an error overtook) fail with ABORTED.
   * The threads stay referenced until they have stopped: an answer arriving meanwhile must not unref them, or
   * the process could end before their exit and leave the caller's await unsettled (exit code 13).
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#workers) w.ref();
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(new IbsError('ABORTED', 'The chunk pool closed before answering'));
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
