import { IbsError } from './errors.ts';

/**
 * Retention (prune) with Proxmox Backup Server semantics: the rules run in the order last, hourly, daily,
 * weekly, monthly, yearly over the snapshots newest first; each keeps the newest snapshot of each of its
 * periods until it has kept N periods; periods already covered by a snapshot an earlier rule kept do not
 * count; protected snapshots are never removed and never count. Periods use local time and ISO weeks.
 */

export const KEEP_RULES = ['keep-last', 'keep-hourly', 'keep-daily', 'keep-weekly', 'keep-monthly', 'keep-yearly'] as const;
export type KeepRule = (typeof KEEP_RULES)[number];
export type KeepOptions = Partial<Record<KeepRule, number>>;

export interface RetentionItem {
  /** Seconds since the epoch. */
  time: number;
  protected: boolean;
}

export type PruneMark = { action: 'keep'; rule: KeepRule | 'keep-all' } | { action: 'protected' } | { action: 'remove' };

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** ISO 8601 week-numbering year and week of a local date. */
export function isoWeek(date: Date): { year: number; week: number } {
  const d = new Date(date.getFullYear(), date.getMonth(), date.getDate(), 12);
  const day = (d.getDay() + 6) % 7; // Monday = 0
  d.setDate(d.getDate() - day + 3); // Thursday of this week decides the year
  const year = d.getFullYear();
  const firstThursday = new Date(year, 0, 4, 12);
  const firstDay = (firstThursday.getDay() + 6) % 7;
  firstThursday.setDate(firstThursday.getDate() - firstDay + 3);
  const week = 1 + Math.round((d.getTime() - firstThursday.getTime()) / (7 * 86400000));
  return { year, week };
}

/** The period a snapshot falls in for a rule: equal keys mean the same period. */
export function periodKey(rule: KeepRule, time: number): string {
  const d = new Date(time * 1000);
  switch (rule) {
    case 'keep-last':
      return String(time);
    case 'keep-hourly':
      return `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())}/${pad(d.getHours())}`;
    case 'keep-daily':
      return `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())}`;
    case 'keep-weekly': {
      const { year, week } = isoWeek(d);
      return `${year}/${pad(week)}`;
    }
    case 'keep-monthly':
      return `${d.getFullYear()}/${pad(d.getMonth() + 1)}`;
    case 'keep-yearly':
      return String(d.getFullYear());
  }
}

export function validateKeepOptions(options: KeepOptions): KeepOptions {
  for (const [name, value] of Object.entries(options)) {
    if (!(KEEP_RULES as readonly string[]).includes(name)) throw new IbsError('INVALID_ARGUMENT', `Unknown retention option "${name}": expected one of ${KEEP_RULES.join(', ')}`);
    if (value !== undefined && (!Number.isInteger(value) || value < 0 || value > 100000)) {
      throw new IbsError('INVALID_ARGUMENT', `Invalid --${name} ${value}: expected a whole number from 0 to 100000`);
    }
  }
  return options;
}

/**
 * Decides for each item (any order) whether prune keeps or removes it; returns marks in the input order.
 * With no rule set (or all zero) everything is kept.
 */
export function computePrune<T extends RetentionItem>(items: readonly T[], options: KeepOptions): PruneMark[] {
  validateKeepOptions(options);
  const order = items.map((_, i) => i).sort((a, b) => (items[b] as T).time - (items[a] as T).time);
  const marks = new Map<number, PruneMark>();
  const active = KEEP_RULES.filter((rule) => (options[rule] ?? 0) > 0);
  if (active.length === 0) {
    return items.map((item) => (item.protected ? { action: 'protected' } : { action: 'keep', rule: 'keep-all' }));
  }
  for (const rule of active) {
    const keep = options[rule] as number;
    const alreadyIncluded = new Set<string>();
    for (const i of order) {
      const mark = marks.get(i);
      if (mark?.action === 'keep') alreadyIncluded.add(periodKey(rule, (items[i] as T).time));
    }
    const included = new Set<string>();
    for (const i of order) {
      if (marks.has(i)) continue;
      const item = items[i] as T;
      if (item.protected) {
        marks.set(i, { action: 'protected' });
        continue;
      }
      const key = periodKey(rule, item.time);
      if (alreadyIncluded.has(key)) continue;
      if (!included.has(key)) {
        if (included.size >= keep) break;
        included.add(key);
        marks.set(i, { action: 'keep', rule });
      } else {
        marks.set(i, { action: 'remove' });
      }
    }
  }
  return items.map((item, i) => marks.get(i) ?? (item.protected ? { action: 'protected' } : { action: 'remove' }));
}

/**
 * For each item, the keep windows that retain it when each rule is taken alone with an unlimited count
 * (`keep-weekly=*`): the newest snapshot of each period. `keep-last` retains every snapshot.
 */
export function retentionWindows<T extends RetentionItem>(items: readonly T[]): Array<Set<KeepRule>> {
  const result = items.map(() => new Set<KeepRule>());
  for (const rule of KEEP_RULES) {
    const newest = new Map<string, number>();
    items.forEach((item, i) => {
      const key = periodKey(rule, item.time);
      const current = newest.get(key);
      if (current === undefined || (items[current] as T).time < item.time) newest.set(key, i);
    });
    for (const i of newest.values()) (result[i] as Set<KeepRule>).add(rule);
  }
  return result;
}
