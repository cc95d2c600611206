import { abortableSleep } from './abort.ts';

/**
 * A token bucket shared by everyone who sends or receives for one job and direction: `take(n)` waits until
 * `n` bytes may pass at `ratePerSecond` (bursts up to `burst` bytes). A rate of 0 means unlimited.
 * Requests larger than the burst are let through in slices, so a single big chunk cannot stall forever.
 */
export class TokenBucket {
  readonly rate: number;
  readonly burst: number;
  #tokens: number;
  #last: number;
  #queue: Promise<void> = Promise.resolve();
  readonly #now: () => number;

  constructor(ratePerSecond: number, burst?: number, now: () => number = () => performance.now()) {
    if (!(ratePerSecond >= 0) || !Number.isFinite(ratePerSecond)) throw new RangeError(`Invalid rate ${ratePerSecond}: expected bytes per second >= 0`);
    this.rate = ratePerSecond;
    this.burst = burst ?? Math.max(64 * 1024, ratePerSecond / 10);
    this.#tokens = this.burst;
    this.#now = now;
    this.#last = now();
  }

  get unlimited(): boolean {
    return this.rate === 0;
  }

  #refill(): void {
    const t = this.#now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) / 1000) * this.rate);
    this.#last = t;
  }

  /** Waits until `bytes` may pass; callers are served in arrival order. */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (this.unlimited || bytes <= 0) return Promise.resolve();
    const turn = this.#queue.then(async () => {
      let left = bytes;
      while (left > 0) {
        this.#refill();
        const slice = Math.min(left, this.burst);
        if (this.#tokens >= slice) {
          this.#tokens -= slice;
          left -= slice;
          continue;
        }
        await abortableSleep(Math.max(1, ((slice - this.#tokens) / this.rate) * 1000), signal);
      }
    });
    this.#queue = turn.catch(() => {});
    return turn;
  }
}
