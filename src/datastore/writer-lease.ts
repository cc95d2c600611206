import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { StorageBackend } from '../storage/index.ts';

/**
 * Writer leases: how backups and syncs, in this or another process, tell garbage collection that they are
 * running. A lease is a small object `.writers/<uuid>.json` with the writer's start time, refreshed every
 * `HEARTBEAT_MS`; one not refreshed for `LEASE_TTL_MS` belongs to a writer that died and is ignored. GC takes
 * its cutoff before the oldest live writer's start; prune refuses to remove a snapshot a live writer uses as
 * its base (its chunks are reused without upload). Works on any backend: no file locks needed.
 */

export const LEASE_PREFIX = '.writers/';
export const HEARTBEAT_MS = 30_000;
export const LEASE_TTL_MS = 120_000;

export interface LeaseRecord {
  id: string;
  kind: string;
  host: string;
  pid: number;
  /** Milliseconds since the epoch. */
  start: number;
  heartbeat: number;
  /** Snapshot path (relative, "/"-terminated) this writer creates. */
  target?: string;
  /** Snapshot path whose chunks this writer reuses. */
  base?: string;
}

export class WriterLease {
  readonly record: LeaseRecord;
  readonly #backend: StorageBackend;
  #timer: NodeJS.Timeout | undefined;

  private constructor(backend: StorageBackend, record: LeaseRecord) {
    this.#backend = backend;
    this.record = record;
  }

  static async acquire(backend: StorageBackend, fields: { kind: string; target?: string; base?: string }): Promise<WriterLease> {
    const now = Date.now();
    const record: LeaseRecord = { id: randomUUID(), host: hostname(), pid: process.pid, start: now, heartbeat: now, ...fields };
    const lease = new WriterLease(backend, record);
    await lease.#write();
    lease.#timer = setInterval(() => {
      lease.record.heartbeat = Date.now();
      lease.#write().catch(() => {});
    }, HEARTBEAT_MS);
    lease.#timer.unref();
    return lease;
  }

  async #write(): Promise<void> {
    await this.#backend.write(`${LEASE_PREFIX}${this.record.id}.json`, Buffer.from(JSON.stringify(this.record)));
  }

  async release(): Promise<void> {
    clearInterval(this.#timer);
    await this.#backend.delete(`${LEASE_PREFIX}${this.record.id}.json`);
  }
}

/** Leases whose writer is alive (heartbeat within the TTL), and the keys of stale ones. */
export async function readLeases(backend: StorageBackend, now = Date.now()): Promise<{ live: LeaseRecord[]; stale: string[] }> {
  const live: LeaseRecord[] = [];
  const stale: string[] = [];
  for await (const entry of backend.list(LEASE_PREFIX)) {
    let record: LeaseRecord | undefined;
    try {
      record = JSON.parse((await backend.read(entry.key)).toString('utf8')) as LeaseRecord;
    } catch {
      record = undefined;
    }
    if (record && typeof record.start === 'number' && typeof record.heartbeat === 'number' && now - record.heartbeat < LEASE_TTL_MS) live.push(record);
    else stale.push(entry.key);
  }
  return { live, stale };
}
