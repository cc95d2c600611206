import type { DatabaseSync } from 'node:sqlite';
import { appendFile, mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { ERROR_CODES, IbsError, type ErrorCode } from '../core/index.ts';
import { readInto } from '../lib/index.ts';
import { parseUpid, type Upid } from './upid.ts';
import { addColumn, openStateDatabase, stateDbError } from './state-db.ts';

export const TASK_STATES = ['queued', 'running', 'ok', 'warnings', 'error', 'aborted'] as const;
export type TaskState = (typeof TASK_STATES)[number];

export interface TaskRecord {
  upid: string;
  type: string;
  id: string;
  authId: string;
  /** Seconds since the epoch. */
  starttime: number;
  endtime?: number;
  state: TaskState;
  /** "OK", "WARNINGS: n", or the error message. */
  status?: string;
  /** Of a task that failed: its error's code (NO_SPACE, VERIFY_FAILED, …), for the exit code of a command that followed it. */
  code?: ErrorCode;
  pid: number;
  node: string;
}

export interface TaskFilter {
  state?: TaskState | 'finished';
  type?: string;
  /** Seconds since the epoch. */
  since?: number;
  limit?: number;
}

/**
 * Where tasks are recorded: an index in SQLite (`tasks.db`, one row per task) and one log file per task,
 * `tasks/<last two hex digits of the start time>/<UPID>`. The log ends with `TASK OK`,
 * `TASK WARNINGS: <n>` or `TASK ERROR: <message>` when the task ends.
 */
export class TaskStore {
  readonly #db: DatabaseSync;
  readonly #dir: string;
  readonly #path: string;

  private constructor(db: DatabaseSync, dir: string, path: string) {
    this.#db = db;
    this.#dir = dir;
    this.#path = path;
  }

  static async open(stateDir: string): Promise<TaskStore> {
    await mkdir(join(stateDir, 'tasks'), { recursive: true });
    const path = join(stateDir, 'tasks.db');
    const db = openStateDatabase(path, `PRAGMA journal_mode = WAL;
      PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS tasks (
        upid TEXT PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, auth_id TEXT NOT NULL,
        starttime INTEGER NOT NULL, endtime INTEGER, state TEXT NOT NULL, status TEXT,
        pid INTEGER NOT NULL, node TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS tasks_start ON tasks(starttime);`);
    addColumn(db, 'tasks', 'code', 'TEXT');
    return new TaskStore(db, join(stateDir, 'tasks'), path);
  }

  logPath(upid: string): string {
    const u = parseUpid(upid);
    return join(this.#dir, (u.starttime & 0xff).toString(16).toUpperCase().padStart(2, '0'), upid);
  }

  /** Records a new task (synchronously, so that it is visible and ordered from the moment it exists). */
  create(u: Upid, upid: string, state: 'queued' | 'running'): void {
    try {
      this.#db.prepare('INSERT INTO tasks (upid, type, id, auth_id, starttime, state, pid, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(upid, u.type, u.id, u.authId, u.starttime, state, u.pid, u.node);
    } catch (error) {
      throw stateDbError(error, `Cannot record a new task (${upid})`, this.#path);
    }
  }

  /** Records a task's state; one that has ended gets `endtime` (seconds; default now), one that failed its error's `code`. */
  setState(upid: string, state: TaskState, status?: string, endtime?: number, code?: ErrorCode): void {
    const ended = state !== 'queued' && state !== 'running';
    try {
      this.#db.prepare('UPDATE tasks SET state = ?, status = ?, endtime = ?, code = ? WHERE upid = ?').run(state, status ?? null, ended ? (endtime ?? Math.floor(Date.now() / 1000)) : null, code ?? null, upid);
    } catch (error) {
      throw stateDbError(error, `Cannot record the state ${state} of task ${upid}`, this.#path);
    }
  }

  async appendLog(upid: string, lines: string): Promise<void> {
    const path = this.logPath(upid);
    await mkdir(join(path, '..'), { recursive: true });
    await appendFile(path, lines, { mode: 0o640 });
  }

  /**
   * The log from byte `start` on, and its size then (where the next read starts). Only what lies after
   * `start` is read: a follower polling a long task's log reads each line once, not the whole log each time.
   */
  async readLog(upid: string, options: { start?: number } = {}): Promise<{ text: string; size: number }> {
    this.get(upid);
    const start = options.start ?? 0;
    const handle = await open(this.logPath(upid), 'r').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined; // nothing logged yet
      throw error;
    });
    if (!handle) return { text: '', size: 0 };
    try {
      const { size } = await handle.stat();
      if (start >= size) return { text: '', size };
      const data = Buffer.allocUnsafe(size - start);
      const filled = await readInto(handle, data, start);
      return { text: data.subarray(0, filled).toString('utf8'), size: start + filled };
    } finally {
      await handle.close();
    }
  }

  get(upid: string): TaskRecord {
    parseUpid(upid);
    const row = this.#db.prepare('SELECT * FROM tasks WHERE upid = ?').get(upid) as Record<string, unknown> | undefined;
    if (!row) throw new IbsError('NOT_FOUND', `No task ${upid}`);
    return toRecord(row);
  }

  list(filter: TaskFilter = {}): TaskRecord[] {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (filter.state === 'finished') where.push("state NOT IN ('queued', 'running')");
    else if (filter.state) {
      where.push('state = ?');
      args.push(filter.state);
    }
    if (filter.type) {
      where.push('type = ?');
      args.push(filter.type);
    }
    if (filter.since !== undefined) {
      where.push('starttime >= ?');
      args.push(filter.since);
    }
    const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY starttime DESC, upid DESC LIMIT ?`;
    args.push(filter.limit ?? 1000);
    return (this.#db.prepare(sql).all(...args) as Array<Record<string, unknown>>).map(toRecord);
  }

  /** Tasks recorded as queued or running by another process (one that is gone after a crash). */
  unfinishedOf(otherThanPid: number): TaskRecord[] {
    return (this.#db.prepare("SELECT * FROM tasks WHERE state IN ('queued', 'running') AND pid != ?").all(otherThanPid) as Array<Record<string, unknown>>).map(toRecord);
  }

  close(): void {
    this.#db.close();
  }
}

function toRecord(row: Record<string, unknown>): TaskRecord {
  return {
    upid: row.upid as string,
    type: row.type as string,
    id: row.id as string,
    authId: row.auth_id as string,
    starttime: row.starttime as number,
    ...(row.endtime !== null ? { endtime: row.endtime as number } : {}),
    state: row.state as TaskState,
    ...(row.status !== null ? { status: row.status as string } : {}),
    ...(typeof row.code === 'string' && Object.hasOwn(ERROR_CODES, row.code) ? { code: row.code as ErrorCode } : {}),
    pid: row.pid as number,
    node: row.node as string,
  };
}
