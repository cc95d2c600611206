import { abortableSleep, throwIfAborted } from './abort.ts';

export interface RetryOptions {
  /** Attempts in all, the first one included. */
  attempts: number;
  /** Delay before the second attempt; doubles each time up to `maxDelayMs`, with +-25% jitter. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Decides whether an error is worth another attempt. */
  retryable: (error: unknown) => boolean;
  signal?: AbortSignal | undefined;
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/** Runs `fn` until it succeeds, the error is not retryable, attempts run out or the signal aborts. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  if (!Number.isInteger(options.attempts) || options.attempts < 1) {
    throw new RangeError(`retry: attempts must be a positive integer, got ${options.attempts}`);
  }
  let delay = options.baseDelayMs;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(options.signal);
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt >= options.attempts || !options.retryable(error) || options.signal?.aborted) throw error;
      const jittered = Math.round(delay * (0.75 + Math.random() * 0.5));
      options.onRetry?.(error, attempt, jittered);
      await abortableSleep(jittered, options.signal);
      delay = Math.min(delay * 2, options.maxDelayMs);
    }
  }
}
