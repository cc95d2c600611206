import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { dirname } from 'node:path';
import { IbsError, type ErrorCode } from '../core/index.ts';

/** SQLite's result codes for a file that is not a database, or one whose pages do not read. */
const DAMAGED = new Set([11 /* SQLITE_CORRUPT */, 26 /* SQLITE_NOTADB */]);

/** SQLite's result code of a failed call (its extended code: the primary one is its low byte); undefined for other errors. */
function sqliteCode(error: unknown): number | undefined {
  return (error as { code?: unknown } | undefined)?.code === 'ERR_SQLITE_ERROR' ? Number((error as { errcode?: unknown }).errcode) : undefined;
}

function damaged(error: unknown): boolean {
  return DAMAGED.has(sqliteCode(error) ?? -1);
}

/** SQLite's primary result codes that are about the disk, not the program, and what they mean here. */
const STATE_DB_CODES: ReadonlyMap<number, ErrorCode> = new Map([
  [13 /* SQLITE_FULL */, 'NO_SPACE'],
  [8 /* SQLITE_READONLY */, 'PERMISSION_DENIED'],
  [5 /* SQLITE_BUSY */, 'BUSY'],
  [6 /* SQLITE_LOCKED */, 'BUSY'],
]);

/**
 * A failed write to a state database as the IbsError it means (a full disk: NO_SPACE), saying what could not
 * be recorded and where: `Cannot record a new task (UPID…) in /var/lib/…/tasks.db: database or disk is
 * full`. Others come back as they are.
 */
export function stateDbError(error: unknown, what: string, path: string): unknown {
  const code = stateDbErrorCode(error);
  return code ? new IbsError(code, `${what} in ${path}: ${(error as Error).message}`, { cause: error }) : error;
}

/** The code of a state database's failure that is about the disk (see STATE_DB_CODES); undefined for others. */
export function stateDbErrorCode(error: unknown): ErrorCode | undefined {
  const code = sqliteCode(error);
  return code === undefined ? undefined : STATE_DB_CODES.get(code & 0xff);
}

/**
 * Opens one of the server's state databases (the task index, the job state, the upload ledger) and applies
 * `schema`. Each holds what the server can go on without (task history, last runs, which uploads a resumed
 * backup may skip), never backup data: one that SQLite finds damaged is moved aside as
 * `NAME.damaged-TIME` (with its -wal and -shm files, for inspection) and a new one is made, so that the
 * server still starts and its jobs still run. `warn` hears what happened, naming both files.
 */
export function openStateDatabase(path: string, schema: string, warn: (message: string) => void = (m) => process.stderr.write(`ironcore-backup: ${m}\n`)): DatabaseSync {
  mkdirSync(dirname(path), { recursive: true });
  const open = (): DatabaseSync => {
    const db = new DatabaseSync(path);
    try {
      db.exec(schema);
      return db;
    } catch (error) {
      db.close();
      throw error;
    }
  };
  try {
    return open();
  } catch (error) {
    if (!damaged(error)) throw error;
    const aside = `${path}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    for (const suffix of ['', '-wal', '-shm']) if (existsSync(`${path}${suffix}`)) renameSync(`${path}${suffix}`, `${aside}${suffix}`);
    warn(`${path} does not read (${(error as Error).message}): moved aside to ${aside}, and a new one made (what it held before is in that file)`);
    return open();
  }
}

/**
 * Adds a column that came after the first release to a database made before (empty for its past rows). Two
 * processes may both find it missing: the second one's "duplicate column" is what it wanted.
 */
export function addColumn(db: DatabaseSync, table: string, column: string, type: string): void {
  const columns = (db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name);
  if (columns.includes(column)) return;
  try {
    db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
  } catch (error) {
    if (!/duplicate column/.test((error as Error).message)) throw error;
  }
}
