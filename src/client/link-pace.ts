/**
 * The requests one connection carries at a time, in one direction: as many in flight (across every snapshot
 * and group using the connection) as the link answers in a quarter of the client's idle time; 1 before the
 * first answer, `max` at most. HTTP/2 hands everything in flight to the socket at once and shares the link
 * between the requests, so on a slow link each request sees data only when all that is queued has gone: 40
 * MiB of pushed batches through a 2 MiB/s link (measured with a 3 s idle time; with the default 60 s, below
 * about 0.7 MiB/s) had requests failed as stalled while the link was busy, and so had pulls (64 MiB of
 * answers queued by the server, 16 MiB/s, 2 s). Now what is queued drains within the idle time, down to one
 * request of `unit` bytes in it: about 70 KB/s for 4 MiB with the default 60 s.
 *
 * The rate: for each request, the bytes answered from its start to its answer (its own and those of requests
 * answered meanwhile) over that time; the highest of the last 8 such samples, so that one slow answer does
 * not shrink the window at once. One per connection and direction: `ApiClient.pace`.
 *
 * On a link with latency, `max` requests cover less than the link holds: as many more as the rate fills in
 * one round trip (measured by the connection, an HTTP/2 ping) may be in flight, up to half of `max` more.
 * Their bytes are on the way, not waiting at the receiver, whose memory `max` bounds: on a link without
 * latency nothing changes. Push of the bench datastore with 50 ms added each way: 6.94-7.08 s with 10
 * batches in flight, 6.07 s with 14 and 5.81 s with 18; without latency 14 took the receiving server's peak
 * RSS from 292 MB to 314-325 MB.
 */
export class LinkPace {
  readonly #idleMs: number;
  readonly #unit: number;
  readonly #max: number;
  #answered = 0;
  readonly #samples: number[] = [];
  #inFlight = 0;
  #waiting: Array<() => void> = [];

  readonly #roundTripMs: () => number;

  /** `unit`: the bytes of a request at most; `max`: requests in flight at most without latency; `roundTripMs`: the link's, as last measured. */
  constructor(idleMs: number, unit: number, max: number, roundTripMs: () => number = () => 0) {
    this.#idleMs = idleMs;
    this.#unit = unit;
    this.#max = max;
    this.#roundTripMs = roundTripMs;
  }

  #allowed(): number {
    if (this.#samples.length === 0) return 1;
    const rate = Math.max(...this.#samples);
    const onTheWay = Math.min(Math.floor(this.#max / 2), Math.floor((rate * this.#roundTripMs()) / this.#unit));
    return Math.max(1, Math.min(this.#max + onTheWay, Math.floor((rate * this.#idleMs) / 4 / this.#unit)));
  }

  /** Waits for room for one more request on the link; `done` gives it back. */
  async acquire(): Promise<void> {
    while (this.#inFlight >= this.#allowed()) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#inFlight++;
  }

  done(): void {
    this.#inFlight--;
    for (const wake of this.#waiting.splice(0)) wake();
  }

  mark(): { at: number; answered: number } {
    return { at: performance.now(), answered: this.#answered };
  }

  /** A request of `bytes` (sent or answered) started at `since` was answered. */
  answered(bytes: number, since: { at: number; answered: number }): void {
    this.#answered += bytes;
    const ms = performance.now() - since.at;
    if (ms <= 0) return;
    this.#samples.push((this.#answered - since.answered) / ms);
    if (this.#samples.length > 8) this.#samples.shift();
  }
}
