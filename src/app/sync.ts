import { IbsError, toIbsError, aclPathOrRoot, parseStoreName, decodeIndex, effectivePrivileges, indexChunks, formatNamespace, formatSnapshot, parseAuthId, parseGroup, parseNamespace, remoteAclPath, requirePrivilege, datastoreAclPath, type AclEntry, type Namespace, type SnapshotRef } from '../core/index.ts';
import type { SyncJobConfig } from '../config/index.ts';
import { Datastore } from '../datastore/index.ts';
import { JobStateStore, summaryOf } from '../jobs/index.ts';
import { TokenBucket, formatBytes, formatDuration, formatRate } from '../lib/index.ts';
import { DatastoreSide, RemoteSide, decryptTransform, encryptTransform, encodeListing, groupKey, listDatastore, parseGroupFilter, parseIncludeFilter, planSync, runSync, checkDepth, type SyncPolicy, type SyncReport, type SyncSource, type SyncTarget, type ListingJson, type SideSnapshot, type SnapshotTransform } from '../sync/index.ts';
import { withDatastore, type AppContext } from './context.ts';
import { connectRemote } from './remotes.ts';
import { encryptingKey } from './keys.ts';
import { lastRunOf, listJobs } from './job-status.ts';
import { listed } from './jobs.ts';

const MIB = 1024 * 1024;

/** What `sync create` accepts; unset options take the defaults of SyncJobConfig. */
export type SyncJobInput = Partial<Omit<SyncJobConfig, 'id' | 'store' | 'remoteStore' | 'direction'>> & { id: string; store: string; remoteStore: string; direction: 'push' | 'pull'; bwlimit?: number };

/** The job as it would be stored: defaults applied (also for permission checks before creating it). */
export function syncJobDefaults(input: SyncJobInput): SyncJobConfig {
  const { bwlimit, ...rest } = input;
  return {
    ns: '',
    remoteNs: '',
    includes: [],
    groupFilters: [],
    removeVanished: false,
    verifiedOnly: false,
    encryptedOnly: false,
    resyncCorrupt: false,
    workerThreads: 1,
    ioWeight: 'normal',
    encryptOnPush: false,
    associatedKeys: [],
    ...(bwlimit !== undefined ? { rateIn: bwlimit, rateOut: bwlimit } : {}),
    ...rest,
  };
}

/** Everything a job names must parse and exist before it is stored. */
async function checkJob(ctx: AppContext, job: SyncJobConfig): Promise<void> {
  job.groupFilters.forEach(parseGroupFilter);
  job.includes.forEach(parseIncludeFilter);
  await ctx.datastores.get(job.store);
  if (job.remote !== undefined) await ctx.remotes.get(job.remote);
  else await ctx.datastores.get(job.remoteStore);
  if (job.owner !== undefined) parseAuthId(job.owner);
  checkDepth({ sourceNs: parseNamespace(job.direction === 'pull' ? job.remoteNs : job.ns), targetNs: parseNamespace(job.direction === 'pull' ? job.ns : job.remoteNs), maxDepth: job.maxDepth });
  if (job.activeKey !== undefined) await (job.encryptOnPush ? encryptingKey(ctx, job.activeKey) : ctx.keys.info(job.activeKey));
  for (const k of job.associatedKeys) await ctx.keys.info(k);
}

export async function createSyncJob(ctx: AppContext, input: SyncJobInput): Promise<SyncJobConfig> {
  const job = syncJobDefaults(input);
  await checkJob(ctx, job);
  return ctx.jobs.sync.add(job);
}

export async function updateSyncJob(ctx: AppContext, id: string, change: Partial<SyncJobInput> & { delete?: string[] }): Promise<SyncJobConfig> {
  // Read as stored: the change may correct a setting edited by hand into something invalid.
  const current = await ctx.jobs.sync.getStored(id);
  const { bwlimit, delete: drop = [], ...rest } = change;
  const next: Record<string, unknown> = { ...current, ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)), ...(bwlimit !== undefined ? { rateIn: bwlimit, rateOut: bwlimit } : {}) };
  for (const key of drop) {
    if (['id', 'store', 'remoteStore', 'direction'].includes(key)) throw new IbsError('INVALID_ARGUMENT', `Cannot delete "${key}" of a sync job: it is required`);
    delete next[key];
  }
  const job = syncJobDefaults(next as SyncJobInput);
  // A new active key keeps the old one associated: what it encrypted stays readable.
  if (current.activeKey !== undefined && job.activeKey !== current.activeKey && !job.associatedKeys.includes(current.activeKey)) job.associatedKeys = [...job.associatedKeys, current.activeKey];
  await checkJob(ctx, job);
  return ctx.jobs.sync.update(id, () => job);
}

