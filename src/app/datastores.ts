import { mkdir, readdir, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { IbsError, parseStoreName, toIbsError, validateKeepOptions, type KeepOptions } from '../core/index.ts';
import type { DatastoreConfig } from '../config/index.ts';
import { Datastore, datastoreStats, readGcStatus, FORMAT_VERSION, type DatastoreStats } from '../datastore/index.ts';
import type { SpaceInfo } from '../storage/index.ts';
import { withDatastore, type AppContext } from './context.ts';
import { listSyncJobs } from './sync.ts';

export async function createDatastore(ctx: AppContext, input: { name: string; path?: string; comment?: string; keep?: KeepOptions }): Promise<DatastoreConfig> {
  parseStoreName(input.name);
  validateKeepOptions(input.keep ?? {});
  const path = input.path ?? join(ctx.paths.dataDir, input.name);
  // As stored: another datastore whose settings do not check does not stop this one.
  const existing = (await ctx.datastores.listChecked()).map((d) => ({ name: d.name, path: d.config?.path ?? d.path }));
  if (existing.some((d) => d.name === input.name)) throw new IbsError('EXISTS', `Datastore "${input.name}" is already configured`);
  const clash = existing.find((d) => d.path === path);
  if (clash) throw new IbsError('EXISTS', `Path "${path}" is already used by datastore "${clash.name}"`);
  const st = await stat(path).catch(() => undefined);
  if (st && !st.isDirectory()) throw new IbsError('INVALID_ARGUMENT', `Cannot create datastore at "${path}": it exists and is not a directory`);
  if (st && (await readdir(path)).length > 0) throw new IbsError('EXISTS', `Cannot create datastore at "${path}": the directory is not empty`);
  const config: DatastoreConfig = { name: input.name, backend: 'local', path, keep: input.keep ?? {}, ...(input.comment ? { comment: input.comment } : {}) };
  await mkdir(path, { recursive: true });
  const backend = ctx.openBackend(config);
  try {
    await Datastore.create(backend, { signal: ctx.signal });
  } finally {
    await backend.close();
  }
  try {
    await ctx.datastores.add(config);
  } catch (error) {
    if (!st) await rm(path, { recursive: true, force: true });
    else await rm(join(path, '.ibs-datastore'), { force: true });
    throw error;
  }
  return config;
}

export async function updateDatastore(ctx: AppContext, input: { name: string; comment?: string; keep?: KeepOptions; gcSchedule?: string }): Promise<DatastoreConfig> {
  return ctx.datastores.update(input.name, (c) => {
    const next: DatastoreConfig = { ...c, ...(input.comment !== undefined ? { comment: input.comment } : {}), keep: { ...c.keep, ...input.keep } };
    if (input.gcSchedule !== undefined) {
      if (input.gcSchedule === '') delete next.gcSchedule;
      else next.gcSchedule = input.gcSchedule;
    }
    return next;
  });
}

/** The datastores; one whose stored settings do not check is listed with `problem`, naming what (and how to correct it). */
export async function listDatastores(ctx: AppContext): Promise<Array<DatastoreConfig | { name: string; path?: string; problem: string }>> {
  return (await ctx.datastores.listChecked()).map((d) => d.config ?? { name: d.name, ...(d.path !== undefined ? { path: d.path } : {}), problem: d.error?.message ?? 'does not read' });
}

export async function showDatastore(ctx: AppContext, name: string): Promise<DatastoreConfig & { id: string; format: number; quarantine?: { reason: string; since: string }; lastSync?: Record<string, string> }> {
  return withDatastore(ctx, name, async (ds, config) => {
    const q = await ds.quarantineState();
    const lastSync = await lastSyncOf(ctx, name);
    return { ...config, id: ds.marker.id, format: ds.marker.format, ...(q ? { quarantine: q } : {}), ...(lastSync ? { lastSync } : {}) };
  });
}

/** The most recent run of any sync job of a datastore: job, direction, time, result, UPID. */
async function lastSyncOf(ctx: AppContext, store: string): Promise<Record<string, string> | undefined> {
  // Without sync jobs there is nothing to report (and no job state to open).
  if (!(await ctx.jobs.sync.listStored()).some((j) => j.store === store)) return undefined;
  const runs = (await listSyncJobs(ctx)).filter((j) => j.store === store && j.lastRun !== undefined).sort((a, b) => ((a.lastRun as string) < (b.lastRun as string) ? 1 : -1));
  const last = runs[0];
  if (!last) return undefined;
  return { job: last.id, direction: last.direction, time: last.lastRun as string, result: last.lastState ?? '', ...(last.lastUpid ? { upid: last.lastUpid } : {}), ...(last.lastStatus && last.lastState !== 'ok' ? { status: last.lastStatus } : {}), ...(last.lastSummary ? { summary: last.lastSummary } : {}) };
}

/** Removes the configuration; the data only with `destroyData`. */
/**
 * Removes a datastore from the configuration, and with `destroyData` its data. One whose stored settings do not
 * check can still be removed, but not destroyed: its path is not to be trusted.
 */
export async function removeDatastore(ctx: AppContext, input: { name: string; destroyData?: boolean }): Promise<{ name: string; path?: string }> {
  let config: DatastoreConfig | undefined;
  try {
    config = await ctx.datastores.get(input.name);
  } catch (error) {
    if (input.destroyData || toIbsError(error).code !== 'CORRUPT') throw error;
  }
  if (config && input.destroyData) {
    const backend = ctx.openBackend(config);
    try {
      await Datastore.open(backend);
    } finally {
      await backend.close();
    }
  }
  await ctx.datastores.remove(input.name);
  if (config && input.destroyData) await rm(config.path, { recursive: true, force: true });
  return config ?? { name: input.name };
}

export async function statsDatastore(ctx: AppContext, name: string): Promise<DatastoreStats & { lastGc?: { finishedAt: string; removedChunks: number; removedBytes: number } }> {
  return withDatastore(ctx, name, async (ds) => {
    const stats = await datastoreStats(ds, { signal: ctx.signal });
    const gc = await readGcStatus(ds);
    return { ...stats, ...(gc ? { lastGc: { finishedAt: gc.finishedAt, removedChunks: gc.removedChunks, removedBytes: gc.removedBytes } } : {}) };
  });
}

export interface ProbeResult {
  name: string;
  location: string;
  reachable: boolean;
  writable: boolean;
  format?: number;
  supportedFormat: number;
  quarantined?: string;
  error?: string;
}

/** Checks that a datastore is reachable, readable as our format, and writable (write and remove a probe object). */
export async function probeDatastore(ctx: AppContext, name: string): Promise<ProbeResult> {
  const config = await ctx.datastores.get(name);
  const backend = ctx.openBackend(config);
  const result: ProbeResult = { name, location: backend.info.location, reachable: false, writable: false, supportedFormat: FORMAT_VERSION };
  try {
    const ds = await Datastore.open(backend, { signal: ctx.signal });
    result.reachable = true;
    result.format = ds.marker.format;
    const q = await ds.quarantineState();
    if (q) result.quarantined = q.reason;
    const key = `.probe-${process.pid}-${Date.now()}`;
    await backend.write(key, Buffer.from('probe'));
    const back = await backend.read(key);
    await backend.delete(key);
    result.writable = back.toString() === 'probe';
  } catch (error) {
    result.error = (error as Error).message;
  } finally {
    await backend.close();
  }
  return result;
}

export async function quarantineDatastore(ctx: AppContext, input: { name: string; reason: string }): Promise<void> {
  await withDatastore(ctx, input.name, (ds) => ds.quarantine(input.reason));
}

export async function unquarantineDatastore(ctx: AppContext, name: string): Promise<void> {
  await withDatastore(ctx, name, (ds) => ds.unquarantine());
}

/** Below this share of free bytes or free inodes, a file system counts as low on space. */
export const LOW_SPACE_SHARE = 0.1;

export interface SpaceEntry extends SpaceInfo {
  /** "datastore NAME", or the server's own folders ("server state", "server log", "server configuration"). */
  what: string;
  path: string;
  /** Free bytes or free inodes under LOW_SPACE_SHARE of the total. */
  low: boolean;
}

/**
 * Free space where this server writes: its own folders (task index and logs, configuration) and each
 * datastore, so that a disk filling up is seen before backups, syncs or the task index fail on it. A place
 * that cannot be measured (a datastore whose disk is not mounted, say) is left out.
 */
export async function spaceReport(ctx: AppContext): Promise<SpaceEntry[]> {
  const entry = (what: string, path: string, s: SpaceInfo): SpaceEntry => ({
    what,
    path,
    ...s,
    low: s.freeBytes < s.totalBytes * LOW_SPACE_SHARE || (s.totalInodes !== undefined && s.freeInodes !== undefined && s.totalInodes > 0 && s.freeInodes < s.totalInodes * LOW_SPACE_SHARE),
  });
  const out: SpaceEntry[] = [];
  // The server's folders, once per file system they are on (most often one).
  const own = new Map<number, SpaceEntry>();
  for (const [what, path] of [['server state', ctx.paths.stateDir], ['server log', ctx.paths.logDir], ['server configuration', ctx.paths.configDir]] as const) {
    const [st, fs] = await Promise.all([stat(path).catch(() => undefined), statfs(path).catch(() => undefined)]);
    if (!st || !fs) continue;
    const seen = own.get(st.dev);
    if (seen) seen.what += `, ${what.slice('server '.length)}`;
    else own.set(st.dev, entry(what, path, { freeBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize, freeInodes: fs.ffree, totalInodes: fs.files }));
  }
  out.push(...own.values());
  for (const config of await ctx.datastores.listValid(() => {})) {
    const backend = ctx.openBackend(config);
    try {
      const space = await backend.space({ signal: ctx.signal }).catch(() => undefined);
      if (space) out.push(entry(`datastore ${config.name}`, config.path, space));
    } finally {
      await backend.close();
    }
  }
  return out;
}
