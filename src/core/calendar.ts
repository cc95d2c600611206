import { IbsError } from './errors.ts';

/**
 * Calendar events in the systemd / Proxmox grammar: `[WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [UTC]`,
 * or a keyword (minutely, hourly, daily, weekly, monthly, quarterly, semiannually, yearly, annually).
 * Each numeric field is `*`, a value, a list `a,b`, a range `a..b`, or a repetition `a/n`, `a..b/n`, `*\/n`.
 * Weekdays are names (Mon or Monday), lists and ranges (`mon..fri`). An omitted date is `*-*-*`, an omitted
 * time `00:00:00`, omitted seconds `00`. Times are local unless the event ends in `UTC`.
 */

export interface FieldPart {
  start: number;
  end?: number;
  step?: number;
}

/** undefined = any value ("*"). */
export type Field = FieldPart[] | undefined;

export interface CalendarEvent {
  /** 0 = Monday … 6 = Sunday; undefined = any day. */
  weekdays: number[] | undefined;
  year: Field;
  month: Field;
  day: Field;
  hour: Field;
  minute: Field;
  second: Field;
  utc: boolean;
}

const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const WEEKDAY_LONG = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const WEEKDAY_NAMES = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

const KEYWORDS: Record<string, string> = {
  minutely: '*-*-* *:*:00',
  hourly: '*-*-* *:00:00',
  daily: '*-*-* 00:00:00',
  weekly: 'mon *-*-* 00:00:00',
  monthly: '*-*-01 00:00:00',
  quarterly: '*-01,04,07,10-01 00:00:00',
  semiannually: '*-01,07-01 00:00:00',
  yearly: '*-01-01 00:00:00',
  annually: '*-01-01 00:00:00',
};

const LIMITS = {
  year: [1970, 2199],
  month: [1, 12],
  day: [1, 31],
  hour: [0, 23],
  minute: [0, 59],
  second: [0, 59],
} as const;
type FieldName = keyof typeof LIMITS;

function invalid(value: string, why: string): IbsError {
  return new IbsError('INVALID_ARGUMENT', `Invalid calendar event "${value}": ${why}; expected e.g. "Sun 04:30", "mon..fri *-*-* 08:00", "*:0/15" or "daily"`);
}

function parseNumber(text: string, name: FieldName, source: string): number {
  if (!/^\d{1,4}$/.test(text)) throw invalid(source, `"${text}" is not a number in the ${name} field`);
  const n = Number(text);
  const [lo, hi] = LIMITS[name];
  if (n < lo || n > hi) throw invalid(source, `${name} ${n} is outside ${lo}..${hi}`);
  return n;
}

function parseField(text: string, name: FieldName, source: string): Field {
  if (text === '*') return undefined;
  const parts: FieldPart[] = [];
  for (const item of text.split(',')) {
    if (item === '') throw invalid(source, `empty list item in the ${name} field`);
    const [range, stepText, extra] = item.split('/');
    if (extra !== undefined) throw invalid(source, `"${item}" has two "/"`);
    const step = stepText === undefined ? undefined : parseNumber(stepText, name === 'year' ? 'month' : 'minute', source);
    if (step !== undefined && step < 1) throw invalid(source, `repetition "/${stepText}" must be at least 1`);
    let part: FieldPart;
    if (range === '*') {
      if (step === undefined) throw invalid(source, `"*" inside a list`);
      part = { start: LIMITS[name][0] };
    } else {
      const [a, b, more] = (range as string).split('..');
      if (more !== undefined) throw invalid(source, `"${range}" is not a range a..b`);
      part = { start: parseNumber(a as string, name, source) };
      if (b !== undefined) {
        part.end = parseNumber(b, name, source);
        if (part.end < part.start) throw invalid(source, `range ${range} runs backwards`);
      }
    }
    if (step !== undefined) part.step = step;
    parts.push(part);
  }
  return parts;
}

function parseWeekdays(text: string, source: string): number[] {
  const days = new Set<number>();
  const index = (name: string): number => {
    const lower = name.toLowerCase();
    const i = WEEKDAYS.indexOf(lower) >= 0 ? WEEKDAYS.indexOf(lower) : WEEKDAY_LONG.indexOf(lower);
    if (i < 0) throw invalid(source, `"${name}" is not a weekday`);
    return i;
  };
  for (const item of text.split(',')) {
    const [a, b, more] = item.split('..');
    if (more !== undefined) throw invalid(source, `"${item}" is not a weekday range`);
    const from = index(a as string);
    const to = b === undefined ? from : index(b);
    if (to < from) throw invalid(source, `weekday range ${item} runs backwards`);
    for (let d = from; d <= to; d++) days.add(d);
  }
  return [...days].sort((x, y) => x - y);
}