export async function removeSyncJob(ctx: AppContext, id: string): Promise<void> {
  await ctx.jobs.sync.remove(id);
  const state = new JobStateStore(ctx.paths.stateDir);
  try {
    state.remove(`sync/${id}`);
  } finally {
    state.close();
  }
}

/** Pull: Audit+Backup on the local store (Prune with remove-vanished, Modify for another owner) and Remote.Read; push: Remote.Audit+DatastoreBackup (DatastorePrune for removals) and Read+Audit locally. */
export function checkSyncPermissions(acl: AclEntry[], authId: string, job: SyncJobConfig): void {
  // A job as stored may name a datastore or namespace that does not read: its privileges are then needed on /.
  // (A remote's name follows the rules of a datastore's.)
  const local = aclPathOrRoot(() => datastoreAclPath(parseStoreName(job.store), parseNamespace(job.ns)));
  const other = aclPathOrRoot(() => (job.remote !== undefined ? remoteAclPath(parseStoreName(job.remote), parseStoreName(job.remoteStore), parseNamespace(job.remoteNs)) : datastoreAclPath(parseStoreName(job.remoteStore), parseNamespace(job.remoteNs))));
  if (job.direction === 'pull') {
    requirePrivilege(acl, authId, local, 'Datastore.Audit');
    requirePrivilege(acl, authId, local, 'Datastore.Backup');
    if (job.removeVanished) requirePrivilege(acl, authId, local, 'Datastore.Prune');
    if (job.owner !== undefined && job.owner !== authId) requirePrivilege(acl, authId, local, 'Datastore.Modify');
    requirePrivilege(acl, authId, other, job.remote !== undefined ? 'Remote.Read' : 'Datastore.Read');
  } else {
    requirePrivilege(acl, authId, local, 'Datastore.Read');
    requirePrivilege(acl, authId, local, 'Datastore.Audit');
    if (job.remote !== undefined) {
      requirePrivilege(acl, authId, other, 'Remote.Audit');
      requirePrivilege(acl, authId, other, 'Remote.DatastoreBackup');
      if (job.removeVanished) requirePrivilege(acl, authId, other, 'Remote.DatastorePrune');
    } else {
      requirePrivilege(acl, authId, other, 'Datastore.Backup');
      if (job.removeVanished) requirePrivilege(acl, authId, other, 'Datastore.Prune');
    }
  }
}

interface OpenJob {
  source: SyncSource;
  target: SyncTarget & SyncSource;
  sourceNs: Namespace;
  targetNs: Namespace;
  owner: string;
  origin: string;
  close(): Promise<void>;
}

async function openDatastoreSide(ctx: AppContext, name: string): Promise<{ side: DatastoreSide; close: () => Promise<void> }> {
  const config = await ctx.datastores.get(name);
  const backend = ctx.openBackend(config);
  try {
    const ds = await Datastore.open(backend, { signal: ctx.signal });
    return { side: new DatastoreSide(ds, `datastore ${name}`, { pool: () => ctx.chunkPool }), close: () => backend.close() };
  } catch (error) {
    await backend.close();
    throw error;
  }
}

