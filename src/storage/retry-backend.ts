import { retry } from '../lib/index.ts';
import { isStorageError, type StorageBackend, type ObjectInfo, type OpOptions, type ReadOptions, type WriteOptions, type WriteSource } from './backend.ts';

export interface RetryBackendOptions {
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  onRetry?: (op: string, key: string, error: unknown, attempt: number) => void;
}

/**
 * Retries operations that fail with a `transient` StorageError, with exponential backoff and jitter. Writes
 * are safe to retry because sources are replayable and writes atomic; listing is not retried midway (a
 * listing restarted could yield keys twice), only its start.
 */
export class RetryBackend implements StorageBackend {
  readonly #inner: StorageBackend;
  readonly #options: Required<Omit<RetryBackendOptions, 'onRetry'>> & Pick<RetryBackendOptions, 'onRetry'>;

  constructor(inner: StorageBackend, options: RetryBackendOptions = {}) {
    this.#inner = inner;
    this.#options = { attempts: options.attempts ?? 5, baseDelayMs: options.baseDelayMs ?? 200, maxDelayMs: options.maxDelayMs ?? 10_000, onRetry: options.onRetry };
  }

  get info(): StorageBackend['info'] {
    return this.#inner.info;
  }

  get threadStore(): StorageBackend['threadStore'] {
    return this.#inner.threadStore;
  }

  #retry<T>(op: string, key: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    return retry(fn, {
      attempts: this.#options.attempts,
      baseDelayMs: this.#options.baseDelayMs,
      maxDelayMs: this.#options.maxDelayMs,
      retryable: (error) => isStorageError(error, 'transient'),
      signal,
      onRetry: (error, attempt) => this.#options.onRetry?.(op, key, error, attempt),
    });
  }

  stat(key: string, options: OpOptions = {}): Promise<ObjectInfo | undefined> {
    return this.#retry('stat', key, options.signal, () => this.#inner.stat(key, options));
  }

  async *list(prefix: string, options: OpOptions = {}): AsyncIterable<ObjectInfo> {
    const iterator = this.#inner.list(prefix, options)[Symbol.asyncIterator]();
    const first = await this.#retry('list', prefix, options.signal, () => iterator.next());
    if (first.done) return;
    yield first.value;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }

  read(key: string, options: ReadOptions = {}): Promise<Buffer> {
    return this.#retry('read', key, options.signal, () => this.#inner.read(key, options));
  }

  write(key: string, source: WriteSource, options: WriteOptions = {}): Promise<void> {
    return this.#retry('write', key, options.signal, () => this.#inner.write(key, source, options));
  }

  touch(key: string, options: OpOptions = {}): Promise<void> {
    return this.#retry('touch', key, options.signal, () => this.#inner.touch(key, options));
  }

  delete(key: string, options: OpOptions = {}): Promise<void> {
    return this.#retry('delete', key, options.signal, () => this.#inner.delete(key, options));
  }

  space(options: OpOptions = {}): ReturnType<StorageBackend['space']> {
    return this.#retry('space', '', options.signal, () => this.#inner.space(options));
  }

  async cleanTemporary(olderThanMs: number, options?: OpOptions): Promise<number> {
    return (await this.#inner.cleanTemporary?.(olderThanMs, options)) ?? 0;
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
