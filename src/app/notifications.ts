import { join } from 'node:path';
import { IbsError, parseCalendarEvent } from '../core/index.ts';
import { Notifier, validateMatcher, type DeliveryReport, type MatcherConfig, type NotificationEvent, type TargetConfig } from '../notify/index.ts';
import type { TaskRecord } from '../jobs/index.ts';
import type { AppContext } from './context.ts';
import type { InvalidSetting, Section } from '../config/index.ts';

const EMAIL_RE = /^[^\s@,]+@[^\s@,]+$/;

function emails(list: string[], what: string): string[] {
  if (list.length === 0) throw new IbsError('INVALID_ARGUMENT', `Missing ${what}: expected at least one e-mail address`);
  for (const e of list) if (!EMAIL_RE.test(e)) throw new IbsError('INVALID_ARGUMENT', `Invalid e-mail address "${e}" in ${what}`);
  return list;
}

export function notifier(ctx: AppContext, log?: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void): Notifier {
  return new Notifier(
    {
      targets: async () => (await listNotificationTargets(ctx)) as unknown as TargetConfig[],
      matchers: async () => (await listNotificationMatchers(ctx)) as unknown as MatcherConfig[],
      secrets: (name) => ctx.notifications.secrets(name),
    },
    log ? { log } : {},
  );
}

export interface TargetInput {
  type: string;
  name: string;
  comment?: string;
  // webhook
  url?: string;
  method?: string;
  headers?: string[];
  secretHeaders?: string[];
  body?: string;
  // mail
  mailto?: string[];
  from?: string;
  path?: string;
  server?: string;
  port?: number;
  mode?: string;
  username?: string;
  password?: string;
}

function headerPairs(list: string[] | undefined, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of list ?? []) {
    const i = h.indexOf('=');
    if (i <= 0 || !/^[A-Za-z0-9-]+$/.test(h.slice(0, i)) || /[\r\n,]/.test(h)) throw new IbsError('INVALID_ARGUMENT', `Invalid ${what} "${h}": expected NAME=VALUE without commas or line breaks`);
    out[h.slice(0, i)] = h.slice(i + 1);
  }
  return out;
}