/** Opens both sides of a job: the local datastore, and the remote's datastore (API) or a second local one. */
async function openJob(ctx: AppContext, job: SyncJobConfig, options: { idleTimeoutMs?: number } = {}): Promise<OpenJob> {
  const local = await openDatastoreSide(ctx, job.store);
  let other: DatastoreSide | RemoteSide;
  let remoteAuth: string | undefined;
  try {
    if (job.remote !== undefined) {
      const { client, remote } = await connectRemote(ctx, job.remote, options);
      other = new RemoteSide(client, job.remoteStore, `remote ${job.remote}, store ${job.remoteStore}`);
      remoteAuth = remote.authId;
    } else {
      const o = await openDatastoreSide(ctx, job.remoteStore);
      other = o.side;
      const closeLocal = local.close;
      local.close = async () => {
        await o.close();
        await closeLocal();
      };
    }
  } catch (error) {
    await local.close();
    throw error;
  }
  const close = async (): Promise<void> => {
    if (other instanceof RemoteSide) await other.close().catch(() => {});
    await local.close();
  };
  const pull = job.direction === 'pull';
  return {
    source: pull ? other : local.side,
    target: pull ? local.side : other,
    sourceNs: parseNamespace(pull ? job.remoteNs : job.ns),
    targetNs: parseNamespace(pull ? job.ns : job.remoteNs),
    // Pull: groups belong to the job's owner. Push: the remote session writes as the remote's auth-id.
    owner: !pull && remoteAuth !== undefined ? remoteAuth : (job.owner ?? 'root@pam'),
    origin: pull ? other.label : local.side.label,
    close,
  };
}

function policyOf(job: SyncJobConfig, open: OpenJob, overrides: Partial<SyncPolicy> = {}): SyncPolicy {
  return {
    sourceNs: open.sourceNs,
    targetNs: open.targetNs,
    maxDepth: job.maxDepth,
    groupFilters: job.groupFilters.map(parseGroupFilter),
    includes: job.includes.map(parseIncludeFilter),
    transferLast: job.transferLast,
    verifiedOnly: job.verifiedOnly,
    encryptedOnly: job.encryptedOnly,
    removeVanished: job.removeVanished,
    resyncCorrupt: job.resyncCorrupt,
    owner: open.owner,
    encrypt: false,
    ...overrides,
  };
}

export interface SyncRunResult extends SyncReport {
  job: string;
  direction: 'push' | 'pull';
  source: string;
  target: string;
  summary: string;
}

function summarize(r: SyncReport): string {
  const reasons = new Map<string, number>();
  for (const s of r.skipped) reasons.set(s.reason, (reasons.get(s.reason) ?? 0) + 1);
  const rate = r.seconds > 0 ? r.bytesSent / r.seconds : 0;
  const parts = [
    `transferred ${formatBytes(r.bytesSent)} in ${r.chunksSent} chunks at ${formatRate(rate)} (${formatDuration(r.seconds)})`,
    `copied ${r.copied.length} snapshot(s), ${r.chunksPresent} chunk(s) already on the target`,
    reasons.size > 0 ? `skipped ${[...reasons].map(([k, n]) => `${n} ${k}`).join(', ')}` : 'skipped none',
    `removed vanished ${r.removed.length}`,
  ];
  if (r.skippedGroups.length) parts.push(`groups skipped (owner) ${r.skippedGroups.length}`);
  if (r.chunksResent) parts.push(`${r.chunksResent} chunk(s) re-sent after failing verification`);
  return parts.join('; ');
}

/**
 * Runs a sync job once: lists both sides, plans (filters, namespace mapping, set difference), copies with the
 * job's bandwidth limit and worker threads, verifies what arrived, removes vanished snapshots when asked.
 * Per-group failures do not stop the others; the run then fails listing each.
 */
export async function runSyncJob(ctx: AppContext, input: { id: string; upid?: string; onBytes?: (bytes: number) => void; idleTimeoutMs?: number; resyncCorrupt?: boolean }): Promise<SyncRunResult> {
  const job = await ctx.jobs.sync.get(input.id);
  const open = await openJob(ctx, job, input.idleTimeoutMs !== undefined ? { idleTimeoutMs: input.idleTimeoutMs } : {});
  try {
    return await executeJob(ctx, job, open, input);
  } finally {
    await open.close();
  }
}

