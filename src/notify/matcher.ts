import { IbsError, nextCalendarEvent, parseCalendarEvent, type CalendarEvent } from '../core/index.ts';
import { SEVERITIES, type NotificationEvent, type Severity } from './event.ts';

/**
 * A matcher routes events to targets. Its conditions (severity, event type, datastore, job, calendar window)
 * combine with mode "all" (every condition must hold) or "any"; `invert` negates the result. A matcher
 * without conditions matches everything.
 */
export interface MatcherConfig {
  name: string;
  targets: string[];
  severities?: Severity[];
  types?: string[];
  datastores?: string[];
  jobs?: string[];
  /** A calendar event naming the window: "mon..fri 08..17:*" matches events during working hours. */
  calendar?: string;
  mode: 'all' | 'any';
  invert: boolean;
  disable?: boolean;
  /**
   * The stored settings do not read: the matcher then matches every event unless it is disabled (its targets
   * get more than asked for, never less), and the notifier logs this message each time.
   */
  problem?: string;
}

export function validateMatcher(m: MatcherConfig): MatcherConfig {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{1,31}$/.test(m.name)) throw new IbsError('INVALID_ARGUMENT', `Invalid matcher name "${m.name}": expected 2 to 32 letters, digits, "_", "-", "."`);
  if (m.targets.length === 0) throw new IbsError('INVALID_ARGUMENT', `Matcher ${m.name} needs at least one --target`);
  for (const s of m.severities ?? []) if (!(SEVERITIES as readonly string[]).includes(s)) throw new IbsError('INVALID_ARGUMENT', `Invalid severity "${s}": expected ${SEVERITIES.join(', ')}`);
  if (m.calendar !== undefined) parseCalendarEvent(m.calendar);
  if (m.mode !== 'all' && m.mode !== 'any') throw new IbsError('INVALID_ARGUMENT', `Invalid mode "${String(m.mode)}": expected all or any`);
  return m;
}

/** True when `time` (ms) lies in a second the calendar event names (its windows are its matching seconds). */
function inWindow(ev: CalendarEvent, time: number): boolean {
  const second = Math.floor(time / 1000) * 1000;
  return nextCalendarEvent(ev, second - 1000) === second;
}

export function matches(m: MatcherConfig, event: NotificationEvent): boolean {
  if (m.disable) return false;
  if (m.problem !== undefined) return true;
  const conditions: boolean[] = [];
  if (m.severities) conditions.push(m.severities.includes(event.severity));
  // "sync" matches sync-ok and sync-err: a family name matches its outcomes.
  if (m.types) conditions.push(m.types.some((t) => t === event.type || event.type.startsWith(`${t}-`)));
  if (m.datastores) conditions.push(event.fields.datastore !== undefined && m.datastores.includes(event.fields.datastore));
  if (m.jobs) conditions.push(event.fields.job !== undefined && m.jobs.includes(event.fields.job));
  if (m.calendar) conditions.push(inWindow(parseCalendarEvent(m.calendar), event.time));
  const result = conditions.length === 0 ? true : m.mode === 'all' ? conditions.every(Boolean) : conditions.some(Boolean);
  return m.invert ? !result : result;
}
