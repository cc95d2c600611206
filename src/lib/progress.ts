/**
 * How long-running work reports: domain code calls a `Reporter`; the CLI renders it as text on a terminal
 * or as JSON lines, the server (later) as task logs. Domain code never prints.
 */
export interface ProgressEvent {
  phase: string;
  /** Bytes (or items) done and, when known, in total. */
  done: number;
  total?: number | undefined;
  unit: 'bytes' | 'items';
}

export interface Reporter {
  info(message: string): void;
  warn(message: string): void;
  progress(event: ProgressEvent): void;
  /**
   * False when progress events go nowhere (quiet, not a terminal): work done only to make them better, such as
   * sizing a tree for percent and ETA, may then be skipped. Absent means they are shown.
   */
  readonly showsProgress?: boolean;
}

export const silentReporter: Reporter = { info() {}, warn() {}, progress() {} };

/** Moving-average rate and ETA over a sliding window of samples. */
export class RateMeter {
  readonly #samples: Array<{ t: number; done: number }> = [];
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(windowMs = 10_000, now: () => number = Date.now) {
    this.#windowMs = windowMs;
    this.#now = now;
  }

  /** Records a sample; returns the bytes (or items) per second over the window. */
  update(done: number): { rate: number } {
    const t = this.#now();
    this.#samples.push({ t, done });
    while (this.#samples.length > 2 && t - (this.#samples[0] as { t: number }).t > this.#windowMs) this.#samples.shift();
    const first = this.#samples[0] as { t: number; done: number };
    const dt = (t - first.t) / 1000;
    const rate = dt > 0 ? (done - first.done) / dt : 0;
    return { rate };
  }

  /** Seconds left at `rate`, or undefined when the total or the rate is unknown. */
  eta(done: number, total: number | undefined, rate: number): number | undefined {
    if (total === undefined || rate <= 0) return undefined;
    return Math.max(0, (total - done) / rate);
  }
}