async function executeJob(ctx: AppContext, job: SyncJobConfig, open: OpenJob, input: { upid?: string; onBytes?: (bytes: number) => void; resyncCorrupt?: boolean; damaged?: ReadonlySet<string> }): Promise<SyncRunResult> {
  const reporter = ctx.reporter;
  reporter.info(`sync job ${job.id}: ${job.direction} from ${open.source.label} (${formatNamespace(open.sourceNs) || 'root'}) to ${open.target.label} (${formatNamespace(open.targetNs) || 'root'})`);
  const [sourceList, targetList] = await Promise.all([open.source.list(open.sourceNs, job.maxDepth, { signal: ctx.signal }), open.target.list(open.targetNs, job.maxDepth, { signal: ctx.signal })]);
  if (sourceList.namespaces.length === 0) throw new IbsError('NOT_FOUND', `Namespace "${formatNamespace(open.sourceNs)}" does not exist on ${open.source.label}`);
  const policy = policyOf(job, open, { ...(input.resyncCorrupt ? { resyncCorrupt: true } : {}), ...(input.damaged ? { damaged: input.damaged } : {}), encrypt: job.direction === 'push' && job.encryptOnPush });
  const plan = planSync(sourceList, targetList, policy);
  const transformFor = await transforms(ctx, job);
  const rate = (job.direction === 'pull' ? job.rateIn : job.rateOut) ?? 0;
  const burst = job.direction === 'pull' ? job.burstIn : job.burstOut;
  const bucket = rate > 0 ? new TokenBucket(rate * MIB, burst !== undefined && burst > 0 ? burst * MIB : undefined) : undefined;
  if (bucket) reporter.info(`bandwidth limit: ${rate} MiB/s`);
  if (job.ioWeight === 'low') reporter.info('I/O weight low: at most 2 chunk writes in flight per group');
  const report = await runSync(open.source, open.target, plan, policy, {
    signal: ctx.signal,
    bucket,
    workerThreads: job.workerThreads,
    ioWeight: job.ioWeight,
    upid: input.upid,
    origin: open.origin,
    log: (l) => reporter.info(l),
    warn: (l) => reporter.warn(l),
    progress: (e) => reporter.progress(e),
    ...(input.onBytes ? { onBytes: input.onBytes } : {}),
    ...(transformFor ? { transformFor } : {}),
  });
  const summary = summarize(report);
  reporter.info(`summary: ${summary}`);
  const result: SyncRunResult = { job: job.id, direction: job.direction, source: open.source.label, target: open.target.label, summary, ...report };
  if (report.failed.length > 0) {
    // One cause for all (a full target, a missing privilege): its code, and so its exit code; else UNAVAILABLE.
    const codes = new Set(report.failed.map((f) => f.code));
    const code = codes.size === 1 ? (report.failed[0]?.code ?? 'UNAVAILABLE') : 'UNAVAILABLE';
    throw new IbsError(code, `sync job ${job.id}: ${report.failed.length} group(s) failed: ${report.failed.map((f) => `${f.group}: ${f.error}`).join('; ')}`, { details: { ...result } });
  }
  return result;
}

/**
 * The encryption changes of a job: a push with --encrypt-on-push encrypts plaintext snapshots with the active
 * key (encrypted ones pass untouched); a pull decrypts snapshots whose key is one of the associated keys.
 */
async function transforms(ctx: AppContext, job: SyncJobConfig): Promise<((s: SideSnapshot) => SnapshotTransform | undefined) | undefined> {
  if (job.direction === 'push' && job.encryptOnPush) {
    const name = job.activeKey as string;
    await encryptingKey(ctx, name); // archived since the job was made: refused at run time too
    const key = await ctx.keys.get(name);
    ctx.reporter.info(`encrypt on push with server key ${name} (${key.fingerprint})`);
    const t = encryptTransform(key);
    return (s) => (s.manifest.files.every((f) => f.cryptMode === 'none') && s.manifest.keyFingerprint === undefined ? t : undefined);
  }
  if (job.direction === 'pull' && job.associatedKeys.length > 0) {
    const byFingerprint = new Map<string, SnapshotTransform>();
    for (const name of job.associatedKeys) {
      const key = await ctx.keys.get(name);
      byFingerprint.set(key.fingerprint, decryptTransform(key));
    }
    return (s) => (s.manifest.keyFingerprint !== undefined ? byFingerprint.get(s.manifest.keyFingerprint) : undefined);
  }
  return undefined;
}

export interface DiffRow {
  where: 'source only' | 'target only' | 'differs';
  snapshot: string;
}

/**
 * Compares both sides of a job (or of a source and a remote store given directly): snapshots on one side
 * only, and snapshots whose files differ. `aligned` when there is nothing to report.
 */