export function parseCalendarEvent(value: string): CalendarEvent {
  const source = value;
  let text = value.trim().replace(/\s+/g, ' ');
  if (text === '' || text.length > 256) throw invalid(source, 'empty or too long');
  const keyword = KEYWORDS[text.toLowerCase()];
  if (keyword) text = keyword;
  let tokens = text.split(' ');
  let utc = false;
  if (tokens.length > 1 && tokens.at(-1)?.toUpperCase() === 'UTC') {
    utc = true;
    tokens = tokens.slice(0, -1);
  }
  let weekdays: number[] | undefined;
  if (tokens[0] !== undefined && /^[A-Za-z]/.test(tokens[0])) {
    const kw = KEYWORDS[tokens[0].toLowerCase()];
    if (kw && tokens.length === 1) return parseCalendarEvent(`${kw}${utc ? ' UTC' : ''}`);
    weekdays = parseWeekdays(tokens[0], source);
    tokens = tokens.slice(1);
  }
  let date: string | undefined;
  let time: string | undefined;
  for (const token of tokens) {
    if (token.includes(':')) {
      if (time !== undefined) throw invalid(source, 'two time fields');
      time = token;
    } else if (token.includes('-')) {
      if (date !== undefined || time !== undefined) throw invalid(source, 'the date must come before the time, once');
      date = token;
    } else {
      throw invalid(source, `cannot tell what "${token}" is`);
    }
  }
  const dateParts = (date ?? '*-*-*').split('-');
  if (dateParts.length === 2) dateParts.unshift('*');
  if (dateParts.length !== 3) throw invalid(source, `date "${date}" must be [YEAR-]MONTH-DAY`);
  const timeParts = (time ?? '00:00:00').split(':');
  if (timeParts.length === 2) timeParts.push('00');
  if (timeParts.length !== 3) throw invalid(source, `time "${time}" must be HOUR:MINUTE[:SECOND]`);
  return {
    weekdays,
    year: parseField(dateParts[0] as string, 'year', source),
    month: parseField(dateParts[1] as string, 'month', source),
    day: parseField(dateParts[2] as string, 'day', source),
    hour: parseField(timeParts[0] as string, 'hour', source),
    minute: parseField(timeParts[1] as string, 'minute', source),
    second: parseField(timeParts[2] as string, 'second', source),
    utc,
  };
}

function formatField(field: Field, width: number): string {
  if (!field) return '*';
  const num = (n: number): string => String(n).padStart(width, '0');
  return field.map((p) => `${num(p.start)}${p.end !== undefined ? `..${num(p.end)}` : ''}${p.step !== undefined ? `/${p.step}` : ''}`).join(',');
}

function formatWeekdays(days: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < days.length; ) {
    let j = i;
    while (j + 1 < days.length && (days[j + 1] as number) === (days[j] as number) + 1) j++;
    const from = WEEKDAY_NAMES[days[i] as number] as string;
    out.push(j - i >= 2 ? `${from}..${WEEKDAY_NAMES[days[j] as number]}` : days.slice(i, j + 1).map((d) => WEEKDAY_NAMES[d]).join(','));
    i = j + 1;
  }
  return out.join(',');
}

/** The normalized form, as systemd prints it: "Mon..Fri *-*-* 08:00:00". */
export function formatCalendarEvent(ev: CalendarEvent): string {
  const date = `${formatField(ev.year, 4)}-${formatField(ev.month, 2)}-${formatField(ev.day, 2)}`;
  const time = `${formatField(ev.hour, 2)}:${formatField(ev.minute, 2)}:${formatField(ev.second, 2)}`;
  return `${ev.weekdays ? `${formatWeekdays(ev.weekdays)} ` : ''}${date} ${time}${ev.utc ? ' UTC' : ''}`;
}

/** Broken-down time; fields may be out of range until normalized (like C's struct tm). */
interface Tm {
  year: number;
  mon: number; // 0-11
  mday: number;
  hour: number;
  min: number;
  sec: number;
}

function fieldsOf(ms: number, utc: boolean): Tm {
  const d = new Date(ms);
  return utc
    ? { year: d.getUTCFullYear(), mon: d.getUTCMonth(), mday: d.getUTCDate(), hour: d.getUTCHours(), min: d.getUTCMinutes(), sec: d.getUTCSeconds() }
    : { year: d.getFullYear(), mon: d.getMonth(), mday: d.getDate(), hour: d.getHours(), min: d.getMinutes(), sec: d.getSeconds() };
}

/** Out-of-range fields carried over, as mktime does ("December 39" becomes January 8). */
function normalize(tm: Tm, utc: boolean): Tm {
  return fieldsOf(toMs(tm, utc), utc);
}

