/** A counting semaphore: at most `limit` holders at once, waiters served in arrival order. */
export class Semaphore {
  #available: number;
  #waiters: Array<() => void> = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`Semaphore limit must be a positive integer, got ${limit}`);
    this.#available = limit;
  }

  async acquire(): Promise<() => void> {
    if (this.#available > 0) {
      this.#available--;
    } else {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiters.shift();
      if (next) next();
      else this.#available++;
    };
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/**
 * Maps `items` through `fn` with at most `concurrency` calls in flight; results keep the input order.
 * The first failure stops new calls and is rethrown once the calls in flight have settled.
 */
export async function mapConcurrent<T, R>(
  items: Iterable<T>,
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const list = [...items];
  const results = new Array<R>(list.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < list.length) {
      const index = next++;
      try {
        results[index] = await fn(list[index] as T, index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, list.length)) }, worker));
  if (failure) throw failure.error;
  return results;
}

/**
 * Runs submitted jobs with at most `limit` in flight and, when `maxWeight` is set, at most that much weight
 * (bytes, say) in flight; one job alone may exceed it. `submit` waits while the queue is full (backpressure
 * for producers). The first failure is kept and rethrown by the next `submit` or by `drain`, and no new job
 * starts.
 */
export class WorkQueue {
  readonly #limit: number;
  readonly #maxWeight: number;
  readonly #running = new Set<Promise<void>>();
  #weight = 0;
  #failure: { error: unknown } | undefined;

  constructor(limit: number, options: { maxWeight?: number } = {}) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`WorkQueue limit must be a positive integer, got ${limit}`);
    this.#limit = limit;
    this.#maxWeight = options.maxWeight ?? Infinity;
  }

  async submit(job: () => Promise<void>, weight = 0): Promise<void> {
    while (!this.#failure && this.#running.size > 0 && (this.#running.size >= this.#limit || this.#weight + weight > this.#maxWeight)) {
      await Promise.race(this.#running);
    }
    if (this.#failure) throw this.#failure.error;
    this.#weight += weight;
    const p: Promise<void> = job().then(
      () => {
        this.#running.delete(p);
        this.#weight -= weight;
      },
      (error: unknown) => {
        this.#running.delete(p);
        this.#weight -= weight;
        this.#failure ??= { error };
      },
    );
    this.#running.add(p);
  }

  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.race(this.#running);
    if (this.#failure) throw this.#failure.error;
  }
}
