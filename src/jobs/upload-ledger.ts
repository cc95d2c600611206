import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { openStateDatabase, stateDbErrorCode } from './state-db.ts';
import { join } from 'node:path';

/**
 * Which chunks each identity uploaded recently, per datastore (`uploads.db` in the state dir): what lets an
 * interrupted backup or push, after a cut connection or a server restart, reference what already arrived
 * instead of sending it again, without revealing chunks that anyone else uploaded. Entries expire.
 */
export class UploadLedger {
  readonly #db: DatabaseSync;
  readonly #ttlMs: number;
  readonly #insert: StatementSync;
  readonly #query: StatementSync;

  constructor(stateDir: string, options: { ttlMs?: number } = {}) {
    this.#ttlMs = options.ttlMs ?? 7 * 24 * 3600_000;
    this.#db = openStateDatabase(join(stateDir, 'uploads.db'), `PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS uploads (auth_id TEXT NOT NULL, store TEXT NOT NULL, digest TEXT NOT NULL, time INTEGER NOT NULL,
        PRIMARY KEY (auth_id, store, digest)) WITHOUT ROWID;`);
    // Prepared once: every batch of a push or backup asks and records.
    this.#insert = this.#db.prepare('INSERT INTO uploads (auth_id, store, digest, time) VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET time = excluded.time');
    this.#query = this.#db.prepare('SELECT 1 FROM uploads WHERE auth_id = ? AND store = ? AND digest = ? AND time > ?');
  }

  /**
   * Records that `authId` uploaded `digests` to `store`. False when the ledger cannot be written (its disk
   * full): the chunks are stored all the same, and a resumed transfer sends those again.
   */
  remember(authId: string, store: string, digests: readonly string[], now = Date.now()): boolean {
    try {
      this.#db.exec('BEGIN');
    } catch (error) {
      if (stateDbErrorCode(error) === undefined) throw error;
      return false;
    }
    try {
      for (const d of digests) this.#insert.run(authId, store, d, now);
      this.#db.exec('COMMIT');
      return true;
    } catch (error) {
      // SQLite may have rolled back already (it does on a full disk).
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      if (stateDbErrorCode(error) === undefined) throw error;
      return false;
    }
  }

  /** Of `digests`, those `authId` uploaded to `store` within the retention time. */
  vouched(authId: string, store: string, digests: readonly string[], now = Date.now()): Set<string> {
    const out = new Set<string>();
    for (const d of digests) if (this.#query.get(authId, store, d, now - this.#ttlMs)) out.add(d);
    return out;
  }

  /** Drops expired entries (when it can: on a full disk they stay until a later start, still expired). */
  expire(now = Date.now()): void {
    try {
      this.#db.prepare('DELETE FROM uploads WHERE time <= ?').run(now - this.#ttlMs);
    } catch (error) {
      if (stateDbErrorCode(error) === undefined) throw error;
    }
  }

  close(): void {
    this.#db.close();
  }
}
