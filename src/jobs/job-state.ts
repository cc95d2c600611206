import type { DatabaseSync } from 'node:sqlite';
import { addColumn, openStateDatabase, stateDbError, stateDbErrorCode } from './state-db.ts';
import { join } from 'node:path';

export interface JobState {
  jobId: string;
  /** Milliseconds since the epoch. */
  firstSeen: number;
  lastStart?: number;
  lastEnd?: number;
  lastState?: string;
  lastStatus?: string;
  lastUpid?: string;
  /** What the last run that ended well did, in one line (a sync: transferred, copied, skipped, removed). */
  lastSummary?: string;
}

/** Per scheduled job: when it was first seen and how its last run went. In `jobs.db` under the state dir. */
export class JobStateStore {
  readonly #db: DatabaseSync;
  readonly #path: string;

  constructor(stateDir: string) {
    this.#path = join(stateDir, 'jobs.db');
    this.#db = openStateDatabase(this.#path, `PRAGMA journal_mode = WAL;
      PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS job_state (job_id TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_start INTEGER,
        last_end INTEGER, last_state TEXT, last_status TEXT, last_upid TEXT);
      CREATE TABLE IF NOT EXISTS job_bytes (job_id TEXT NOT NULL, minute INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (job_id, minute));`);
    addColumn(this.#db, 'job_state', 'last_summary', 'TEXT');
  }

  /** The state of a job, recording `now` as first seen when the job is new. */
  get(jobId: string, now: number): JobState {
    try {
      this.#db.prepare('INSERT OR IGNORE INTO job_state (job_id, first_seen) VALUES (?, ?)').run(jobId, now);
    } catch (error) {
      // Not recorded (a full disk): first seen now, as far as this answer goes; a later one records it.
      if (stateDbErrorCode(error) === undefined) throw error;
    }
    const row = this.#db.prepare('SELECT * FROM job_state WHERE job_id = ?').get(jobId) as Record<string, number | string | null> | undefined;
    if (!row) return { jobId, firstSeen: now };
    return {
      jobId,
      firstSeen: row.first_seen as number,
      ...(row.last_start !== null ? { lastStart: row.last_start as number } : {}),
      ...(row.last_end !== null ? { lastEnd: row.last_end as number } : {}),
      ...(row.last_state !== null ? { lastState: row.last_state as string } : {}),
      ...(row.last_status !== null ? { lastStatus: row.last_status as string } : {}),
      ...(row.last_upid !== null ? { lastUpid: row.last_upid as string } : {}),
      ...(row.last_summary !== null && row.last_summary !== undefined ? { lastSummary: row.last_summary as string } : {}),
    };
  }

  started(jobId: string, at: number, upid: string): void {
    this.#write(`Cannot record the start of job ${jobId}`, () => this.#db.prepare("UPDATE job_state SET last_start = ?, last_upid = ?, last_state = 'running', last_status = NULL, last_end = NULL, last_summary = NULL WHERE job_id = ?").run(at, upid, jobId));
  }

  /** Records the end of a run: its state and status and, for one that ended well, what it did (`summary`, at most 500 characters kept). */
  finished(jobId: string, at: number, state: string, status: string, summary?: string): void {
    this.#write(`Cannot record the end of job ${jobId}`, () => this.#db.prepare('UPDATE job_state SET last_end = ?, last_state = ?, last_status = ?, last_summary = ? WHERE job_id = ?').run(at, state, status, summary?.slice(0, 500) ?? null, jobId));
  }

  /** A write, failing as the IbsError it means (NO_SPACE for a full disk, naming what and this file). */
  #write(what: string, write: () => void): void {
    try {
      write();
    } catch (error) {
      throw stateDbError(error, what, this.#path);
    }
  }

  remove(jobId: string): void {
    this.#db.prepare('DELETE FROM job_state WHERE job_id = ?').run(jobId);
    this.#db.prepare('DELETE FROM job_bytes WHERE job_id = ?').run(jobId);
  }

  /** Adds transferred bytes to a job's minute (minutes since the epoch); minutes older than 31 days are dropped. */
  addBytes(jobId: string, minute: number, bytes: number): void {
    this.#write(`Cannot record the bytes of job ${jobId}`, () => {
      this.#db.prepare('INSERT INTO job_bytes (job_id, minute, bytes) VALUES (?, ?, ?) ON CONFLICT (job_id, minute) DO UPDATE SET bytes = bytes + excluded.bytes').run(jobId, minute, bytes);
      this.#db.prepare('DELETE FROM job_bytes WHERE minute < ?').run(minute - 31 * 24 * 60);
    });
  }

  /** Bytes per minute of a job since `sinceMinute`, oldest first (minutes without traffic are absent). */
  bytesSeries(jobId: string, sinceMinute: number): Array<{ minute: number; bytes: number }> {
    return (this.#db.prepare('SELECT minute, bytes FROM job_bytes WHERE job_id = ? AND minute >= ? ORDER BY minute').all(jobId, sinceMinute) as Array<{ minute: number; bytes: number }>).map((r) => ({ minute: Number(r.minute), bytes: Number(r.bytes) }));
  }

  close(): void {
    this.#db.close();
  }
}