export async function syncDiff(ctx: AppContext, input: { id?: string; store?: string; remote?: string; remoteStore?: string; ns?: string; remoteNs?: string; direction?: 'push' | 'pull' }): Promise<{ aligned: boolean; source: string; target: string; rows: DiffRow[] }> {
  const job: SyncJobConfig = input.id !== undefined
    ? await ctx.jobs.sync.get(input.id)
    : syncJobDefaults({ id: 'diff', store: input.store ?? '', remoteStore: input.remoteStore ?? '', direction: input.direction ?? 'push', ...(input.remote ? { remote: input.remote } : {}), ns: input.ns ?? '', remoteNs: input.remoteNs ?? '' });
  if (input.id === undefined) {
    if (!input.store || !input.remoteStore) throw new IbsError('INVALID_ARGUMENT', 'sync diff needs --name JOB, or --source STORE with --remote R and --remote-repository S');
    await ctx.datastores.get(job.store);
  }
  const open = await openJob(ctx, job);
  try {
    const [s, t] = await Promise.all([open.source.list(open.sourceNs, job.maxDepth), open.target.list(open.targetNs, job.maxDepth)]);
    const policy = policyOf(job, open, { includes: [], transferLast: undefined, verifiedOnly: false, encryptedOnly: false, removeVanished: true, resyncCorrupt: false });
    const plan = planSync(s, t, policy);
    const rows: DiffRow[] = [];
    for (const g of plan.groups) {
      for (const c of g.copy) rows.push({ where: 'source only', snapshot: formatSnapshot(c.snapshot.ref) });
      for (const r of g.remove) rows.push({ where: 'target only', snapshot: formatSnapshot(r) });
      for (const k of g.skip) {
        if (k.reason === 'protected') rows.push({ where: 'target only', snapshot: `${k.snapshot} (protected)` });
        if (k.reason === 'unreadable on the source' || k.reason === 'unreadable on the target') rows.push({ where: 'differs', snapshot: `${k.snapshot} (${k.reason})` });
      }
    }
    for (const d of plan.differs) rows.push({ where: 'differs', snapshot: formatSnapshot(d.target) });
    return { aligned: rows.length === 0, source: open.source.label, target: open.target.label, rows };
  } finally {
    await open.close();
  }
}


/**
 * Full comparison and repair: every chunk every replica snapshot references is checked on the target
 * (missing or damaged ones are moved aside), affected snapshots are synced again from the source, and
 * snapshots missing on the target are copied.
 */
export async function syncRepair(ctx: AppContext, input: { id: string; upid?: string; onBytes?: (bytes: number) => void }): Promise<SyncRunResult & { damaged: string[] }> {
  const job = await ctx.jobs.sync.get(input.id);
  const open = await openJob(ctx, job);
  try {
    const damaged = new Set<string>();
    const targetList = await open.target.list(open.targetNs, job.maxDepth, { signal: ctx.signal });
    let checked = 0;
    for (const snap of targetList.snapshots) {
      const name = formatSnapshot(snap.ref);
      const digests = new Set<string>();
      try {
        const src = await open.target.open(snap.ref, { signal: ctx.signal });
        try {
          for (const f of snap.manifest.files) {
            if (/\.(didx|fidx)$/.test(f.filename)) for (const span of indexChunks(decodeIndex(await src.readFile(f.filename, { signal: ctx.signal }), `${f.filename} of ${name}`))) digests.add(span.digest);
          }
        } finally {
          await src.close();
        }
      } catch (error) {
        damaged.add(name);
        ctx.reporter.warn(`${name}: cannot read its index on the target (${(error as Error).message}); it will be synced again`);
        continue;
      }
      const bad = await open.target.checkChunks([...digests], { signal: ctx.signal });
      checked += digests.size;
      if (bad.length > 0) {
        damaged.add(name);
        ctx.reporter.warn(`${name}: ${bad.length} chunk(s) missing or damaged on the target; it will be synced again`);
      }
    }
    // A copy whose manifest does not read is replaced whole from the source (the planner finds it in the listing).
    for (const d of targetList.damaged ?? []) {
      damaged.add(formatSnapshot(d.ref));
      ctx.reporter.warn(`${formatSnapshot(d.ref)}: its manifest does not read on the target; it will be synced again`);
    }
    ctx.reporter.info(`checked ${checked} chunk reference(s) of ${targetList.snapshots.length} snapshot(s) on ${open.target.label}: ${damaged.size} damaged`);
    const result = await executeJob(ctx, job, open, { ...input, resyncCorrupt: true, damaged });
    return { ...result, damaged: [...damaged] };
  } finally {
    await open.close();
  }
}

