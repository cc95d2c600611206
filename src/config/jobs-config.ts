import { IbsError, KEEP_RULES, parseCalendarEvent, parseNamespace, parseStoreName, validateKeepOptions, type KeepOptions } from '../core/index.ts';
import { SectionConfig, type Section } from './section-config.ts';

/** Scheduled verify jobs (`verification.cfg`) and prune jobs (`prune.cfg`). */

const JOB_ID_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/;

export interface VerifyJobConfig {
  id: string;
  store: string;
  ns: string;
  schedule: string;
  ignoreVerified: boolean;
  outdatedAfterDays?: number;
  /** Every snapshot verified at least once in this many days, the work spread over the runs (1..3650). */
  windowDays?: number;
  /** Snapshots verified at once (1..32, default 1). */
  maxConcurrentSnapshots?: number;
  notificationMode?: 'always' | 'error' | 'never';
  comment?: string;
}

/** A verification window: 1 to 3650 days, and not with ignore-verified/outdated-after, which it replaces. */
export function checkVerifyWindow(days: number | undefined, ignoreVerified: boolean, outdatedAfterDays: number | undefined): void {
  if (days === undefined) return;
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new IbsError('INVALID_ARGUMENT', `Invalid verify-window-days ${days}: expected a whole number of days from 1 to 3650`);
  if (ignoreVerified || outdatedAfterDays !== undefined) throw new IbsError('INVALID_ARGUMENT', 'verify-window-days replaces ignore-verified and outdated-after (it skips what was verified within the window): give one or the other');
}

/** Snapshots a verification may check at once: 1 to 32. */
export function checkConcurrentSnapshots(n: number | undefined): void {
  if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > 32)) throw new IbsError('INVALID_ARGUMENT', `Invalid max-concurrent-snapshots ${n}: expected a whole number from 1 to 32`);
}

export interface PruneJobConfig {
  id: string;
  store: string;
  ns: string;
  schedule: string;
  keep: KeepOptions;
  comment?: string;
}

export interface SyncJobConfig {
  id: string;
  /** The local datastore. */
  store: string;
  /** The remote server; undefined: a sync between two datastores of this server. */
  remote?: string;
  remoteStore: string;
  direction: 'push' | 'pull';
  schedule?: string;
  /** Local namespace root and remote namespace root of the mapping. */
  ns: string;
  remoteNs: string;
  maxDepth?: number;
  includes: string[];
  groupFilters: string[];
  removeVanished: boolean;
  verifiedOnly: boolean;
  encryptedOnly: boolean;
  resyncCorrupt: boolean;
  transferLast?: number;
  /** Owner of groups a pull creates (default root@pam). */
  owner?: string;
  workerThreads: number;
  /** MiB/s (0 or unset: unlimited) and burst MiB per direction. */
  rateIn?: number;
  rateOut?: number;
  burstIn?: number;
  burstOut?: number;
  ioWeight: 'low' | 'normal';
  encryptOnPush: boolean;
  activeKey?: string;
  associatedKeys: string[];
  comment?: string;
}

/**
 * A stored number setting: undefined when absent; a value that is not a number is named, with its setting. Read
 * leniently (`unread` given: an update, whose change may be the correction, or a listing that shows the job with
 * its problem) it is NaN, and its setting is added to `unread`.
 */
