import { Worker } from 'node:worker_threads';
import { IbsError, toIbsError, type ErrorCode } from '../core/index.ts';
import { throwIfAborted } from '../lib/index.ts';

/** A failure on a thread, as it travels back: the error's code (an IbsError's, else INTERNAL) and message. */
export interface ThreadError {
  type: 'error';
  code: ErrorCode;
  message: string;
}

/** How a thread reports the failure of its work (the parent's `until` then rejects with it). */
export function threadError(error: unknown): ThreadError {
  const e = toIbsError(error);
  return { type: 'error', code: e.code, message: e.message };
}

/**
 * A worker thread (a file of this folder) that a loop on the calling thread waits on. Messages other than a
 * `ThreadError` go to `onMessage`; `until(ready)` resolves once `ready()` holds, and rejects as soon as the
 * signal aborts or the thread fails, reports an error or stops; `close` ends the thread.
 */
export class Thread<M extends { type: string }> {
  readonly #worker: Worker;
  readonly #signal: AbortSignal | undefined;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  readonly #notify = (): void => {
    this.#wake?.();
    this.#wake = undefined;
  };

  /**
   * `what` names the thread's work in the error when it stops early ("The thread reading …"). By default the
   * thread's young generation is as small as the main thread's (these threads pass many buffers through);
   * `youngGenerationMb` sets another size. The memory in `transfer` moves to the thread with `workerData`
   * instead of being copied.
   */
  constructor(file: string, workerData: unknown, what: string, signal: AbortSignal | undefined, onMessage: (message: M) => void, options: { youngGenerationMb?: number; transfer?: ArrayBuffer[] } = {}) {
    throwIfAborted(signal);
    this.#worker = new Worker(new URL(file, import.meta.url), {
      workerData,
      transferList: options.transfer ?? [],
      resourceLimits: { maxYoungGenerationSizeMb: options.youngGenerationMb ?? 8 },
    });
    this.#signal = signal;
    this.#worker.on('message', (m: M | ThreadError) => {
      if (m.type === 'error') this.#failure ??= new IbsError((m as ThreadError).code, (m as ThreadError).message);
      else onMessage(m as M);
      this.#notify();
    });
    this.#worker.on('error', (error) => {
      this.#failure ??= error;
      this.#notify();
    });
    this.#worker.on('exit', (code) => {
      this.#failure ??= new IbsError('INTERNAL', `${what} stopped (exit code ${code}) before its work was done`);
      this.#notify();
    });
    signal?.addEventListener('abort', this.#notify, { once: true });
  }

  post(message: unknown, transfer: ArrayBuffer[] = []): void {
    this.#worker.postMessage(message, transfer);
  }

  async until(ready: () => boolean): Promise<void> {
    for (;;) {
      throwIfAborted(this.#signal);
      if (this.#failure) throw this.#failure;
      if (ready()) return;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  async close(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#notify);
    this.#worker.removeAllListeners('exit');
    await this.#worker.terminate();
  }
}