/** A target's stored form from its input, every value checked for its type. */
function targetSection(input: TargetInput): { section: Section; secrets?: { password?: string; headers?: Record<string, string> } } {
  const props: Record<string, string> = {};
  let secrets: { password?: string; headers?: Record<string, string> } | undefined;
  if (input.comment) props.comment = input.comment;
  switch (input.type) {
    case 'webhook': {
      let url: URL;
      try {
        url = new URL(input.url ?? '');
      } catch {
        throw new IbsError('INVALID_ARGUMENT', `Invalid --url "${input.url ?? ''}": expected an http:// or https:// URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new IbsError('INVALID_ARGUMENT', `Invalid --url "${input.url}": expected http:// or https://`);
      const method = (input.method ?? 'POST').toUpperCase();
      if (!['POST', 'PUT', 'GET'].includes(method)) throw new IbsError('INVALID_ARGUMENT', `Invalid --method "${input.method}": expected POST, PUT or GET`);
      props.url = url.toString();
      props.method = method;
      const headers = headerPairs(input.headers, '--header');
      if (Object.keys(headers).length) props.header = Object.entries(headers).map(([k, v]) => `${k}=${v}`).join(',');
      if (input.body !== undefined) props.body = Buffer.from(input.body).toString('base64');
      const secret = headerPairs(input.secretHeaders, '--secret-header');
      if (Object.keys(secret).length) secrets = { headers: secret };
      break;
    }
    case 'sendmail':
      props.mailto = emails(input.mailto ?? [], '--mailto').join(',');
      props.from = input.from ?? 'ironcore-backup@localhost';
      props.path = input.path ?? '/usr/sbin/sendmail';
      break;
    case 'smtp': {
      if (!input.server || !/^[A-Za-z0-9.:-]+$/.test(input.server)) throw new IbsError('INVALID_ARGUMENT', `Invalid --server "${input.server ?? ''}": expected a host name or address`);
      const mode = input.mode ?? 'starttls';
      if (!['starttls', 'tls', 'insecure'].includes(mode)) throw new IbsError('INVALID_ARGUMENT', `Invalid --mode "${mode}": expected starttls, tls or insecure`);
      if (input.port !== undefined && !(input.port >= 1 && input.port <= 65535)) throw new IbsError('INVALID_ARGUMENT', `Invalid --port ${input.port}: expected 1 to 65535`);
      props.server = input.server;
      props.mode = mode;
      if (input.port !== undefined) props.port = String(input.port);
      props.mailto = emails(input.mailto ?? [], '--mailto').join(',');
      props.from = input.from ?? 'ironcore-backup@localhost';
      if (input.username) props.username = input.username;
      if (input.password !== undefined) secrets = { password: input.password };
      break;
    }
    default:
      throw new IbsError('INVALID_ARGUMENT', `Invalid target type "${input.type}": expected webhook, sendmail or smtp`);
  }
  return { section: { type: input.type, name: input.name, props }, ...(secrets ? { secrets } : {}) };
}

type StoredTarget = Awaited<ReturnType<AppContext['notifications']['targets']>>[number];
type StoredMatcher = Awaited<ReturnType<AppContext['notifications']['matchers']>>[number];

/** A stored target as the input it was written from: to check it, or to change it. */
function storedInput({ invalid: _invalid, type, name, headers, ...rest }: StoredTarget, secrets: { password?: string; headers?: Record<string, string> } = {}): TargetInput {
  const pairs = (m: unknown): string[] => Object.entries((m ?? {}) as Record<string, string>).map(([k, v]) => `${k}=${v}`);
  return { ...(rest as Partial<TargetInput>), type, name, headers: pairs(headers), secretHeaders: pairs(secrets.headers), ...(secrets.password !== undefined ? { password: secrets.password } : {}) };
}

/** The message of what `check` throws; undefined when it does not. */
function failure(check: () => unknown): string | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

function invalidEntry(ctx: AppContext, kind: 'target' | 'matcher', name: string, why: string): string {
  return `${join(ctx.paths.configDir, 'notifications.cfg')}: ${kind} "${name}" is invalid: ${why}. Correct it with "notification ${kind} update ${name} …", or remove it`;
}

/**
 * The targets, each checked as when it was written: one edited by hand into something invalid carries
 * `problem`, naming the file, the target and the value (its deliveries fail with that message).
 */
export async function listNotificationTargets(ctx: AppContext): Promise<Array<Omit<StoredTarget, 'invalid'> & { problem?: string }>> {
  return (await ctx.notifications.targets()).map((t) => {
    const { invalid, ...shown } = t;
    const why = invalid?.message ?? failure(() => targetSection(storedInput(t)));
    return why === undefined ? shown : { ...shown, problem: invalidEntry(ctx, 'target', t.name, why) };
  });
}

/** The matchers, each checked as when it was written: one that does not carries `problem` (and matches every event). */
export async function listNotificationMatchers(ctx: AppContext): Promise<Array<Omit<StoredMatcher, 'invalid'> & { problem?: string }>> {
  return (await ctx.notifications.matchers()).map((m) => {
    const { invalid, ...shown } = m;
    const why = invalid?.message ?? failure(() => validateMatcher(shown as unknown as MatcherConfig));
    return why === undefined ? shown : { ...shown, problem: invalidEntry(ctx, 'matcher', m.name, why) };
  });
}

/**
 * A stored setting that does not read must be given anew by a change: it is not carried over as it is. `options`
 * maps a stored setting to its key in the change and the options that give it, where they differ.
 */
function mustCorrect(ctx: AppContext, kind: 'target' | 'matcher', name: string, invalid: InvalidSetting | undefined, change: Record<string, unknown>, options: Record<string, [key: string, flags: string]> = {}): void {
  if (!invalid) return;
  const [key, flags] = options[invalid.field] ?? [invalid.field, `--${invalid.field}`];
  if (change[key] === undefined) throw new IbsError('CORRUPT', `${invalidEntry(ctx, kind, name, invalid.message)} (this change does not give ${flags})`);
}

/** Adds a notification target after checking every value for its type; secrets go to the 0600 file. */
export async function createNotificationTarget(ctx: AppContext, input: TargetInput): Promise<{ type: string; name: string }> {
  const { section, secrets } = targetSection(input);
  await ctx.notifications.add(section, secrets);
  return { type: input.type, name: input.name };
}

/**
 * Changes a target: the given values replace the stored ones, the rest (secrets included) stay; the result is
 * checked like a new target. Lists (headers, recipients) are replaced as a whole when given.
 */
export async function updateNotificationTarget(ctx: AppContext, name: string, change: Partial<Omit<TargetInput, 'type' | 'name'>>): Promise<{ type: string; name: string }> {
  const current = (await ctx.notifications.targets()).find((t) => t.name === name);
  if (!current) throw new IbsError('NOT_FOUND', `No notification target "${name}" (see "ironcore-backup notification target list")`);
  mustCorrect(ctx, 'target', name, current.invalid, change);
  // The secrets are part of the merged input: the stored ones stay unless the change gives new ones.
  const { section, secrets } = targetSection({ ...storedInput(current, await ctx.notifications.secrets(name)), ...given(change) });
  await ctx.notifications.replace(section, secrets);
  return { type: current.type, name };
}

/** The entries of a change that carry a value (an update keeps the rest). */
function given<T extends object>(change: T): Partial<T> {
  return Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export interface MatcherInput {
  name: string;
  targets: string[];
  severities?: string[];
  types?: string[];
  datastores?: string[];
  jobs?: string[];
  calendar?: string;
  mode?: string;
  invert?: boolean;
  /** Matches nothing while set (kept across updates that do not give it). */
  disable?: boolean;
  comment?: string;
}

/** A matcher's stored form from its input, checked (targets exist, calendar parses, severities known). */
async function matcherSection(ctx: AppContext, input: MatcherInput): Promise<Section> {
  const known = new Set((await ctx.notifications.targets()).map((t) => t.name));
  for (const t of input.targets) if (!known.has(t)) throw new IbsError('NOT_FOUND', `Matcher ${input.name}: no notification target "${t}"`);
  if (input.calendar) parseCalendarEvent(input.calendar);
  validateMatcher({ name: input.name, targets: input.targets, ...(input.severities ? { severities: input.severities as MatcherConfig['severities'] } : {}), mode: (input.mode ?? 'all') as 'all', invert: input.invert ?? false });
  const props: Record<string, string> = { target: input.targets.join(','), mode: input.mode ?? 'all', 'invert-match': input.invert ? '1' : '0' };
  if (input.severities?.length) props['match-severity'] = input.severities.join(',');
  if (input.types?.length) props['match-type'] = input.types.join(',');
  if (input.datastores?.length) props['match-datastore'] = input.datastores.join(',');
  if (input.jobs?.length) props['match-job'] = input.jobs.join(',');
  if (input.calendar) props['match-calendar'] = input.calendar;
  if (input.disable) props.disable = '1';
  if (input.comment) props.comment = input.comment;
  return { type: 'matcher', name: input.name, props };
}

export async function createNotificationMatcher(ctx: AppContext, input: MatcherInput): Promise<{ name: string }> {
  await ctx.notifications.add(await matcherSection(ctx, input));
  return { name: input.name };
}

/** Changes a matcher: the given values replace the stored ones (lists as a whole), the rest stay. */
export async function updateNotificationMatcher(ctx: AppContext, name: string, change: Partial<Omit<MatcherInput, 'name'>>): Promise<{ name: string }> {
  const found = (await ctx.notifications.matchers()).find((x) => x.name === name);
  if (!found) throw new IbsError('NOT_FOUND', `No notification matcher "${name}" (see "ironcore-backup notification matcher list")`);
  const { invalid, ...current } = found;
  mustCorrect(ctx, 'matcher', name, invalid, change, { 'invert-match': ['invert', '--invert or --no-invert'], disable: ['disable', '--disable or --enable'] });
  await ctx.notifications.replace(await matcherSection(ctx, { ...(current as unknown as MatcherInput), ...given(change), name }));
  return { name };
}

/** Sends a test notification to one target, optionally to another recipient. */
export async function testNotificationTarget(ctx: AppContext, input: { name: string; recipient?: string }): Promise<DeliveryReport> {
  const target = ((await listNotificationTargets(ctx)) as unknown as TargetConfig[]).find((t) => t.name === input.name);
  if (!target) throw new IbsError('NOT_FOUND', `No notification target "${input.name}"`);
  if (input.recipient !== undefined) emails([input.recipient], '--recipient');
  const report = await notifier(ctx).test(target, { severity: 'info', type: 'test', title: 'ironcore-backup test notification', message: `This is a test of notification target ${input.name}.`, time: Date.now(), fields: {} }, input.recipient ? [input.recipient] : undefined);
  if (!report.ok) throw new IbsError('UNAVAILABLE', `Test notification to ${input.name} failed: ${report.error}`);
  return report;
}

const EVENT_TYPES: Record<string, string> = { verify: 'verify', verificationjob: 'verify', prune: 'prune', prunejob: 'prune', garbage_collection: 'gc', backup: 'backup', syncjob: 'sync' };

/** The event of a finished task; undefined for task types that do not notify. */
export function taskEvent(record: TaskRecord, job?: string, summary?: string): NotificationEvent | undefined {
  const family = EVENT_TYPES[record.type];
  if (!family) return undefined;
  // Sync results are sync-ok / sync-err (a matcher on "sync" gets both).
  const type = family === 'sync' ? (record.state === 'ok' || record.state === 'warnings' ? 'sync-ok' : 'sync-err') : family;
  const severity: NotificationEvent['severity'] = record.state === 'ok' ? 'info' : record.state === 'warnings' ? 'warning' : 'error';
  const outcome = record.state === 'ok' ? 'succeeded' : record.state === 'warnings' ? 'finished with warnings' : 'failed';
  return {
    severity,
    type,
    title: `${family === 'gc' ? 'Garbage collection' : family === 'sync' ? 'Sync job' : family[0]?.toUpperCase() + family.slice(1)} ${record.id ? `${family === 'sync' ? '' : 'of '}${record.id} ` : ''}${outcome}`,
    message: `${record.status ?? record.state}${summary ? `\n\n${summary}` : ''}\n\ntask: ${record.upid}`,
    time: (record.endtime ?? record.starttime) * 1000,
    fields: { ...(record.id && family !== 'sync' ? { datastore: record.id } : {}), ...(job ? { job } : {}), upid: record.upid },
  };
}


/** Notifies the result of a verification run outside the server (CLI), following its notification mode. */
export async function notifyVerifyResult(ctx: AppContext, input: { store: string; ok: boolean; summary: string; mode: 'always' | 'error' | 'never' }): Promise<DeliveryReport[]> {
  if (input.mode === 'never' || (input.mode === 'error' && input.ok)) return [];
  return notifier(ctx).send({
    severity: input.ok ? 'info' : 'error',
    type: 'verify',
    title: `Verification of ${input.store} ${input.ok ? 'succeeded' : 'failed'}`,
    message: input.summary,
    time: Date.now(),
    fields: { datastore: input.store },
  });
}
