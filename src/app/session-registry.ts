import { randomUUID } from 'node:crypto';
import { IbsError } from '../core/index.ts';

interface Entry<S> {
  value: S;
  authId: string;
  lastUsed: number;
  busy: number;
}

/**
 * Sessions of API clients (backup uploads, snapshot readers): each belongs to the identity that opened it,
 * and one left idle for `idleMs` is ended with `onExpire` (a client that went away leaves nothing open).
 */
export class SessionRegistry<S> {
  readonly #entries = new Map<string, Entry<S>>();
  readonly #kind: string;
  readonly #idleMs: number;
  readonly #onEnd: (value: S, expired: boolean) => Promise<void>;
  readonly #timer: NodeJS.Timeout;

  constructor(kind: string, options: { idleMs?: number; onEnd: (value: S, expired: boolean) => Promise<void> }) {
    this.#kind = kind;
    this.#idleMs = options.idleMs ?? 10 * 60_000;
    this.#onEnd = options.onEnd;
    this.#timer = setInterval(() => void this.#sweep(), Math.min(this.#idleMs, 30_000));
    this.#timer.unref();
  }

  open(authId: string, value: S): string {
    const id = randomUUID();
    this.#entries.set(id, { value, authId, lastUsed: Date.now(), busy: 0 });
    return id;
  }

  /** Runs `fn` with the session, checking that `authId` owns it; idle time restarts. */
  async use<T>(id: string, authId: string, fn: (value: S) => Promise<T>): Promise<T> {
    const entry = this.#entries.get(id);
    if (!entry) throw new IbsError('NOT_FOUND', `No ${this.#kind} session ${id} (finished, or idle for too long)`);
    if (entry.authId !== authId) throw new IbsError('PERMISSION_DENIED', `The ${this.#kind} session ${id} belongs to ${entry.authId}`);
    entry.busy++;
    entry.lastUsed = Date.now();
    try {
      return await fn(entry.value);
    } finally {
      entry.busy--;
      entry.lastUsed = Date.now();
    }
  }

  /** Ends a session (after the caller finished or gave it up). */
  async end(id: string): Promise<void> {
    const entry = this.#entries.get(id);
    if (!entry) return;
    this.#entries.delete(id);
    await this.#onEnd(entry.value, false);
  }

  async #sweep(): Promise<void> {
    const now = Date.now();
    for (const [id, entry] of [...this.#entries]) {
      if (entry.busy === 0 && now - entry.lastUsed > this.#idleMs) {
        this.#entries.delete(id);
        await this.#onEnd(entry.value, true).catch(() => {});
      }
    }
  }

  /** Ends every session (server shutdown). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    for (const [id, entry] of [...this.#entries]) {
      this.#entries.delete(id);
      await this.#onEnd(entry.value, true).catch(() => {});
    }
  }
}