function toMs(tm: Tm, utc: boolean): number {
  return utc ? Date.UTC(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec) : new Date(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec).getTime();
}

/**
 * The earliest value >= `val` that `field` allows (a value equal to `val` leaves it unchanged), or undefined.
 * Ranges step by 1 unless they have a repetition.
 */
function earliest(field: Field, val: number): number | undefined {
  if (!field) return val;
  let best: number | undefined;
  for (const p of field) {
    const step = p.step ?? (p.end !== undefined ? 1 : 0);
    let candidate: number | undefined;
    if (p.start >= val) candidate = p.start;
    else if (step > 0) {
      const k = p.start + step * Math.ceil((val - p.start) / step);
      if (p.end === undefined || k <= p.end) candidate = k;
    }
    if (candidate !== undefined && (best === undefined || candidate < best)) best = candidate;
  }
  return best;
}

const ORDER = ['year', 'mon', 'mday', 'hour', 'min', 'sec'] as const;
const RESET: Record<(typeof ORDER)[number], Partial<Tm>> = { year: { mon: 0 }, mon: { mday: 1 }, mday: { hour: 0 }, hour: { min: 0 }, min: { sec: 0 }, sec: {} };

/**
 * After a field was set, checks whether the time still names itself. Out of range (day 31 in a 30-day month):
 * the normalized time replaces it, with only the field right below the first changed one reset (this is what
 * systemd does, so results agree with it even where that skips a date), and the search starts over (0).
 * Unchanged: 1. Past the last supported year: -1.
 */
function withinBounds(c: Tm, utc: boolean): -1 | 0 | 1 {
  if (c.year > LIMITS.year[1]) return -1;
  const t = normalize(c, utc);
  for (const f of ORDER) {
    if (t[f] !== c[f]) {
      if (t[f] < c[f]) return -1;
      Object.assign(c, t, RESET[f]);
      return 0;
    }
  }
  return 1;
}

/**
 * The first time strictly after `after` (ms since the epoch), in whole seconds, at which the event elapses;
 * undefined when it never does again. The search is the one systemd's calendar timers use: match the fields
 * from year to second, carrying into the next larger unit when a field has no match left.
 */
export function nextCalendarEvent(ev: CalendarEvent, after: number): number | undefined {
  const utc = ev.utc;
  let c = fieldsOf(Math.floor(after / 1000) * 1000 + 1000, utc);
  /** Resets every field below `key` to its lowest value. */
  const resetBelow = (key: keyof Tm): void => {
    for (const f of ORDER.slice(ORDER.indexOf(key) + 1)) c[f] = f === 'mday' ? 1 : 0;
  };
  // Month to second: the field, how its value is numbered in the event (months from 1), and what to advance
  // when no value is left in this unit.
  const steps: Array<{ key: keyof Tm; field: Field; offset: number; carry: keyof Tm }> = [
    { key: 'mon', field: ev.month, offset: 1, carry: 'year' },
    { key: 'mday', field: ev.day, offset: 0, carry: 'mon' },
    { key: 'hour', field: ev.hour, offset: 0, carry: 'mday' },
    { key: 'min', field: ev.minute, offset: 0, carry: 'hour' },
    { key: 'sec', field: ev.second, offset: 0, carry: 'min' },
  ];
  search: for (let iteration = 0; iteration < 100_000; iteration++) {
    c = normalize(c, utc);
    const year = earliest(ev.year, c.year);
    if (year === undefined) return undefined;
    if (year !== c.year) {
      c.year = year;
      resetBelow('year');
    }
    if (withinBounds(c, utc) <= 0) return undefined;
    for (const step of steps) {
      const v = earliest(step.field, c[step.key] + step.offset);
      if (v !== undefined && v - step.offset !== c[step.key]) {
        c[step.key] = v - step.offset;
        resetBelow(step.key);
      }
      const r = v === undefined ? -1 : withinBounds(c, utc);
      if (r < 0) {
        c[step.carry]++;
        resetBelow(step.carry);
        continue search;
      }
      if (r === 0) continue search;
      if (step.key === 'mday' && ev.weekdays !== undefined) {
        const weekday = (new Date(toMs(c, utc))[utc ? 'getUTCDay' : 'getDay']() + 6) % 7;
        if (!ev.weekdays.includes(weekday)) {
          c.mday++;
          resetBelow('mday');
          continue search;
        }
      }
    }
    return toMs(c, utc);
  }
  return undefined;
}

/** The next `count` elapses after `after`. */
export function calendarIterations(ev: CalendarEvent, after: number, count: number): number[] {
  const out: number[] = [];
  let t = after;
  while (out.length < count) {
    const next = nextCalendarEvent(ev, t);
    if (next === undefined) break;
    out.push(next);
    t = next;
  }
  return out;
}
