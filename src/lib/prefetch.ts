/**
 * Yields `fn(item)` for every item in input order, with up to `depth` calls running ahead of the consumer.
 * The first failure is thrown where its result would have been yielded; calls already started are awaited.
 */
export async function* prefetch<T, R>(items: readonly T[], depth: number, fn: (item: T) => Promise<R>): AsyncGenerator<R> {
  const pending: Array<Promise<R>> = [];
  let next = 0;
  const fill = (): void => {
    while (pending.length < depth && next < items.length) {
      const p = fn(items[next++] as T);
      p.catch(() => {}); // observed when its turn comes
      pending.push(p);
    }
  };
  try {
    fill();
    while (pending.length > 0) {
      const value = await (pending.shift() as Promise<R>);
      fill();
      yield value;
    }
  } finally {
    await Promise.allSettled(pending);
  }
}
