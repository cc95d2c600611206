import { Semaphore } from '../lib/index.ts';
import type { StorageBackend, ObjectInfo, OpOptions, ReadOptions, WriteOptions, WriteSource } from './backend.ts';

/**
 * Caps the operations in flight against a backend (servers limit connections; disks thrash). Listing is not
 * counted: a caller that reads while it lists must not deadlock against itself.
 */
export class ConcurrencyBackend implements StorageBackend {
  readonly #inner: StorageBackend;
  readonly #slots: Semaphore;

  constructor(inner: StorageBackend, limit: number) {
    this.#inner = inner;
    this.#slots = new Semaphore(limit);
  }

  get info(): StorageBackend['info'] {
    return this.#inner.info;
  }

  get threadStore(): StorageBackend['threadStore'] {
    return this.#inner.threadStore;
  }

  stat(key: string, options?: OpOptions): Promise<ObjectInfo | undefined> {
    return this.#slots.run(() => this.#inner.stat(key, options));
  }

  list(prefix: string, options?: OpOptions): AsyncIterable<ObjectInfo> {
    return this.#inner.list(prefix, options);
  }

  read(key: string, options?: ReadOptions): Promise<Buffer> {
    return this.#slots.run(() => this.#inner.read(key, options));
  }

  write(key: string, source: WriteSource, options?: WriteOptions): Promise<void> {
    return this.#slots.run(() => this.#inner.write(key, source, options));
  }

  touch(key: string, options?: OpOptions): Promise<void> {
    return this.#slots.run(() => this.#inner.touch(key, options));
  }

  delete(key: string, options?: OpOptions): Promise<void> {
    return this.#slots.run(() => this.#inner.delete(key, options));
  }

  space(options?: OpOptions): ReturnType<StorageBackend['space']> {
    return this.#inner.space(options);
  }

  async cleanTemporary(olderThanMs: number, options?: OpOptions): Promise<number> {
    return (await this.#inner.cleanTemporary?.(olderThanMs, options)) ?? 0;
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