/**
 * Per job: configuration plus last run and next run. A job whose stored settings do not check is listed as
 * stored, with `problem` naming what and how to correct it (it does not run until then).
 */
export async function listSyncJobs(ctx: AppContext): Promise<Array<SyncJobConfig & { lastRun?: string; lastState?: string; lastStatus?: string; lastUpid?: string; lastSummary?: string; nextRun?: string; problem?: string }>> {
  const rows = new Map((await listJobs(ctx)).map((r) => [r.job, r]));
  const state = new JobStateStore(ctx.paths.stateDir);
  try {
    return listed(await ctx.jobs.sync.listChecked()).map((j) => {
      const r = rows.get(`sync/${j.id}`);
      return { ...j, ...lastRunOf(state.get(`sync/${j.id}`, Date.now())), ...(r?.nextRun ? { nextRun: r.nextRun } : {}) };
    });
  } finally {
    state.close();
  }
}

/** One sync job with its last and next run. */
export async function showSyncJob(ctx: AppContext, id: string): Promise<Awaited<ReturnType<typeof listSyncJobs>>[number]> {
  const job = (await listSyncJobs(ctx)).find((j) => j.id === id);
  if (!job) throw new IbsError('NOT_FOUND', `Sync job "${id}" does not exist (see "ironcore-backup sync list")`);
  return job;
}

/** Runs `fn` as a run of job `jobId` outside the scheduler, recording its start and result (for `sync list`). */
export async function recordJobRun<T>(ctx: AppContext, jobId: string, fn: () => Promise<T>): Promise<T> {
  const state = new JobStateStore(ctx.paths.stateDir);
  // The record is bookkeeping: one that cannot be written (a full disk) is a warning, not the run's end.
  const note = (record: () => void): void => {
    try {
      record();
    } catch (error) {
      ctx.reporter.warn(toIbsError(error).message);
    }
  };
  try {
    state.get(jobId, Date.now());
    note(() => state.started(jobId, Date.now(), 'local (no server)'));
    let result: T;
    try {
      result = await fn();
    } catch (error) {
      note(() => state.finished(jobId, Date.now(), 'error', (error as Error).message.slice(0, 500)));
      throw error;
    }
    note(() => state.finished(jobId, Date.now(), 'ok', 'OK', summaryOf(result)));
    return result;
  } finally {
    state.close();
  }
}

/** Collects a running job's transferred bytes per minute and stores them (every 10 s and at the end). */
export function bandwidthRecorder(ctx: AppContext, id: string): { add: (bytes: number) => void; close: () => void } {
  const state = new JobStateStore(ctx.paths.stateDir);
  const pending = new Map<number, number>();
  // Minutes the store would not take (a full disk) stay pending and go with a later flush; at the end, what
  // is left is a warning (the chart misses them, the run does not fail).
  let failure: IbsError | undefined;
  const flush = (): void => {
    for (const [minute, bytes] of pending) {
      try {
        state.addBytes(`sync/${id}`, minute, bytes);
      } catch (error) {
        // Also from a timer: whatever the failure, it must not end the process.
        failure = toIbsError(error);
        return;
      }
      pending.delete(minute);
    }
    failure = undefined;
  };
  const timer = setInterval(flush, 10_000);
  timer.unref();
  return {
    add: (bytes) => {
      const minute = Math.floor(Date.now() / 60_000);
      pending.set(minute, (pending.get(minute) ?? 0) + bytes);
    },
    close: () => {
      clearInterval(timer);
      flush();
      state.close();
      if (failure) ctx.reporter.warn(`bytes per minute of this run not recorded: ${failure.message}`);
    },
  };
}

