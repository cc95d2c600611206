import { toIbsError } from '../core/index.ts';
import { waitAtMost } from '../lib/index.ts';
import type { NotificationEvent } from './event.ts';
import { matches, type MatcherConfig } from './matcher.ts';
import { deliver, type DeliveryOptions, type TargetConfig, type TargetSecrets } from './targets.ts';

export interface NotificationConfigSource {
  targets(): Promise<TargetConfig[]>;
  matchers(): Promise<MatcherConfig[]>;
  secrets(name: string): Promise<TargetSecrets>;
}

export interface DeliveryReport {
  target: string;
  ok: boolean;
  error?: string;
}

/**
 * Sends events to the targets of every matcher that matches (each target once per event). Deliveries run
 * in parallel and never throw: failures are reported and logged (without secrets).
 */
export class Notifier {
  readonly #config: NotificationConfigSource;
  readonly #options: Omit<DeliveryOptions, 'log' | 'recipients'>;
  readonly #log: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void;
  readonly #stopping = new AbortController();
  readonly #pending = new Set<Promise<DeliveryReport>>();

  constructor(config: NotificationConfigSource, options: Omit<DeliveryOptions, 'log' | 'recipients'> & { log?: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void } = {}) {
    const { log, ...delivery } = options;
    this.#config = config;
    this.#options = delivery;
    this.#log = log ?? (() => {});
  }

  async send(event: NotificationEvent): Promise<DeliveryReport[]> {
    const [targets, matchers] = [await this.#config.targets(), await this.#config.matchers()];
    for (const m of matchers) if (m.problem !== undefined) this.#log('warn', 'matcher does not read: it matches every event until corrected', { matcher: m.name, error: m.problem });
    const names = new Set(matchers.filter((m) => matches(m, event)).flatMap((m) => m.targets));
    const chosen = targets.filter((t) => names.has(t.name));
    return Promise.all(
      chosen.map((t) => {
        const delivery = this.#deliver(t, event);
        this.#pending.add(delivery);
        void delivery.finally(() => this.#pending.delete(delivery));
        return delivery;
      }),
    );
  }

  /**
   * For a stopping server: deliveries under way get `graceMs` to finish (a task that just ended is still
   * announced), then those still waiting to retry are given up, each logged as abandoned.
   */
  async close(graceMs = 5000): Promise<void> {
    await waitAtMost(Promise.all(this.#pending), graceMs);
    this.#stopping.abort();
    await Promise.all(this.#pending);
  }

  /** Sends a test event to one target (optionally to other recipients). */
  async test(target: TargetConfig, event: NotificationEvent, recipients?: string[]): Promise<DeliveryReport> {
    return this.#deliver(target, event, recipients, 1);
  }

  async #deliver(target: TargetConfig, event: NotificationEvent, recipients?: string[], attempts?: number): Promise<DeliveryReport> {
    try {
      await deliver(target, await this.#config.secrets(target.name), event, {
        ...this.#options,
        ...(recipients ? { recipients } : {}),
        ...(attempts ? { attempts } : {}),
        signal: this.#stopping.signal,
        log: (msg, fields) => this.#log('warn', msg, fields),
      });
      this.#log('info', 'delivered', { target: target.name, type: event.type, severity: event.severity });
      return { target: target.name, ok: true };
    } catch (error) {
      const message = this.#stopping.signal.aborted ? 'given up: the server is stopping' : toIbsError(error).message;
      this.#log('warn', 'delivery failed', { target: target.name, error: message });
      return { target: target.name, ok: false, error: message };
    }
  }
}
