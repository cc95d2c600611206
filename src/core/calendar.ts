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

function matches(field: Field, value: number): boolean {
  if (!field) return true;
  return field.some((p) => {
    if (value < p.start) return false;
    if (p.end !== undefined && value > p.end) return false;
    if (p.step !== undefined) return (value - p.start) % p.step === 0;
    return p.end !== undefined || value === p.start;
  });
}

interface Clock {
  parts(ms: number): { year: number; month: number; day: number; hour: number; minute: number; second: number; weekday: number };
  make(year: number, month: number, day: number, hour: number, minute: number, second: number): number;
}

const UTC_CLOCK: Clock = {
  parts(ms) {
    const d = new Date(ms);
    return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds(), weekday: (d.getUTCDay() + 6) % 7 };
  },
  make: (y, mo, d, h, mi, s) => Date.UTC(y, mo - 1, d, h, mi, s),
};

const LOCAL_CLOCK: Clock = {
  parts(ms) {
    const d = new Date(ms);
    return { year: d.getFullYear(), month: d.getMonth() + 1, day: d.getDate(), hour: d.getHours(), minute: d.getMinutes(), second: d.getSeconds(), weekday: (d.getDay() + 6) % 7 };
  },
  make: (y, mo, d, h, mi, s) => new Date(y, mo - 1, d, h, mi, s).getTime(),
};

/**
 * The first time strictly after `after` (ms since the epoch) at which the event elapses, in whole seconds;
 * undefined when it never does again (a year list in the past).
 */
export function nextCalendarEvent(ev: CalendarEvent, after: number): number | undefined {
  const clock = ev.utc ? UTC_CLOCK : LOCAL_CLOCK;
  let t = Math.floor(after / 1000) * 1000 + 1000;
  for (let guard = 0; guard < 1_000_000; guard++) {
    const p = clock.parts(t);
    if (p.year > LIMITS.year[1]) return undefined;
    let next: number;
    if (!matches(ev.year, p.year)) next = clock.make(p.year + 1, 1, 1, 0, 0, 0);
    else if (!matches(ev.month, p.month)) next = clock.make(p.year, p.month + 1, 1, 0, 0, 0);
    else if (!matches(ev.day, p.day) || (ev.weekdays !== undefined && !ev.weekdays.includes(p.weekday))) next = clock.make(p.year, p.month, p.day + 1, 0, 0, 0);
    else if (!matches(ev.hour, p.hour)) next = clock.make(p.year, p.month, p.day, p.hour + 1, 0, 0);
    else if (!matches(ev.minute, p.minute)) next = clock.make(p.year, p.month, p.day, p.hour, p.minute + 1, 0);
    else if (!matches(ev.second, p.second)) next = clock.make(p.year, p.month, p.day, p.hour, p.minute, p.second + 1);
    else return t;
    // Local clocks can repeat an hour (DST end); never go backwards.
    t = next > t ? next : t + 1000;
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
