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
  notificationMode?: 'always' | 'error' | 'never';
  comment?: string;
}

export interface PruneJobConfig {
  id: string;
  store: string;
  ns: string;
  schedule: string;
  keep: KeepOptions;
  comment?: string;
}

function checkCommon(id: string, store: string, ns: string, schedule: string, comment: string | undefined): void {
  if (!JOB_ID_RE.test(id)) throw new IbsError('INVALID_ARGUMENT', `Invalid job name "${id}": expected 2 to 32 letters, digits, "_", "-", "."`);
  parseStoreName(store);
  parseNamespace(ns);
  parseCalendarEvent(schedule);
  if (comment !== undefined && /[\r\n]/.test(comment)) throw new IbsError('INVALID_ARGUMENT', 'Invalid comment: expected a single line');
}

class JobFile<T extends { id: string }> {
  readonly #file: SectionConfig;
  readonly #type: string;
  readonly #from: (s: Section) => T;
  readonly #to: (j: T) => Record<string, string>;
  readonly #check: (j: T) => void;

  constructor(path: string, type: string, from: (s: Section) => T, to: (j: T) => Record<string, string>, check: (j: T) => void) {
    this.#file = new SectionConfig(path);
    this.#type = type;
    this.#from = from;
    this.#to = to;
    this.#check = check;
  }

  async list(): Promise<T[]> {
    return (await this.#file.read()).sections.filter((s) => s.type === this.#type).map(this.#from);
  }

  async add(job: T): Promise<T> {
    this.#check(job);
    await this.#file.update((sections) => {
      if (sections.some((s) => s.type === this.#type && s.name === job.id)) throw new IbsError('EXISTS', `Job "${job.id}" already exists`);
      sections.push({ type: this.#type, name: job.id, props: this.#to(job) });
    });
    return job;
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

  constructor(configDir: string) {
    this.verify = new JobFile<VerifyJobConfig>(
      `${configDir}/verification.cfg`,
      'verification',
      (s) => ({
        id: s.name,
        store: s.props.store ?? '',
        ns: s.props.ns ?? '',
        schedule: s.props.schedule ?? '',
        ignoreVerified: s.props['ignore-verified'] === '1',
        ...(s.props['outdated-after'] ? { outdatedAfterDays: Number(s.props['outdated-after']) } : {}),
        ...(s.props['notification-mode'] ? { notificationMode: s.props['notification-mode'] as 'always' } : {}),
        ...(s.props.comment ? { comment: s.props.comment } : {}),
      }),
      (j) => ({ store: j.store, ns: j.ns, schedule: j.schedule, 'ignore-verified': j.ignoreVerified ? '1' : '0', ...(j.outdatedAfterDays !== undefined ? { 'outdated-after': String(j.outdatedAfterDays) } : {}), ...(j.notificationMode ? { 'notification-mode': j.notificationMode } : {}), ...(j.comment ? { comment: j.comment } : {}) }),
      (j) => {
        checkCommon(j.id, j.store, j.ns, j.schedule, j.comment);
        if (j.notificationMode !== undefined && !['always', 'error', 'never'].includes(j.notificationMode)) throw new IbsError('INVALID_ARGUMENT', `Invalid notification mode "${j.notificationMode}": expected always, error or never`);
        if (j.outdatedAfterDays !== undefined && (!Number.isInteger(j.outdatedAfterDays) || j.outdatedAfterDays < 0)) throw new IbsError('INVALID_ARGUMENT', `Invalid outdated-after ${j.outdatedAfterDays}: expected whole days`);
      },
    );
    this.prune = new JobFile<PruneJobConfig>(
      `${configDir}/prune.cfg`,
      'prune',
      (s) => ({
        id: s.name,
        store: s.props.store ?? '',
        ns: s.props.ns ?? '',
        schedule: s.props.schedule ?? '',
        keep: Object.fromEntries(KEEP_RULES.filter((r) => s.props[r] !== undefined).map((r) => [r, Number(s.props[r])])),
        ...(s.props.comment ? { comment: s.props.comment } : {}),
      }),
      (j) => ({ store: j.store, ns: j.ns, schedule: j.schedule, ...Object.fromEntries(Object.entries(j.keep).map(([k, v]) => [k, String(v)])), ...(j.comment ? { comment: j.comment } : {}) }),
      (j) => {
        checkCommon(j.id, j.store, j.ns, j.schedule, j.comment);
        validateKeepOptions(j.keep);
        if (!KEEP_RULES.some((r) => (j.keep[r] ?? 0) > 0)) throw new IbsError('INVALID_ARGUMENT', 'A prune job needs at least one --keep-… option');
      },
    );
  }
}