const num = (props: Record<string, string>, key: string, unread: string[] | undefined): number | undefined => {
  const v = props[key];
  if (v === undefined || v === '') return undefined;
  if (!/^-?\d+(\.\d+)?$/.test(v)) {
    if (unread) {
      unread.push(key);
      return Number.NaN;
    }
    throw new IbsError('INVALID_ARGUMENT', `Invalid ${key} "${v}": expected a number`);
  }
  return Number(v);
};
/** A stored list setting (JSON), read like `num`: leniently, one that does not read is its text as the only entry. */
const jsonList = (props: Record<string, string>, key: string, unread: string[] | undefined): string[] => {
  const v = props[key];
  if (v === undefined || v === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch {
    parsed = undefined;
  }
  if (Array.isArray(parsed)) return parsed.map(String);
  if (unread) {
    unread.push(key);
    return [v];
  }
  throw new IbsError('INVALID_ARGUMENT', `Invalid ${key} ${JSON.stringify(v)}: expected a JSON list of strings`);
};

function checkSyncJob(j: SyncJobConfig): void {
  checkCommon(j.id, j.store, j.ns, j.schedule ?? '', j.comment, true);
  parseStoreName(j.remoteStore);
  parseNamespace(j.remoteNs);
  if (j.direction !== 'push' && j.direction !== 'pull') throw new IbsError('INVALID_ARGUMENT', `Invalid direction "${String(j.direction)}": expected push or pull`);
  if (j.remote === undefined && j.remoteStore === j.store && j.ns === j.remoteNs) throw new IbsError('INVALID_ARGUMENT', `A local sync from "${j.store}" into itself at the same namespace would copy nothing: choose another datastore or namespace`);
  if (!Number.isInteger(j.workerThreads) || j.workerThreads < 1 || j.workerThreads > 32) throw new IbsError('INVALID_ARGUMENT', `Invalid worker-threads ${j.workerThreads}: expected 1 to 32`);
  if (j.maxDepth !== undefined && (!Number.isInteger(j.maxDepth) || j.maxDepth < 0 || j.maxDepth > 7)) throw new IbsError('INVALID_ARGUMENT', `Invalid max-depth ${j.maxDepth}: expected 0 to 7`);
  if (j.transferLast !== undefined && (!Number.isInteger(j.transferLast) || j.transferLast < 1)) throw new IbsError('INVALID_ARGUMENT', `Invalid transfer-last ${j.transferLast}: expected a whole number of at least 1`);
  for (const [name, v] of [['rate-in', j.rateIn], ['rate-out', j.rateOut], ['burst-in', j.burstIn], ['burst-out', j.burstOut]] as const) {
    if (v !== undefined && (!Number.isFinite(v) || v < 0 || v > 1_000_000)) throw new IbsError('INVALID_ARGUMENT', `Invalid ${name} ${v}: expected MiB (per second) from 0 to 1000000`);
  }
  if (j.ioWeight !== 'low' && j.ioWeight !== 'normal') throw new IbsError('INVALID_ARGUMENT', `Invalid io-weight "${String(j.ioWeight)}": expected low or normal`);
  if (j.encryptOnPush && j.direction !== 'push') throw new IbsError('INVALID_ARGUMENT', '--encrypt-on-push applies to push jobs only');
  if (j.encryptOnPush && !j.activeKey) throw new IbsError('INVALID_ARGUMENT', '--encrypt-on-push needs --active-encryption-key KEY');
}

function checkCommon(id: string, store: string, ns: string, schedule: string, comment: string | undefined, scheduleOptional = false): void {
  if (!JOB_ID_RE.test(id)) throw new IbsError('INVALID_ARGUMENT', `Invalid job name "${id}": expected 2 to 32 letters, digits, "_", "-", "."`);
  parseStoreName(store);
  parseNamespace(ns);
  if (!(scheduleOptional && schedule === '')) parseCalendarEvent(schedule);
  if (comment !== undefined && /[\r\n]/.test(comment)) throw new IbsError('INVALID_ARGUMENT', 'Invalid comment: expected a single line');
}

class JobFile<T extends { id: string }> {
  readonly #file: SectionConfig;
  readonly #path: string;
  readonly #type: string;
  readonly #from: (s: Section, unread?: string[]) => T;
  readonly #to: (j: T) => Record<string, string>;
  readonly #check: (j: T) => void;
  readonly #commands: (id: string) => { update: string; remove: string };

  /** `commands` name a job's update and remove commands: how to correct one whose stored settings do not check. */
  constructor(path: string, type: string, from: (s: Section, unread?: string[]) => T, to: (j: T) => Record<string, string>, check: (j: T) => void, commands: (id: string) => { update: string; remove: string }) {
    this.#file = new SectionConfig(path);
    this.#path = path;
    this.#type = type;
    this.#from = from;
    this.#to = to;
    this.#check = check;
    this.#commands = commands;
  }

  /** The jobs that check; each one that does not is reported to `onInvalid` and left out (the scheduler runs the others). */
  async listValid(onInvalid: (id: string, error: IbsError) => void): Promise<T[]> {
    const jobs: T[] = [];
    for (const { job, error } of await this.listChecked()) {
      if (error) onInvalid(job.id, error);
      else jobs.push(job);
    }
    return jobs;
  }

  /**
   * Every job of the file, each checked on its own: one that does not check comes with the error (CORRUPT,
   * naming the file, the job and the problem) and its settings read leniently (a value that is not a number is
   * NaN; a list that does not read is its text), so that a listing can still show it and a question like "which
   * jobs use this remote" still counts it.
   */
  async listChecked(): Promise<Array<{ job: T; error?: IbsError }>> {
    return (await this.#sections()).map((s) => {
      try {
        return { job: this.#parse(s) };
      } catch (error) {
        return { job: this.#from(s, []), error: error as IbsError };
      }
    });
  }

  /** Every job as stored, checked or not (see listChecked): for questions of use, which a bad job must not escape. */
  async listStored(): Promise<T[]> {
    return (await this.listChecked()).map((e) => e.job);
  }

  async #sections(): Promise<Section[]> {
    return (await this.#file.read()).sections.filter((s) => s.type === this.#type);
  }

  #parse(s: Section): T {
    try {
      const job = this.#from(s);
      this.#check(job);
      return job;
    } catch (error) {
      throw new IbsError('CORRUPT', `${this.#path}: ${this.#type} job "${s.name}" is invalid: ${(error as Error).message}. Correct it with "${this.#commands(s.name).update} --SETTING VALUE", or remove the job ("${this.#commands(s.name).remove}")`);
    }
  }

  async add(job: T): Promise<T> {
    this.#check(job);
    await this.#file.update((sections) => {
      if (sections.some((s) => s.type === this.#type && s.name === job.id)) throw new IbsError('EXISTS', `Job "${job.id}" already exists`);
      sections.push({ type: this.#type, name: job.id, props: this.#to(job) });
    });
    return job;
  }

  /** One job, checked (the others may be invalid: this one still reads). */
  async get(id: string): Promise<T> {
    const s = (await this.#sections()).find((x) => x.name === id);
    if (!s) throw new IbsError('NOT_FOUND', `Job "${id}" does not exist`);
    return this.#parse(s);
  }

  /** One job as stored, read leniently (see listChecked) and not checked: the start of an update, which may correct it. */
  async getStored(id: string): Promise<T> {
    const s = (await this.#sections()).find((x) => x.name === id);
    if (!s) throw new IbsError('NOT_FOUND', `Job "${id}" does not exist`);
    return this.#from(s, []);
  }

  /**
   * Applies `change` to a job under the lock and checks the result before writing it. A stored setting that
   * does not read must be given anew by the change: it is never written back as it was read (NaN, or its text).
   */
  async update(id: string, change: (job: T) => T): Promise<T> {
    return this.#file.update((sections) => {
      const s = sections.find((x) => x.type === this.#type && x.name === id);
      if (!s) throw new IbsError('NOT_FOUND', `Job "${id}" does not exist`);
      const unread: string[] = [];
      const current = this.#from(s, unread);
      const job = { ...change(current), id };
      const before = this.#to(current);
      const props = this.#to(job);
      const kept = [...new Set(unread)].filter((k) => props[k] !== undefined && props[k] === before[k]);
      if (kept.length > 0) {
        const what = kept.map((k) => `${k} ${JSON.stringify(s.props[k])}`).join(', ');
        throw new IbsError('CORRUPT', `${this.#path}: ${this.#type} job "${id}" has ${what}, which does not read: give ${kept.map((k) => `--${k}`).join(', ')} with this change too, or remove the job ("${this.#commands(id).remove}")`);
      }
      this.#check(job);
      s.props = props;
      return job;
    });
  }

  async remove(id: string): Promise<void> {
    await this.#file.update((sections) => {
      const i = sections.findIndex((s) => s.type === this.#type && s.name === id);
      if (i < 0) throw new IbsError('NOT_FOUND', `Job "${id}" does not exist`);
      sections.splice(i, 1);
    });
  }
}

export class JobsConfig {
  readonly verify: JobFile<VerifyJobConfig>;
  readonly prune: JobFile<PruneJobConfig>;
  readonly sync: JobFile<SyncJobConfig>;

  constructor(configDir: string) {
    this.sync = new JobFile<SyncJobConfig>(
      `${configDir}/sync.cfg`,
      'sync',
      (s, unread) => {
        const p = s.props;
        return {
          id: s.name,
          store: p.store ?? '',
          ...(p.remote ? { remote: p.remote } : {}),
          remoteStore: p['remote-store'] ?? '',
          direction: (p.direction ?? 'pull') as 'pull',
          ...(p.schedule ? { schedule: p.schedule } : {}),
          ns: p.ns ?? '',
          remoteNs: p['remote-ns'] ?? '',
          ...(num(p, 'max-depth', unread) !== undefined ? { maxDepth: num(p, 'max-depth', unread) as number } : {}),
          includes: jsonList(p, 'include', unread),
          groupFilters: jsonList(p, 'group-filter', unread),
          removeVanished: p['remove-vanished'] === '1',
          verifiedOnly: p['verified-only'] === '1',
          encryptedOnly: p['encrypted-only'] === '1',
          resyncCorrupt: p['resync-corrupt'] === '1',
          ...(num(p, 'transfer-last', unread) !== undefined ? { transferLast: num(p, 'transfer-last', unread) as number } : {}),
          ...(p.owner ? { owner: p.owner } : {}),
          workerThreads: num(p, 'worker-threads', unread) ?? 1,
          ...(num(p, 'rate-in', unread) !== undefined ? { rateIn: num(p, 'rate-in', unread) as number } : {}),
          ...(num(p, 'rate-out', unread) !== undefined ? { rateOut: num(p, 'rate-out', unread) as number } : {}),
          ...(num(p, 'burst-in', unread) !== undefined ? { burstIn: num(p, 'burst-in', unread) as number } : {}),
          ...(num(p, 'burst-out', unread) !== undefined ? { burstOut: num(p, 'burst-out', unread) as number } : {}),
          ioWeight: p['io-weight'] === 'low' ? 'low' : 'normal',
          encryptOnPush: p['encrypt-on-push'] === '1',
          ...(p['active-encryption-key'] ? { activeKey: p['active-encryption-key'] } : {}),
          associatedKeys: jsonList(p, 'associated-key', unread),
          ...(p.comment ? { comment: p.comment } : {}),
        };
      },
      (j) => {
        const out: Record<string, string> = { store: j.store, 'remote-store': j.remoteStore, direction: j.direction };
        const put = (k: string, v: string | number | boolean | undefined | string[]): void => {
          if (v === undefined || v === false || (Array.isArray(v) && v.length === 0) || v === '') return;
          out[k] = Array.isArray(v) ? JSON.stringify(v) : v === true ? '1' : String(v);
        };
        put('remote', j.remote);
        put('schedule', j.schedule);
        put('ns', j.ns);
        put('remote-ns', j.remoteNs);
        put('max-depth', j.maxDepth);
        put('include', j.includes);
        put('group-filter', j.groupFilters);
        put('remove-vanished', j.removeVanished);
        put('verified-only', j.verifiedOnly);
        put('encrypted-only', j.encryptedOnly);
        put('resync-corrupt', j.resyncCorrupt);
        put('transfer-last', j.transferLast);
        put('owner', j.owner);
        put('worker-threads', j.workerThreads);
        put('rate-in', j.rateIn);
        put('rate-out', j.rateOut);
        put('burst-in', j.burstIn);
        put('burst-out', j.burstOut);
        put('io-weight', j.ioWeight === 'low' ? 'low' : undefined);
        put('encrypt-on-push', j.encryptOnPush);
        put('active-encryption-key', j.activeKey);
        put('associated-key', j.associatedKeys);
        put('comment', j.comment);
        return out;
      },
      checkSyncJob,
      (id) => ({ update: `sync update --name ${id}`, remove: `sync remove --name ${id}` }),
    );
    this.verify = new JobFile<VerifyJobConfig>(
      `${configDir}/verification.cfg`,
      'verification',
      (s, unread) => ({
        id: s.name,
        store: s.props.store ?? '',
        ns: s.props.ns ?? '',
        schedule: s.props.schedule ?? '',
        ignoreVerified: s.props['ignore-verified'] === '1',
        ...(num(s.props, 'outdated-after', unread) !== undefined ? { outdatedAfterDays: num(s.props, 'outdated-after', unread) as number } : {}),
        ...(num(s.props, 'verify-window-days', unread) !== undefined ? { windowDays: num(s.props, 'verify-window-days', unread) as number } : {}),
        ...(num(s.props, 'max-concurrent-snapshots', unread) !== undefined ? { maxConcurrentSnapshots: num(s.props, 'max-concurrent-snapshots', unread) as number } : {}),
        ...(s.props['notification-mode'] ? { notificationMode: s.props['notification-mode'] as 'always' } : {}),
        ...(s.props.comment ? { comment: s.props.comment } : {}),
      }),
      (j) => ({ store: j.store, ns: j.ns, schedule: j.schedule, 'ignore-verified': j.ignoreVerified ? '1' : '0', ...(j.outdatedAfterDays !== undefined ? { 'outdated-after': String(j.outdatedAfterDays) } : {}), ...(j.windowDays !== undefined ? { 'verify-window-days': String(j.windowDays) } : {}), ...(j.maxConcurrentSnapshots !== undefined ? { 'max-concurrent-snapshots': String(j.maxConcurrentSnapshots) } : {}), ...(j.notificationMode ? { 'notification-mode': j.notificationMode } : {}), ...(j.comment ? { comment: j.comment } : {}) }),
      (j) => {
        checkCommon(j.id, j.store, j.ns, j.schedule, j.comment);
        if (j.notificationMode !== undefined && !['always', 'error', 'never'].includes(j.notificationMode)) throw new IbsError('INVALID_ARGUMENT', `Invalid notification mode "${j.notificationMode}": expected always, error or never`);
        if (j.outdatedAfterDays !== undefined && (!Number.isInteger(j.outdatedAfterDays) || j.outdatedAfterDays < 0)) throw new IbsError('INVALID_ARGUMENT', `Invalid outdated-after ${j.outdatedAfterDays}: expected whole days`);
        checkConcurrentSnapshots(j.maxConcurrentSnapshots);
        checkVerifyWindow(j.windowDays, j.ignoreVerified, j.outdatedAfterDays);
      },
      (id) => ({ update: `verify job update ${id}`, remove: `verify job remove ${id}` }),
    );
    this.prune = new JobFile<PruneJobConfig>(
      `${configDir}/prune.cfg`,
      'prune',
      (s, unread) => ({
        id: s.name,
        store: s.props.store ?? '',
        ns: s.props.ns ?? '',
        schedule: s.props.schedule ?? '',
        keep: Object.fromEntries(KEEP_RULES.filter((r) => s.props[r] !== undefined).map((r) => [r, num(s.props, r, unread) as number])),
        ...(s.props.comment ? { comment: s.props.comment } : {}),
      }),
      (j) => ({ store: j.store, ns: j.ns, schedule: j.schedule, ...Object.fromEntries(Object.entries(j.keep).map(([k, v]) => [k, String(v)])), ...(j.comment ? { comment: j.comment } : {}) }),
      (j) => {
        checkCommon(j.id, j.store, j.ns, j.schedule, j.comment);
        validateKeepOptions(j.keep);
        if (!KEEP_RULES.some((r) => (j.keep[r] ?? 0) > 0)) throw new IbsError('INVALID_ARGUMENT', 'A prune job needs at least one --keep-… option');
      },
      (id) => ({ update: `prune job update ${id}`, remove: `prune job remove ${id}` }),
    );
  }
}