/** Bytes per minute a job moved, for a bandwidth chart. */
export function syncBandwidth(ctx: AppContext, input: { id: string; minutes?: number }): Array<{ time: string; bytes: number }> {
  const state = new JobStateStore(ctx.paths.stateDir);
  try {
    const now = Math.floor(Date.now() / 60_000);
    return state.bytesSeries(`sync/${input.id}`, now - (input.minutes ?? 1440)).map((p) => ({ time: new Date(p.minute * 60_000).toISOString(), bytes: p.bytes }));
  } finally {
    state.close();
  }
}


const RENAMED: Record<string, string> = { include: 'includes', 'group-filter': 'groupFilters', 'active-encryption-key': 'activeKey', 'associated-key': 'associatedKeys' };

/** Sync job options as the CLI and the API spell them (kebab-case, `include`, `group-filter`, …) to a job input. */
export function syncJobInput(values: Record<string, unknown>): Partial<SyncJobInput> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    out[RENAMED[k] ?? k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())] = v;
  }
  return out as Partial<SyncJobInput>;
}


/** The sync listing a remote side asks for: only namespaces the caller may see; with only Datastore.Backup, its own groups. */
export async function syncListing(ctx: AppContext, acl: AclEntry[], input: { store: string; ns: string; maxDepth?: number; withDamaged?: boolean }): Promise<ListingJson> {
  const root = parseNamespace(input.ns);
  const config = await ctx.datastores.get(input.store);
  const backend = ctx.openBackend(config);
  try {
    const ds = await Datastore.open(backend, { signal: ctx.signal });
    const rootPrivs = effectivePrivileges(acl, ctx.authId, datastoreAclPath(input.store, root));
    if (!['Datastore.Audit', 'Datastore.Read', 'Datastore.Backup'].some((p) => rootPrivs.has(p as 'Datastore.Audit'))) {
      throw new IbsError('PERMISSION_DENIED', `Permission check failed: ${ctx.authId} lacks Datastore.Audit, Datastore.Read or Datastore.Backup on ${datastoreAclPath(input.store, root)}`);
    }
    const listing = await listDatastore(ds, root, input.maxDepth, { signal: ctx.signal, withDamaged: true });
    // Privileges per namespace, computed once each (listings hold many snapshots per namespace).
    const privs = new Map<string, ReturnType<typeof effectivePrivileges>>();
    const privilegesOn = (ns: Namespace): ReturnType<typeof effectivePrivileges> => {
      const path = datastoreAclPath(input.store, ns);
      let p = privs.get(path);
      if (!p) privs.set(path, (p = effectivePrivileges(acl, ctx.authId, path)));
      return p;
    };
    const mayAll = (ns: Namespace): boolean => privilegesOn(ns).has('Datastore.Audit') || privilegesOn(ns).has('Datastore.Read');
    const mayOwn = (ns: Namespace): boolean => privilegesOn(ns).has('Datastore.Backup');
    const visible = (ref: SnapshotRef): boolean => mayAll(ref.ns) || (mayOwn(ref.ns) && listing.owners.get(groupKey(ref)) === ctx.authId);
    const snapshots = listing.snapshots.filter((s) => visible(s.ref));
    const groups = new Set(snapshots.map((s) => groupKey(s.ref)));
    const damaged = (listing.damaged ?? []).filter((d) => visible(d.ref));
    for (const d of damaged) groups.add(groupKey(d.ref));
    return encodeListing(
      {
        namespaces: listing.namespaces.filter((ns) => mayAll(ns) || mayOwn(ns)),
        snapshots,
        owners: new Map([...listing.owners].filter(([key]) => groups.has(key))),
        ...(damaged.length > 0 ? { damaged } : {}),
      },
      { withDamaged: input.withDamaged === true },
    );
  } finally {
    await backend.close();
  }
}

export async function removeGroup(ctx: AppContext, input: { store: string; ns: string; group: string }): Promise<void> {
  const group = parseGroup(input.group, parseNamespace(input.ns));
  await withDatastore(ctx, input.store, async (ds) => {
    await ds.assertWritable('remove a group');
    await ds.removeGroup(group, { signal: ctx.signal });
  });
}

export async function checkChunks(ctx: AppContext, input: { store: string; digests: string[] }): Promise<string[]> {
  return withDatastore(ctx, input.store, (ds) => new DatastoreSide(ds, `datastore ${input.store}`).checkChunks(input.digests, { signal: ctx.signal }));
}
